# -*- test-case-name: tests.unit.test_net_authquery -*-
"""
auth_query: a user's verifier read from PostgreSQL at login.

A client whose user is in none of pgtwist's files is looked up with the
configured query (L{pgtwist.config.authquery}), its name bound as C{$1}
over the extended protocol, never written into the SQL. The answer's
second column is the verifier (C{pg_authid.rolpassword}): a SCRAM secret or
an md5 hash checks the client; no row, NULL (an expired role, under the
default query) or anything else gives the same failure as a wrong password.

L{UserLookup} keeps what PostgreSQL said (found verifiers only, never a
miss) for C{auth_query_cache_ttl} seconds in a bounded LRU, and makes any
number of concurrent logins of one name share one query.
L{AuthQueryConnections} runs the queries over a few connections of
pgtwist's own, one per (server, database, auth user), kept open between
logins, reopened when lost and closed at shutdown. On each, the query is a
statement prepared once (L{STATEMENT}; again after an error or a
reconnection): a lookup sends only Bind, Execute and Sync.

An answer travels from the auth connection to the login by plain
callbacks, not Deferreds: a lookup runs at every login, and PgBouncer is
the measure (issue 13: an auth_query login costs at most 1.2 times a vault
login's CPU). L{UserLookup.lookup} gives a Deferred for callers that want
one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist.config.authquery import AuthQuerySettings, authUserPassword
from pgtwist.config.model import Configuration, PoolKey, ServerSettings
from pgtwist.config.verifiers import Verifier, parseVerifier
from pgtwist.interfaces import IAuthMethod
from pgtwist.net.backend import BackendError, BackendProtocol, connectBackend
from pgtwist.wire import constants, errors
from pgtwist.wire.messages import ErrorResponse

__all__ = [
    "OUTCOMES",
    "AuthQueryConnections",
    "AuthQueryFailed",
    "UserLookup",
]

#: The outcomes L{UserLookup.outcomes} counts: an answer from the cache, a
#: verifier read from PostgreSQL, no verifier (no row, NULL, unusable), a
#: query that failed.
OUTCOMES = ("hit", "query", "miss", "error")

#: The name auth_query's statement is prepared under on each of its
#: connections (L{BackendProtocol.queryPrepared}).
STATEMENT = "pgtwist_auth_query"

#: The most connections auth_query keeps open; beyond, the least recently
#: used idle one is closed.
MAX_CONNECTIONS = 8

#: The deadline of a query without a timeout.
_NEVER = float("inf")

Rows = list[tuple[Optional[bytes], ...]]
#: Called once with a query's rows, or the L{Failure} of why there are none.
RowsCallback = Callable[[Union[Rows, Failure]], None]
#: Runs an auth_query: (server, password, settings, user name, timeout,
#: callback), the callback given the rows (L{AuthQueryConnections.run}).
QueryRunner = Callable[
    [ServerSettings, "str | None", AuthQuerySettings, str, float, RowsCallback], None
]
#: What a lookup gives: the verifier (C{None}: none) and whether it came
#: from the cache.
Found = tuple[Optional[Verifier], bool]
#: Called once with a lookup's L{Found}, or the L{Failure} (of
#: L{AuthQueryFailed}) of why there is none.
FoundCallback = Callable[[Union[Found, Failure]], None]

#: How many verifiers' texts L{UserLookup} keeps parsed: the same text
#: comes back at every login of a user while its password is unchanged.
PARSED_VERIFIERS = 256


class AuthQueryFailed(Exception):
    """
    auth_query could not give an answer (PostgreSQL down or too slow, the
    query refused, the auth user refused): the login fails with L{error},
    which says so without the query or any secret.

    @ivar error: What the client is told.
    @ivar reason: What the log says.
    """

    def __init__(self, error: ErrorResponse, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


def _lookupFailed(user: str, sqlstate: str, detail: str) -> ErrorResponse:
    """
    The client's error for a lookup that failed.
    """
    return errors.fatal(
        sqlstate,
        f'could not look up user "{user}" for authentication: {detail}',
        hint="The auth_query of pgtwist failed; its log says why.",
    )


def _asFailure(reason: Failure, user: str) -> AuthQueryFailed:
    """
    Turn why a query or its connection failed into L{AuthQueryFailed}:
    PostgreSQL's refusal (a missing function, a permission denied, the
    auth user refused) is 28000; anything else (no server, a lost
    connection, no answer in time) is 08006.
    """
    value = reason.value
    if isinstance(value, AuthQueryFailed):
        return value
    if isinstance(value, BackendError):
        error = value.error
        return AuthQueryFailed(
            _lookupFailed(
                user, constants.SQLSTATE_INVALID_AUTHORIZATION, "the server refused the lookup"
            ),
            f"{error.code} {error.message}",
        )
    return AuthQueryFailed(
        _lookupFailed(user, constants.SQLSTATE_CONNECTION_FAILURE, "connection to server failed"),
        reason.getErrorMessage() or type(value).__name__,
    )


class _ParsedVerifiers(dict):  # type: ignore[type-arg]
    """
    Verifier texts and what L{parseVerifier} made of them; its C{repr}
    shows neither (a text is a secret).
    """

    def __repr__(self) -> str:
        return f"<{len(self)} parsed verifiers>"


class UserLookup:
    """
    auth_query lookups: the cache, the coalescing of concurrent lookups of
    one name, and the outcome counts.

    The cache is keyed by what the query depends on (server, database,
    auth user, query) and the user name. It holds found verifiers only: a
    name PostgreSQL does not know leaves nothing behind, so names chosen by
    unauthenticated clients never outlive their lookup.

    @ivar outcomes: How many lookups ended in each of L{OUTCOMES} (no user
        names: they may be anything a client sent).
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, run: QueryRunner) -> None:
        """
        @param run: Runs a query (L{AuthQueryConnections.run}).
        """
        self._clock = clock
        self._run = run
        self._cache: OrderedDict[tuple[str, ...], tuple[Verifier, float]] = OrderedDict()
        self._inFlight: dict[tuple[str, ...], list[FoundCallback]] = {}
        #: Verifier texts PostgreSQL sent, parsed (L{PARSED_VERIFIERS} at
        #: most): a lookup at every login parses its user's text once.
        #: Keyed by the exact text, so a changed password is parsed anew;
        #: it decides nothing about whether to ask PostgreSQL.
        self._parsed: dict[bytes, Verifier | None] = _ParsedVerifiers()
        self.outcomes = dict.fromkeys(OUTCOMES, 0)

    def __len__(self) -> int:
        """
        How many answers the cache holds.
        """
        return len(self._cache)

    def lookup(
        self, config: Configuration, settings: AuthQuerySettings, user: str
    ) -> Deferred[Found]:
        """
        L{find}, answered by a Deferred: fires with the verifier and
        whether it came from the cache, fails with L{AuthQueryFailed}.
        """
        d: Deferred[Found] = Deferred()

        def found(outcome: Found | Failure) -> None:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

        self.find(config, settings, user, found)
        return d

    def find(
        self, config: Configuration, settings: AuthQuerySettings, user: str, then: FoundCallback
    ) -> None:
        """
        The verifier of C{user}, from the cache while younger than
        C{auth_query_cache_ttl}, else from PostgreSQL (one query for all
        the logins of this name waiting at once).

        @param then: Called once (at once for a cache hit) with the
            verifier (C{None}: none, fail the login as for a wrong
            password) and whether it came from the cache, or with the
            L{Failure} of an L{AuthQueryFailed}.
        """
        server = config.primary
        # What the answer depends on, and the name.
        key = (
            server.name,
            server.host,
            str(server.port),
            settings.database,
            settings.user,
            settings.query,
            user,
        )
        main = config.main
        cached = self._cache.get(key)
        if cached is not None:
            verifier, expires = cached
            if main.authQueryCacheTtl > 0 and self._clock.seconds() < expires:
                self._cache.move_to_end(key)
                self.outcomes["hit"] += 1
                then((verifier, True))
                return
            del self._cache[key]
        waiting = self._inFlight.get(key)
        if waiting is not None:
            waiting.append(then)
            return
        # The logins of this name that arrive before the answer.
        self._inFlight[key] = [then]
        password = authUserPassword(config, settings.user)
        answered = partial(self._answered, key, config, settings, user)
        try:
            self._run(server, password, settings, user, main.authenticationTimeout, answered)
        except Exception:
            self._failed(Failure(), key, settings, user)

    def _parse(self, text: bytes) -> Verifier | None:
        """
        The verifier C{text} holds (C{None}: none), kept for the next
        login of its user.
        """
        parsed = self._parsed
        verifier: Verifier | None
        try:
            verifier = parseVerifier(text.decode("utf-8"))
        except UnicodeDecodeError:
            verifier = None
        if len(parsed) >= PARSED_VERIFIERS:
            parsed.clear()
        parsed[text] = verifier
        return verifier

    def _answered(
        self,
        key: tuple[str, ...],
        config: Configuration,
        settings: AuthQuerySettings,
        user: str,
        rows: Rows | Failure,
    ) -> None:
        """
        The query for C{key} answered C{rows}, or failed: tell the logins
        waiting on it.
        """
        if isinstance(rows, Failure):
            self._failed(rows, key, settings, user)
            return
        # The second column's text, parsed once per text.
        verifier: Verifier | None = None
        if rows and len(rows[0]) >= 2:
            text = rows[0][1]
            if isinstance(text, bytes):
                parsed = self._parsed
                verifier = parsed[text] if text in parsed else self._parse(text)
        if verifier is None:
            self.outcomes["miss"] += 1
        else:
            self.outcomes["query"] += 1
            ttl = config.main.authQueryCacheTtl
            if ttl > 0:
                self._cache[key] = (verifier, self._clock.seconds() + ttl)
                self._cache.move_to_end(key)
                while len(self._cache) > config.main.authQueryCacheSize:
                    self._cache.popitem(last=False)
        found = (verifier, False)
        # L{_tell}, inlined: this runs at every login.
        for then in self._inFlight.pop(key, ()):
            try:
                then(found)
            except Exception:
                self.log.failure("A login waiting on auth_query failed")

    def _failed(
        self, reason: Failure, key: tuple[str, ...], settings: AuthQuerySettings, user: str
    ) -> None:
        failure = _asFailure(reason, user)
        self.outcomes["error"] += 1
        self.log.warn(
            "auth_query for {user!r} in {database!r} as {authUser!r} failed: {reason}",
            user=user,
            database=settings.database,
            authUser=settings.user,
            reason=failure.reason,
        )
        self._tell(key, Failure(failure))

    def _tell(self, key: tuple[str, ...], outcome: Found | Failure) -> None:
        """
        Give C{outcome} to every login waiting on C{key}: one that raises
        is logged and does not keep it from the others.
        """
        for then in self._inFlight.pop(key, ()):
            try:
                then(outcome)
            except Exception:
                self.log.failure("A login waiting on auth_query failed")

    def forget(self, user: str) -> None:
        """
        Drop every cached answer for C{user} (a login that failed against
        it, or PostgreSQL refusing a pass-through login): the next login
        asks PostgreSQL again.
        """
        for key in [key for key in self._cache if key[-1] == user]:
            del self._cache[key]

    def clear(self) -> None:
        """
        Drop every cached answer, and the verifiers kept parsed.
        """
        self._cache.clear()
        self._parsed.clear()


