"""
Tests for L{pgtwist.pipelines._notify} and L{pgtwist.pipelines._listen}:
LISTEN/NOTIFY in transaction pooling, without sockets.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines._notify import (
    ChannelLimit,
    NotifyHub,
    SharedPids,
    Subscription,
    notification,
    operations,
)
from pgtwist.testing.fakes import FakeBackendLink, FakeBackendPool
from pgtwist.wire import constants
from pgtwist.wire.codec import INT32
from pgtwist.wire.errors import ErrorResponse
from pgtwist.wire.messages import CommandComplete, Query
from tests.unit._pipelinescript import (
    TransactionScript,
    fromClient,
    fromServer,
    makeBackend,
    ready,
    wire,
)


def body(pid: int, channel: str, payload: str = "") -> bytes:
    """
    The body of a NotificationResponse, as the listener backend hears it.
    """
    return INT32.pack(pid) + channel.encode() + b"\x00" + payload.encode() + b"\x00"


class OperationsTests(SynchronousTestCase):
    """
    L{operations} reads LISTEN and UNLISTEN statements as PostgreSQL does.
    """

    def test_names(self) -> None:
        """
        Unquoted names fold to lowercase, quoted ones keep their case and
        doubled quotes; C{UNLISTEN *} has no name.
        """
        self.assertEqual(
            operations(b'LISTEN Foo; listen "Bar""x"; /* c */ UNLISTEN a;UNLISTEN *'),
            [("LISTEN", "foo"), ("LISTEN", 'Bar"x'), ("UNLISTEN", "a"), ("UNLISTEN", None)],
        )

    def test_discardAll(self) -> None:
        """
        C{DISCARD ALL} stops every listen, as C{UNLISTEN *}.
        """
        self.assertEqual(operations(b"discard all;"), [("UNLISTEN", None)])
        self.assertEqual(operations(b"DISCARD PLANS"), [])

    def test_truncated(self) -> None:
        """
        Names longer than 63 bytes are truncated, as identifiers are.
        """
        self.assertEqual(operations(b"LISTEN " + b"a" * 70), [("LISTEN", "a" * 63)])

    def test_others(self) -> None:
        """
        Other statements, and the word inside them, are no operation.
        """
        self.assertEqual(operations(b"SELECT 'listen x'; NOTIFY listen"), [])

    def test_savepoints(self) -> None:
        """
        Savepoint statements are read in every spelling, their names folded
        as identifiers.
        """
        self.assertEqual(
            operations(
                b'SAVEPOINT Sp; release savepoint "Sp"; RELEASE sp;'
                b' ROLLBACK TO SAVEPOINT A; rollback work to b; ROLLBACK TRANSACTION TO "C""d"'
                b"; ROLLBACK; COMMIT"
            ),
            [
                ("SAVEPOINT", "sp"),
                ("RELEASE", "Sp"),
                ("RELEASE", "sp"),
                ("ROLLBACK TO", "a"),
                ("ROLLBACK TO", "b"),
                ("ROLLBACK TO", 'C"d'),
            ],
        )


def run(s: Subscription, ops: list[tuple[str, str | None]]) -> None:
    """
    Record C{ops} and complete their statements, as the backend answers.
    """
    tags = {"LISTEN": b"LISTEN", "UNLISTEN": b"UNLISTEN", "SAVEPOINT": b"SAVEPOINT"}
    tags.update({"RELEASE": b"RELEASE", "ROLLBACK TO": b"ROLLBACK"})
    s.record(ops)
    for verb, _ in ops:
        assert s.executed(tags[verb])


class SubscriptionTests(SynchronousTestCase):
    """
    L{Subscription}: operations apply at commit, not at rollback.
    """

    def test_commit(self) -> None:
        """
        Committed operations change the channels, in order.
        """
        s = Subscription()
        run(s, [("LISTEN", "a"), ("LISTEN", "b"), ("UNLISTEN", "a")])
        self.assertEqual(s.channels, set())
        self.assertEqual(s.commit(), ({"b"}, set()))
        self.assertEqual(s.channels, {"b"})
        run(s, [("UNLISTEN", None), ("LISTEN", "c")])
        self.assertEqual(s.commit(), ({"c"}, {"b"}))
        self.assertEqual(s.pending, [])

    def test_rollback(self) -> None:
        """
        Rolled back operations leave the channels as they were.
        """
        s = Subscription()
        run(s, [("LISTEN", "a")])
        s.commit()
        run(s, [("UNLISTEN", None), ("LISTEN", "b")])
        s.rollback()
        s.commit()
        self.assertEqual(s.channels, {"a"})

    def test_notRun(self) -> None:
        """
        Operations recorded whose statements did not complete are not
        committed; another statement's tag runs none of them.
        """
        s = Subscription()
        s.record([("LISTEN", "a"), ("LISTEN", "b")])
        self.assertFalse(s.executed(b"SELECT 1"))
        self.assertTrue(s.executed(b"LISTEN"))
        s.commit()
        self.assertEqual(s.channels, {"a"})
        self.assertEqual(s.pending, [("LISTEN", "b")])

    def test_discardAll(self) -> None:
        """
        C{DISCARD ALL}'s tag runs its C{UNLISTEN *}.
        """
        s = Subscription()
        run(s, [("LISTEN", "a")])
        s.commit()
        s.record([("UNLISTEN", None)])
        self.assertTrue(s.executed(b"DISCARD ALL"))
        s.commit()
        self.assertEqual(s.channels, set())

    def test_rollbackToSavepoint(self) -> None:
        """
        C{ROLLBACK TO SAVEPOINT} undoes what ran after the most recent
        savepoint of that name, which stays; savepoints set after it go.
        """
        s = Subscription()
        run(s, [("LISTEN", "a"), ("SAVEPOINT", "x"), ("LISTEN", "b"), ("SAVEPOINT", "x")])
        run(s, [("UNLISTEN", "a"), ("ROLLBACK TO", "x"), ("LISTEN", "c")])
        run(s, [("SAVEPOINT", "y"), ("LISTEN", "d"), ("ROLLBACK TO", "x")])
        self.assertEqual([name for name, _ in s.savepoints], ["x", "x"])
        run(s, [("ROLLBACK TO", "x")])
        s.commit()
        self.assertEqual(s.channels, {"a", "b"})

    def test_releaseKeeps(self) -> None:
        """
        C{RELEASE SAVEPOINT} keeps what ran after the savepoint, and
        releases the savepoints set after it: rolling back to an outer one
        undoes it all.
        """
        s = Subscription()
        run(s, [("SAVEPOINT", "outer"), ("LISTEN", "a"), ("SAVEPOINT", "inner")])
        run(s, [("UNLISTEN", None), ("LISTEN", "b"), ("RELEASE", "outer")])
        self.assertEqual(s.savepoints, [])
        s.commit()
        self.assertEqual(s.channels, {"b"})
        run(s, [("SAVEPOINT", "outer"), ("LISTEN", "c"), ("SAVEPOINT", "inner")])
        run(s, [("LISTEN", "d"), ("RELEASE", "inner"), ("ROLLBACK TO", "outer")])
        s.commit()
        self.assertEqual(s.channels, {"b"})

    def test_untrackedSavepoint(self) -> None:
        """
        A savepoint not tracked was set before any operation of the
        transaction: rolling back to it undoes them all, releasing it
        releases every tracked one.
        """
        s = Subscription()
        run(s, [("LISTEN", "a"), ("SAVEPOINT", "x"), ("LISTEN", "b"), ("ROLLBACK TO", "early")])
        self.assertEqual(s.savepoints, [])
        run(s, [("LISTEN", "c"), ("SAVEPOINT", "y"), ("RELEASE", "early")])
        self.assertEqual(s.savepoints, [])
        s.commit()
        self.assertEqual(s.channels, {"c"})

    def test_limit(self) -> None:
        """
        More channels than the limit are refused, counting what is pending.
        """
        s = Subscription(maxChannels=2)
        s.record([("LISTEN", "a")])
        s.check([("LISTEN", "b")])
        self.assertRaises(ChannelLimit, s.check, [("LISTEN", "b"), ("LISTEN", "c")])
        s.check([("UNLISTEN", None), ("LISTEN", "b"), ("LISTEN", "c")])


class ListenerBackend(FakeBackendLink):
    """
    A listener backend whose queries answer when the test says.
    """

    def __init__(self, processId: int = 7000) -> None:
        super().__init__(processId)
        self.answers: list[Deferred[ErrorResponse | None]] = []
        self.notificationCallback = None
        self.lostCallback = None

    def simpleQuery(self, sql: str) -> Deferred[ErrorResponse | None]:
        """
        Record C{sql}; its answer waits in C{answers}.
        """
        self.queries.append(sql)
        d: Deferred[ErrorResponse | None] = Deferred()
        self.answers.append(d)
        return d

    def answerAll(self) -> None:
        """
        Answer every query so far.
        """
        answers, self.answers = self.answers, []
        for d in answers:
            d.callback(None)


class Setup:
    """
    A hub whose listener backend comes from its own pool.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.hub = NotifyHub()
        self.listenerPool = FakeBackendPool()
        self.listener = ListenerBackend()
        self.listenerPool.backend = self.listener
        self.hub.pool = self.listenerPool
        self.case = case

    def client(self, pid: int = 1001) -> TransactionScript:
        """
        A logged-in client of the hub's pipeline, whose backends have pid
        C{pid}.
        """
        from pgtwist.pipelines.transaction import TransactionPipeline

        pipeline = TransactionPipeline()
        pipeline.notifyHub = self.hub
        return TransactionScript(self.case, backend=makeBackend(pid), pipeline=pipeline)

    def listen(self, script: TransactionScript, sql: str = "LISTEN chan") -> None:
        """
        Run C{sql} in autocommit, the listener backend answering at once.
        """
        script.session.frontendDataReceived(wire([Query(sql)]))
        self.listener.answerAll()
        pid = script.pool.backend.processId
        self.case.assertEqual(script.newBackendOutput(), {pid: wire([Query(sql)])})
        script.play(
            [
                fromServer(
                    [CommandComplete(verb) for verb, _ in operations(sql.encode())] + [ready()],
                    toClient=[CommandComplete(verb) for verb, _ in operations(sql.encode())]
                    + [ready()],
                    toServer=[Query("UNLISTEN *")],
                ),
                fromServer([CommandComplete("UNLISTEN"), ready()]),
            ]
        )
        script.newBackendOutput()


