# -*- test-case-name: tests.unit.test_pipeline_statements -*-
"""
Prepared statements shared across backends (transaction pooling).

A client's statement, named or unnamed, is identified by its I{key}: query
text, parameter types and the C{search_path} it was prepared under (the same
text can mean other tables under another path). Every distinct key gets one
server-side name, C{PGTWIST_<n>}, used on whichever backend a transaction
lands on; each backend keeps its own least-recently-used set of the names it
has prepared, bounded by C{max_prepared_statements}.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from pgtwist._compat import SLOTS
from pgtwist.config.model import PoolKey
from pgtwist.wire import codec

#: Server-side names start with this; clients may not use it.
PREFIX = "PGTWIST_"

#: Marks a backend statement that must be closed before it is prepared
#: again (PostgreSQL said "cached plan must not change result type").
STALE = object()


@dataclass(frozen=True, **SLOTS)
class StatementKey:
    """
    What makes two Parse messages the same statement.

    @ivar flags: What the query may do to the session
        (L{pgtwist.pipelines._settings.sessionFlags}), found once at Parse
        so that a Bind costs nothing more; not part of the identity.
    """

    query: str
    parameterTypes: tuple[int, ...]
    searchPath: str
    flags: int = field(default=0, compare=False)


class StatementRegistry:
    """
    Server-side names by statement key, shared by every client of a pgtwist
    process. Names are never reused, so forgetting a key (bounded size) is
    safe: it simply gets a new name next time.
    """

    def __init__(self, maxSize: int = 65536) -> None:
        self._names: OrderedDict[StatementKey, str] = OrderedDict()
        self._counter = 0
        self.maxSize = maxSize
        #: For each key, the pools whose backends accepted a Parse of it: a
        #: client's Parse of one is answered without a backend only in such
        #: a pool (another database may lack the table; under another user
        #: C{"$user"} in the search_path names another schema).
        self.verified: dict[StatementKey, set[PoolKey]] = {}

    def __len__(self) -> int:
        return len(self._names)

    def nameFor(self, key: StatementKey) -> str:
        """
        The server-side name of C{key}.
        """
        name = self._names.get(key)
        if name is None:
            self._counter += 1
            name = self._names[key] = f"{PREFIX}{self._counter}"
            if len(self._names) > self.maxSize:
                forgotten, _ = self._names.popitem(last=False)
                self.verified.pop(forgotten, None)
        return name

    def verify(self, pool: PoolKey, key: StatementKey) -> None:
        """
        PostgreSQL accepted a Parse of C{key} on a backend of C{pool}.
        """
        pools = self.verified.get(key)
        if pools is None:
            self.verified[key] = {pool}
        else:
            pools.add(pool)

    def isVerified(self, pool: PoolKey, key: StatementKey) -> bool:
        """
        Whether a backend of C{pool} accepted a Parse of C{key}.
        """
        pools = self.verified.get(key)
        return pools is not None and pool in pools

    def forget(self, key: StatementKey, name: str) -> None:
        """
        Give C{key} a new server-side name next time, if it is still called
        C{name}: every backend's C{name} is unusable (its result type
        changed), and a new name is prepared afresh wherever it is used.
        """
        if self._names.get(key) == name:
            del self._names[key]


def splitName(body: bytes, start: int = 0) -> tuple[str, int]:
    """
    Read the NUL-terminated name at C{start} of a message body; return it and
    the offset after its terminator.
    """
    end = body.index(b"\x00", start)
    return codec.decodeText(body[start:end]), end + 1


def renameBind(body: bytes, serverName: str) -> bytes:
    """
    A Bind body with its statement name replaced, the rest left as sent.
    """
    portalEnd = body.index(b"\x00") + 1
    statementEnd = body.index(b"\x00", portalEnd) + 1
    return body[:portalEnd] + codec.encodeString(serverName) + body[statementEnd:]


def remember(prepared: OrderedDict[str, object], name: str, limit: int) -> list[str]:
    """
    Record C{name} as prepared on a backend, most recently used; return the
    names to close to stay within C{limit} (0: no limit).
    """
    prepared[name] = True
    prepared.move_to_end(name)
    evicted = []
    while limit and len(prepared) > limit:
        oldest, _ = prepared.popitem(last=False)
        evicted.append(oldest)
    return evicted