class _Link:
    """
    One connection auth_query runs over: queries sent before the login
    completed wait for it, later ones are pipelined.

    Timeouts cost no timer per query: each query notes its deadline, and
    one watchdog per connection (L{_check}), armed by the first query with
    a timeout, looks at the deadlines of the queries still unanswered when
    it fires, and arms itself again for the earliest while any is left.
    """

    def __init__(
        self,
        owner: AuthQueryConnections,
        key: tuple[str, ...],
        protocol: BackendProtocol,
        ready: Deferred[BackendProtocol],
    ) -> None:
        self.owner = owner
        self.key = key
        self.protocol = protocol
        self.backend: BackendProtocol | None = None
        self.closed = False
        #: Close once the queries in flight are answered (see
        #: L{AuthQueryConnections.retire}).
        self.retired = False
        #: The queries not answered yet, in the order sent (PostgreSQL's
        #: answers come in that order): (deadline, timeout, callback).
        self._queries: deque[tuple[float, float, RowsCallback]] = deque()
        self._waiting: list[tuple[str, Sequence[str | None]]] = []
        self._watchdog: Any = None
        protocol.lostCallback = self._lost
        ready.addCallbacks(self._cbReady, self._ebFailed)

    @property
    def inFlight(self) -> int:
        """
        How many queries are sent or waiting and not answered.
        """
        return len(self._queries)

    def query(
        self, sql: str, parameters: Sequence[str | None], timeout: float, then: RowsCallback
    ) -> None:
        """
        Run C{sql} once logged in; C{then} is called once with the rows or
        why not.

        @param timeout: Give up after this many seconds (0: never); the
            connection is then closed, since it no longer answers in order.
        """
        if timeout > 0:
            clock = self.owner._reactor
            self._queries.append((clock.seconds() + timeout, timeout, then))
            if self._watchdog is None:
                self._watchdog = clock.callLater(timeout, self._check)
        else:
            self._queries.append((_NEVER, 0.0, then))
        backend = self.backend
        if backend is not None:
            backend.queryPreparedThen(STATEMENT, sql, parameters, self._answered)
        else:
            self._waiting.append((sql, parameters))

    def _answered(self, outcome: Rows | Failure) -> None:
        """
        The oldest query is answered: give it its rows or failure.
        """
        queries = self._queries
        if queries:
            queries.popleft()[2](outcome)
        # Else the queries timed out (L{_check}) and were told.
        if self.retired and not queries and not self.closed:
            self.close()

    def _check(self) -> None:
        """
        The watchdog: fail every unanswered query and close the connection
        if one of them is past its deadline, else wait for the earliest.
        """
        self._watchdog = None
        queries = self._queries
        if self.closed or not queries:
            return
        clock = self.owner._reactor
        now = clock.seconds()
        earliest = min(deadline for deadline, _, _ in queries)
        if earliest > now:
            if earliest != _NEVER:
                self._watchdog = clock.callLater(earliest - now, self._check)
            return
        timeout = min(timeout for deadline, timeout, _ in queries if deadline == earliest)
        self.close()
        expired, self._queries = list(queries), deque()
        for _, _, then in expired:
            then(Failure(TimeoutError(f"no answer within {timeout:g}s (authentication_timeout)")))

    def _cbReady(self, backend: BackendProtocol) -> None:
        if self.closed:
            backend.close()
            return
        self.backend = backend
        # Names are sent as UTF-8 whatever the server's encoding.
        backend.simpleQuery("SET client_encoding = 'UTF8'").addErrback(lambda _: None)
        waiting, self._waiting = self._waiting, []
        for sql, parameters in waiting:
            backend.queryPreparedThen(STATEMENT, sql, parameters, self._answered)

    def _ebFailed(self, reason: Failure) -> None:
        self.owner._drop(self)
        self._waiting = []
        queries, self._queries = self._queries, deque()
        for _, _, then in queries:
            then(reason)

    def _lost(self, protocol: BackendProtocol, reason: Failure) -> None:
        self.owner._drop(self)

    def close(self) -> None:
        """
        Close the connection; queries in flight fail.
        """
        self.closed = True
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.active():
            watchdog.cancel()
        self.owner._drop(self)
        self.protocol.close()


