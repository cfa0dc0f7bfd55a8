"""
Tests for L{pgtwist.pipelines._statements}: server-side names and each
backend's bounded set of prepared statements.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines._statements import (
    PREFIX,
    STALE,
    StatementKey,
    StatementRegistry,
    remember,
    renameBind,
    splitName,
)
from pgtwist.wire import codec
from pgtwist.wire.messages import Bind

#: The pool a statement is verified in.
POOL = ("db", "user")


class StatementRegistryTests(SynchronousTestCase):
    """
    One server-side name per distinct statement key.
    """

    def test_namesStable(self) -> None:
        """
        Equal keys get the same name every time, whoever asks.
        """
        registry = StatementRegistry()
        first = registry.nameFor(StatementKey("SELECT 1", (), ""))
        self.assertEqual(first, f"{PREFIX}1")
        self.assertEqual(registry.nameFor(StatementKey("SELECT 1", (), "")), first)
        self.assertEqual(len(registry), 1)

    def test_distinctKeysDistinctNames(self) -> None:
        """
        Query text, parameter types and C{search_path} each make a
        different statement.
        """
        registry = StatementRegistry()
        keys = [
            StatementKey("SELECT $1", (), ""),
            StatementKey("SELECT $1", (23,), ""),
            StatementKey("SELECT $1", (25,), ""),
            StatementKey("SELECT $1", (23,), "tenant1"),
            StatementKey("select $1", (23,), "tenant1"),
        ]
        names = [registry.nameFor(key) for key in keys]
        self.assertEqual(names, [f"PGTWIST_{n}" for n in range(1, 6)])

    def test_boundedForgetsOldest(self) -> None:
        """
        Past C{maxSize} keys the oldest is forgotten, with its verified
        mark; asked again it gets a new name, never a reused one.
        """
        registry = StatementRegistry(maxSize=2)
        a, b, c = (StatementKey(f"SELECT {n}", (), "") for n in range(3))
        registry.nameFor(a)
        registry.verify(POOL, a)
        registry.nameFor(b)
        registry.verify(POOL, b)
        self.assertEqual(registry.nameFor(c), "PGTWIST_3")
        self.assertEqual(len(registry), 2)
        self.assertFalse(registry.isVerified(POOL, a))
        self.assertTrue(registry.isVerified(POOL, b))
        self.assertEqual(registry.nameFor(a), "PGTWIST_4")
        self.assertEqual(registry.nameFor(c), "PGTWIST_3")


class ForgetTests(SynchronousTestCase):
    """
    L{StatementRegistry.forget} gives a key a new name.
    """

    def test_forget(self) -> None:
        """
        A forgotten key gets a new name next time; its verified mark stays.
        """
        registry = StatementRegistry()
        key = StatementKey("SELECT * FROM t", (), "")
        registry.verify(POOL, key)
        registry.forget(key, registry.nameFor(key))
        self.assertEqual(registry.nameFor(key), "PGTWIST_2")
        self.assertTrue(registry.isVerified(POOL, key))

    def test_alreadyRenamed(self) -> None:
        """
        Forgetting an old name of a key that already has a new one changes
        nothing (two clients met the same stale statement).
        """
        registry = StatementRegistry()
        key = StatementKey("SELECT * FROM t", (), "")
        registry.forget(key, registry.nameFor(key))
        second = registry.nameFor(key)
        registry.forget(key, "PGTWIST_1")
        self.assertEqual(registry.nameFor(key), second)


class SplitNameTests(SynchronousTestCase):
    """
    Reading NUL-terminated names out of message bodies.
    """

    def test_splitName(self) -> None:
        """
        The name and the offset after its terminator.
        """
        self.assertEqual(splitName(b"Sabc\x00rest", 1), ("abc", 5))
        self.assertEqual(splitName(b"\x00"), ("", 1))

    def test_unterminated(self) -> None:
        """
        A name without its NUL is an error the pipeline reports as a
        protocol violation.
        """
        self.assertRaises(ValueError, splitName, b"Sabc", 1)


class RenameBindTests(SynchronousTestCase):
    """
    Bind bodies with another statement name.
    """

    def test_renamed(self) -> None:
        """
        Only the statement name changes; portal, formats and values stay.
        """
        original = Bind("portal", "s1", (1,), (b"\x00\x01", None), (0, 1))
        body = codec.encode(original)[5:]
        renamed = codec.decodeFrontend(b"B", renameBind(body, "PGTWIST_7"))
        self.assertEqual(renamed, Bind("portal", "PGTWIST_7", (1,), (b"\x00\x01", None), (0, 1)))

    def test_unnamed(self) -> None:
        """
        The unnamed portal and statement are renamed the same way.
        """
        body = codec.encode(Bind("", ""))[5:]
        self.assertEqual(
            codec.decodeFrontend(b"B", renameBind(body, "PGTWIST_1")), Bind("", "PGTWIST_1")
        )


class RememberTests(SynchronousTestCase):
    """
    Each backend's prepared statements, least recently used first.
    """

    def test_evictsLeastRecentlyUsed(self) -> None:
        """
        Past the limit the least recently remembered names are returned for
        closing, and forgotten.
        """
        prepared: OrderedDict[str, object] = OrderedDict()
        self.assertEqual(remember(prepared, "a", 2), [])
        self.assertEqual(remember(prepared, "b", 2), [])
        self.assertEqual(remember(prepared, "a", 2), [])
        self.assertEqual(remember(prepared, "c", 2), ["b"])
        self.assertEqual(list(prepared), ["a", "c"])
        self.assertEqual(remember(prepared, "d", 1), ["a", "c"])
        self.assertEqual(list(prepared), ["d"])

    def test_unlimited(self) -> None:
        """
        A limit of 0 evicts nothing.
        """
        prepared: OrderedDict[str, object] = OrderedDict()
        for n in range(50):
            self.assertEqual(remember(prepared, str(n), 0), [])
        self.assertEqual(len(prepared), 50)

    def test_staleBecomesPrepared(self) -> None:
        """
        Remembering a stale name marks it prepared again.
        """
        prepared: OrderedDict[str, object] = OrderedDict([("a", STALE), ("b", True)])
        remember(prepared, "a", 0)
        self.assertEqual(list(prepared.items()), [("b", True), ("a", True)])