class ListenTests(SynchronousTestCase):
    """
    A transaction-pooling client's LISTEN, through the listener backend.
    """

    def setUp(self) -> None:
        self.setup = Setup(self)
        self.listener = self.setup.listener

    def test_listenWaitsForListener(self) -> None:
        """
        The client's LISTEN reaches its backend only once the listener
        backend listens on the channel.
        """
        script = self.setup.client()
        script.session.frontendDataReceived(wire([Query("LISTEN chan")]))
        self.assertEqual(self.listener.queries, ['LISTEN "chan"'])
        self.assertEqual(script.newBackendOutput(), {})
        self.assertFalse(script.frontend.reading)
        self.listener.answerAll()
        self.assertEqual(script.newBackendOutput(), {1001: wire([Query("LISTEN chan")])})
        self.assertTrue(script.frontend.reading)

    def test_extendedListenWaits(self) -> None:
        """
        A LISTEN sent with the extended protocol waits at its Parse too.
        """
        from pgtwist.wire.messages import Bind, Execute, Parse, Sync

        script = self.setup.client()
        script.session.frontendDataReceived(
            wire([Parse("", "LISTEN Chan"), Bind("", ""), Execute(""), Sync()])
        )
        self.assertEqual(self.listener.queries, ['LISTEN "chan"'])
        self.assertEqual(script.newBackendOutput(), {})
        self.listener.answerAll()
        self.assertEqual(
            script.newBackendOutput(),
            {
                1001: wire(
                    [Parse("PGTWIST_1", "LISTEN Chan"), Bind("", "PGTWIST_1"), Execute(""), Sync()]
                )
            },
        )

    def test_deliveredWhenIdle(self) -> None:
        """
        A notification reaches an idle listening client at once, with the
        notifier's real pid when it is no client of pgtwist.
        """
        script = self.setup.client()
        self.setup.listen(script)
        script.newClientOutput()
        assert self.listener.notificationCallback is not None
        self.listener.notificationCallback(body(555, "chan", "hello"))
        self.assertEqual(script.newClientOutput(), notification(555, b"chan\x00", b"hello\x00"))
        self.listener.notificationCallback(body(555, "other"))
        self.assertEqual(script.newClientOutput(), b"")

    def test_pidMapped(self) -> None:
        """
        A notification sent by a pgtwist client's NOTIFY carries the pid
        that client was given, self-notifications included.
        """
        script = self.setup.client(pid=1001)
        self.setup.listen(script)
        script.play(
            [
                fromClient([Query("NOTIFY chan")], toServer=[Query("NOTIFY chan")]),
                fromServer(
                    [CommandComplete("NOTIFY"), ready()],
                    toClient=[CommandComplete("NOTIFY"), ready()],
                ),
            ]
        )
        assert self.listener.notificationCallback is not None
        self.listener.notificationCallback(body(1001, "chan"))
        self.assertEqual(
            script.newClientOutput(), notification(script.session.processId, b"chan\x00", b"\x00")
        )
        self.assertEqual(script.frontend.loginProcessId, script.session.processId)

    def test_heldWhileBusy(self) -> None:
        """
        A client in a transaction gets notifications after it, never inside
        a result: right before the ReadyForQuery that ends it, as
        PostgreSQL sends them.
        """
        script = self.setup.client()
        self.setup.listen(script)
        script.play([fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")])])
        assert self.listener.notificationCallback is not None
        self.listener.notificationCallback(body(9, "chan", "x"))
        self.assertEqual(script.newClientOutput(), b"")
        script.session.backendDataReceived(wire([CommandComplete("SELECT 1"), ready()]))
        self.assertEqual(
            script.newClientOutput(),
            wire([CommandComplete("SELECT 1"), notification(9, b"chan\x00", b"x\x00"), ready()]),
        )

    def test_rollback(self) -> None:
        """
        A LISTEN rolled back does not listen; the listener backend, which
        listened on the channel for it and is needed by no one else, goes
        back to the pool to be reset.
        """
        script = self.setup.client()
        queries = [Query("BEGIN"), Query("LISTEN chan"), Query("ROLLBACK")]
        script.session.frontendDataReceived(wire(queries))
        self.listener.answerAll()
        script.session.backendDataReceived(
            wire(
                [CommandComplete("BEGIN"), ready(b"T"), CommandComplete("LISTEN"), ready(b"T")]
                + [CommandComplete("ROLLBACK"), ready()]
            )
        )
        self.assertEqual(script.session.subscription.channels, set())
        self.assertEqual(self.setup.listenerPool.released, [self.listener])

    def transaction(self, queries: list[str], answers: list[object]) -> TransactionScript:
        """
        A client that sends C{queries} at once, the listener backend
        answering each LISTEN; its backend answers with C{answers}.
        """
        script = self.setup.client()
        script.session.frontendDataReceived(wire([Query(q) for q in queries]))
        while self.listener.answers:
            self.listener.answerAll()
        script.session.backendDataReceived(wire(answers))  # type: ignore[arg-type]
        return script

    def test_rollbackToSavepoint(self) -> None:
        """
        C{ROLLBACK TO SAVEPOINT} undoes a LISTEN and an C{UNLISTEN *} run
        after the savepoint; the rest commits.
        """
        queries = ["BEGIN", "LISTEN a", "SAVEPOINT s", "LISTEN b; UNLISTEN *", "ROLLBACK TO s"]
        tags = ["BEGIN", "LISTEN", "SAVEPOINT", "LISTEN", "UNLISTEN", "ROLLBACK", "COMMIT"]
        script = self.transaction(
            [*queries, "COMMIT"],
            [CommandComplete(tag) for tag in tags[:3]]
            + [CommandComplete("LISTEN"), CommandComplete("UNLISTEN"), ready(b"T")]
            + [CommandComplete("ROLLBACK"), ready(b"T"), CommandComplete("COMMIT"), ready()],
        )
        self.assertEqual(script.session.subscription.channels, {"a"})

    def test_releaseSavepoint(self) -> None:
        """
        C{RELEASE SAVEPOINT} keeps what ran after the savepoint.
        """
        script = self.transaction(
            ["BEGIN", "SAVEPOINT s", "LISTEN a", "release s", "COMMIT"],
            [CommandComplete(tag) for tag in ["BEGIN", "SAVEPOINT", "LISTEN", "RELEASE", "COMMIT"]]
            + [ready()],
        )
        self.assertEqual(script.session.subscription.channels, {"a"})

    def test_errorInSavepoint(self) -> None:
        """
        After an error inside a savepoint, rolling back to it undoes what
        ran after it; statements the error skipped never ran.
        """
        from tests.unit._pipelinescript import failure

        queries = ["BEGIN", "LISTEN a", "SAVEPOINT s", "LISTEN b; SELECT 1/0; RELEASE s"]
        script = self.transaction(
            [*queries, "ROLLBACK TO s", "COMMIT"],
            [CommandComplete("BEGIN"), ready(b"T"), CommandComplete("LISTEN"), ready(b"T")]
            + [CommandComplete("SAVEPOINT"), ready(b"T"), CommandComplete("LISTEN")]
            + [failure("22012", "division by zero"), ready(b"E")]
            + [CommandComplete("ROLLBACK"), ready(b"T"), CommandComplete("COMMIT"), ready()],
        )
        self.assertEqual(script.session.subscription.channels, {"a"})

    def test_chain(self) -> None:
        """
        C{ROLLBACK AND CHAIN} undoes the transaction's LISTEN, C{COMMIT AND
        CHAIN} commits it, both in a transaction that goes on.
        """
        script = self.transaction(
            ["BEGIN", "LISTEN a", "ROLLBACK AND CHAIN", "LISTEN b", "COMMIT AND CHAIN"],
            [CommandComplete("BEGIN"), ready(b"T"), CommandComplete("LISTEN"), ready(b"T")]
            + [CommandComplete("ROLLBACK"), ready(b"T"), CommandComplete("LISTEN"), ready(b"T")]
            + [CommandComplete("COMMIT"), ready(b"T")],
        )
        self.assertEqual(script.session.subscription.channels, {"b"})

    def test_errorRollsBack(self) -> None:
        """
        A LISTEN in a transaction that failed does not listen.
        """
        script = self.setup.client()
        script.session.frontendDataReceived(wire([Query("LISTEN chan; SELECT 1/0")]))
        self.listener.answerAll()
        from tests.unit._pipelinescript import failure

        script.session.backendDataReceived(
            wire([CommandComplete("LISTEN"), failure("22012", "division by zero"), ready()])
        )
        self.assertEqual(script.session.subscription.channels, set())

    def test_unlistenAll(self) -> None:
        """
        UNLISTEN * at commit stops every channel of the client; the
        listener backend, needed by no one, goes back to be reset.
        """
        script = self.setup.client()
        self.setup.listen(script, "LISTEN a; LISTEN b")
        self.assertEqual(script.session.subscription.channels, {"a", "b"})
        self.setup.listen(script, "UNLISTEN *")
        self.assertEqual(script.session.subscription.channels, set())
        self.assertEqual(self.setup.listenerPool.released, [self.listener])

    def test_disconnectDrops(self) -> None:
        """
        A client that disconnects stops its listens.
        """
        script = self.setup.client()
        other = self.setup.client(pid=1002)
        self.setup.listen(script)
        self.setup.listen(other)
        script.session.frontendLost(Failure(ConnectionDone()))
        group = self.setup.hub.groups[("db", "user")]
        self.assertEqual(group.wanted, {"chan": 1})
        other.session.frontendLost(Failure(ConnectionDone()))
        self.assertEqual(group.wanted, {})

    def test_fanOut(self) -> None:
        """
        Every client listening on the channel gets each notification, in
        order.
        """
        a = self.setup.client()
        b = self.setup.client(pid=1002)
        self.setup.listen(a)
        self.setup.listen(b)
        a.newClientOutput()
        b.newClientOutput()
        assert self.listener.notificationCallback is not None
        self.listener.notificationCallback(body(9, "chan", "1"))
        self.listener.notificationCallback(body(9, "chan", "2"))
        expected = notification(9, b"chan\x00", b"1\x00") + notification(9, b"chan\x00", b"2\x00")
        self.assertEqual(a.newClientOutput(), expected)
        self.assertEqual(b.newClientOutput(), expected)

    def test_channelLimit(self) -> None:
        """
        A LISTEN past C{max_listen_channels} fails as an error of the
        client's query (54000).
        """
        script = self.setup.client()
        script.session.subscription.maxChannels = 1
        self.setup.listen(script, "LISTEN a")
        script.session.frontendDataReceived(wire([Query("LISTEN b")]))
        self.listener.answerAll()
        sent = script.newBackendOutput()[1001]
        self.assertIn(b"54000", sent)
        self.assertNotIn(b"LISTEN b", sent)

    def test_slowClientDisconnected(self) -> None:
        """
        A client that holds more notifications than allowed (busy in a
        transaction all along) is disconnected.
        """
        script = self.setup.client()
        script.session.maxPending = 2
        self.setup.listen(script)
        script.play([fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")])])
        assert self.listener.notificationCallback is not None
        for _ in range(3):
            self.listener.notificationCallback(body(9, "chan"))
        self.assertTrue(script.frontend.failed)
        assert script.frontend.failedWith is not None
        self.assertEqual(script.frontend.failedWith.code, "54000")

    def test_listenerLost(self) -> None:
        """
        When the listener backend dies, listening clients are disconnected
        as after a lost connection (08006); the channels still wanted are
        listened on again by a new listener backend.
        """
        a = self.setup.client()
        b = self.setup.client(pid=1002)
        self.setup.listen(a)
        b.session.frontendDataReceived(wire([Query("BEGIN; LISTEN other")]))
        self.listener.answerAll()
        new = ListenerBackend(7001)
        self.setup.listenerPool.backend = new
        self.listener.lostCallback(self.listener, Failure(ConnectionDone()))  # type: ignore[misc]
        self.assertTrue(a.frontend.failed)
        assert a.frontend.failedWith is not None
        self.assertEqual(a.frontend.failedWith.code, constants.SQLSTATE_CONNECTION_FAILURE)
        self.assertFalse(b.frontend.failed)
        self.assertEqual(new.queries, ['LISTEN "other"'])


class ShownTests(SynchronousTestCase):
    """
    SHOW LISTENERS, SHOW CHANNELS and the metrics show listener groups.
    """

    def test_showAndMetrics(self) -> None:
        """
        A listening client's pool shows its listener backend, channel and
        client; the metrics count them.
        """
        from pgtwist.admin import show
        from pgtwist.admin.metrics import PoolerCollector

        setup = Setup(self)
        script = setup.client()
        setup.listen(script)
        group = setup.hub.groups[("db", "user")]
        listeners = show.showListeners(None, [])  # type: ignore[arg-type]
        self.assertIn(("db", "user", 7000, "active", 1, 1, 0, 0), listeners.rows)
        channels = show.showChannels(None, [])  # type: ignore[arg-type]
        self.assertIn(("db", "user", "chan", 1, 1), channels.rows)
        collector = PoolerCollector.__new__(PoolerCollector)
        metrics = {m.name: m for m in collector._listeners()}
        samples = [
            s
            for s in metrics["pgtwist_listen_channels"].samples
            if s.labels == {"database": "db", "user": "user"}
        ]
        self.assertIn(float(len(group.wanted)), [s.value for s in samples])


class StalledTests(SynchronousTestCase):
    """
    A client that does not read gets notifications held, then is
    disconnected, rather than its connection buffer growing.
    """

    def test_heldWhileStalled(self) -> None:
        """
        While the client's connection buffer is full, notifications are
        held and retried; once it drains they go out; past the limit the
        client is disconnected.
        """

        class Transport:
            dataBuffer = b"x" * 70000
            _tempDataLen = 0
            bufferSize = 65536
            producer = None

        setup = Setup(self)
        script = setup.client()
        setup.listen(script)
        script.newClientOutput()
        script.frontend.transport = Transport()
        assert setup.listener.notificationCallback is not None
        setup.listener.notificationCallback(body(9, "chan", "1"))
        self.assertEqual(script.newClientOutput(), b"")
        Transport.dataBuffer = b""
        clock = script.session.clock
        clock.advance(1)  # type: ignore[attr-defined]
        self.assertEqual(script.newClientOutput(), notification(9, b"chan\x00", b"1\x00"))
        Transport.dataBuffer = b"x" * 70000
        script.session.maxPending = 1
        setup.listener.notificationCallback(body(9, "chan", "2"))
        self.assertFalse(script.frontend.failed)
        setup.listener.notificationCallback(body(9, "chan", "3"))
        self.assertTrue(script.frontend.failed)


class FlagsTests(SynchronousTestCase):
    """
    L{sessionFlags} marks what LISTEN/NOTIFY needs to see.
    """

    def test_flags(self) -> None:
        """
        UNLISTEN is marked like LISTEN; NOTIFY and pg_notify are marked
        NOTIFY; neither in a literal is LISTEN.
        """
        from pgtwist.pipelines._settings import LISTEN, NOTIFY, sessionFlags

        self.assertTrue(sessionFlags(b"UNLISTEN *") & LISTEN)
        self.assertTrue(sessionFlags(b"NOTIFY ch, 'x'") & NOTIFY)
        self.assertTrue(sessionFlags(b"SELECT pg_notify('ch', 'x')") & NOTIFY)
        self.assertFalse(sessionFlags(b"SELECT 'unlisten'") & LISTEN)
        self.assertEqual(sessionFlags(b"SELECT 1"), 0)


class ReservationTests(SynchronousTestCase):
    """
    A channel reserved for a LISTEN that never runs is not kept.
    """

    def test_parseOnly(self) -> None:
        """
        A LISTEN parsed but never executed leaves nothing wanted once its
        batch ends.
        """
        from pgtwist.wire.messages import Parse, ParseComplete, Sync

        setup = Setup(self)
        script = setup.client()
        script.session.frontendDataReceived(wire([Parse("s", "LISTEN chan"), Sync()]))
        setup.listener.answerAll()
        group = setup.hub.groups[("db", "user")]
        self.assertEqual(group.wanted, {"chan": 1})
        script.session.backendDataReceived(wire([ParseComplete(), ready()]))
        self.assertEqual(group.wanted, {})
        self.assertEqual(script.session.subscription.channels, set())


class SharedPidsTests(SynchronousTestCase):
    """
    L{SharedPids}: the backend pid -> client pid map the workers of
    C{workers = N} share through one mapped file.
    """

    def test_shared(self) -> None:
        """
        What one process writes, another mapping the same file reads; an
        unknown or impossible pid gives the default.
        """
        path = self.mktemp()
        writer, reader = SharedPids(path), SharedPids(path)
        writer[4242] = 99
        writer[SharedPids.PIDS] = 5
        self.assertEqual(reader.get(4242, 4242), 99)
        self.assertEqual(reader.get(4243, 4243), 4243)
        self.assertEqual(reader.get(SharedPids.PIDS, 7), 7)
        self.assertEqual(reader.get(-1, -1), -1)
        self.assertEqual(len(reader), 0)