class AuthQueryConnections:
    """
    The connections auth_query runs over, one per (server, database, auth
    user), at most L{MAX_CONNECTIONS} of them open (the least recently used
    idle one is closed for a new one). They log in as the auth user with
    only C{user} and C{database} in the StartupMessage, so nothing a client
    sent (its C{search_path} included: CVE-2025-12819) reaches them.
    """

    def __init__(self, reactor: Any, authMethods: Sequence[IAuthMethod]) -> None:
        self._reactor = reactor
        self._authMethods = authMethods
        self._links: OrderedDict[tuple[str, ...], _Link] = OrderedDict()

    def __len__(self) -> int:
        """
        How many connections are open or opening.
        """
        return len(self._links)

    def run(
        self,
        server: ServerSettings,
        password: str | None,
        settings: AuthQuerySettings,
        user: str,
        timeout: float,
        then: RowsCallback,
    ) -> None:
        """
        Run C{settings.query} with C{user} as C{$1}.

        @param timeout: Give up after this many seconds (0: never); the
            connection is then closed, since it no longer answers in order.
        @param then: Called once with the rows, or the L{Failure} of why
            there are none.
        """
        key = (server.name, server.host, str(server.port), settings.database, settings.user)
        link = self._links.get(key)
        if link is None:
            link = self._open(key, server, password, settings, timeout)
        else:
            self._links.move_to_end(key)
        link.query(settings.query, [user], timeout, then)

    def _open(
        self,
        key: tuple[str, ...],
        server: ServerSettings,
        password: str | None,
        settings: AuthQuerySettings,
        timeout: float,
    ) -> _Link:
        """
        Open the connection for C{key}, closing the least recently used
        idle one if L{MAX_CONNECTIONS} are open.
        """
        if len(self._links) >= MAX_CONNECTIONS:
            for other in list(self._links.values()):
                if other.inFlight == 0:
                    other.close()
                    break
        pool: PoolKey = (settings.database, settings.user)
        protocol, ready = connectBackend(
            self._reactor,
            server,
            pool,
            password,
            self._authMethods,
            timeout if timeout > 0 else 15.0,
        )
        link = self._links[key] = _Link(self, key, protocol, ready)
        return link

    def _drop(self, link: _Link) -> None:
        if self._links.get(link.key) is link:
            del self._links[link.key]

    def close(self) -> None:
        """
        Close every connection at once (shutdown): queries in flight fail.
        """
        for link in list(self._links.values()):
            link.close()

    def retire(self) -> None:
        """
        Open new connections for the queries to come (a reload may have
        changed the auth user's password or the servers), closing the
        current ones once the queries in flight on them are answered, so
        that no login fails because of the reload.
        """
        for link in list(self._links.values()):
            self._drop(link)
            link.retired = True
            if link.inFlight == 0:
                link.close()
