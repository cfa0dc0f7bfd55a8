"""
Tests for L{pgtwist.admin.control} (PAUSE, RESUME, KILL, SET, SHUTDOWN...)
over a real service on a C{MemoryReactorClock}, and for routing clients to
the console in L{pgtwist.net.frontend} and L{pgtwist.app.service}.
"""

from __future__ import annotations

import dataclasses
import os

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock, StringTransport

from pgtwist.app.service import buildService
from pgtwist.auth._scram import SCRAM_SHA_256, ScramClient
from pgtwist.config.model import HbaRule
from pgtwist.net import frontend as frontendModule
from pgtwist.net.endpoints import managementEndpoint
from pgtwist.net.frontend import FrontendProtocol, FrontendState
from pgtwist.pool.poolset import BackendState
from pgtwist.wire import codec
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    ErrorResponse,
    Message,
    NoticeResponse,
    PasswordMessage,
    Query,
    StartupMessage,
)
from tests.unit._console import ConsoleTestCase, makeConfiguration


class PauseResumeTests(ConsoleTestCase):
    """
    PAUSE waits for backends in use; RESUME serves the waiters.
    """

    def test_pauseWaitsForActive(self) -> None:
        """
        PAUSE answers only once the lent backend is given back, then closes
        the idle ones; meanwhile new requests wait.
        """
        backend = self.activeBackend()
        self.query("PAUSE")
        self.assertEqual(self.results(), [])
        waiting = self.service.pools.acquire(("db", "alice"), None)
        self.service.pools.release(backend, reset=False)
        self.reactor.advance(0.05)
        results = self.results()
        self.assertEqual(results[0].tag, "PAUSE")
        self.assertTrue(backend.closed)
        self.assertNoResult(waiting)
        self.assertEqual(self.one("SHOW STATE").asDict()["paused"], "yes")
        self.assertEqual(self.one("RESUME").tag, "RESUME")
        self.login()
        self.successResultOf(waiting)

    def test_pauseDatabaseIdleAtOnce(self) -> None:
        """
        PAUSE db with nothing in use answers at once and marks the database paused.
        """
        self.assertEqual(self.one("PAUSE db").tag, "PAUSE")
        result = self.one("SHOW DATABASES")
        db = dict(zip(result.names, result.rows[result.column("name").index("db")], strict=True))
        self.assertEqual(db["paused"], "1")
        self.assertTrue(self.service.pools.pool(("db", "new")).paused)
        self.assertFalse(self.service.pools.pool(("other", "new")).paused)

    def test_pauseErrors(self) -> None:
        """
        PgBouncer's refusals: pausing twice, pausing the console's database.
        """
        self.one("PAUSE")
        self.assertEqual(self.one("PAUSE").error.message, "already suspended/paused")  # type: ignore[union-attr]
        self.one("RESUME")
        self.assertEqual(
            self.one("PAUSE pgbouncer").error.message,  # type: ignore[union-attr]
            "cannot pause admin db: pgbouncer",
        )

    def test_resumeErrors(self) -> None:
        """
        RESUME of what is not paused is refused.
        """
        self.assertEqual(
            self.one("RESUME").error.message,  # type: ignore[union-attr]
            "pooler is not paused/suspended",
        )
        self.assertEqual(
            self.one("RESUME db").error.message,  # type: ignore[union-attr]
            "database db is not paused",
        )

    def test_lostWhileWaiting(self) -> None:
        """
        A console that goes away during PAUSE stops waiting; the pause stays.
        """
        self.activeBackend()
        self.query("PAUSE")
        self.session.frontendLost(None)  # type: ignore[arg-type]
        self.reactor.advance(1)
        self.assertTrue(self.service.pools.pausedAll)

    def test_queuedBehindPause(self) -> None:
        """
        Statements sent while PAUSE waits run after it.
        """
        backend = self.activeBackend()
        self.query("PAUSE db")
        self.session.frontendDataReceived(codec.encode(Query("SHOW STATE")))
        self.assertEqual(self.results(), [])
        self.service.pools.release(backend, reset=False)
        self.reactor.advance(0.05)
        self.assertEqual([r.tag for r in self.results()], ["PAUSE", "SHOW", None])


class DisableKillTests(ConsoleTestCase):
    """
    DISABLE, ENABLE, RECONNECT, KILL and KILL_CLIENT.
    """

    def test_disableEnable(self) -> None:
        """
        DISABLE refuses new clients of a database until ENABLE.
        """
        self.assertEqual(self.one("DISABLE db").tag, "DISABLE")
        self.assertFalse(self.service.management.isEnabled("db"))
        self.assertEqual(self.one("ENABLE db").tag, "ENABLE")
        self.assertTrue(self.service.management.isEnabled("db"))
        self.assertEqual(self.one("DISABLE").error.message, "a database is required")  # type: ignore[union-attr]
        self.assertEqual(
            self.one("ENABLE pgtwist").error.message,  # type: ignore[union-attr]
            "cannot enable admin db: pgtwist",
        )

    def test_reconnect(self) -> None:
        """
        RECONNECT closes idle backends and marks busy ones.
        """
        busy = self.activeBackend()
        idle = self.activeBackend(("db", "bob"))
        self.service.pools.release(idle, reset=False)
        self.assertEqual(self.one("RECONNECT db").tag, "RECONNECT")
        self.assertTrue(idle.closed)
        self.assertTrue(self.closesOnRelease(busy))

    def test_kill(self) -> None:
        """
        KILL db drops its clients and backends and leaves it paused.
        """
        backend = self.activeBackend()
        client = self.client(backend=backend)
        other = self.client(("other", "alice"))
        self.assertEqual(self.one("KILL db").tag, "KILL")
        self.assertTrue(backend.closed)
        self.assertEqual(client.state, FrontendState.CLOSED)
        self.assertIsNot(other.state, FrontendState.CLOSED)
        self.assertTrue(self.service.pools.isPaused("db"))
        self.assertEqual(self.one("RESUME db").tag, "RESUME")

    def test_killAll(self) -> None:
        """
        KILL without a database drops every client.
        """
        clients = [self.client(), self.client(("other", "alice"))]
        self.one("KILL")
        self.assertEqual([c.state for c in clients], [FrontendState.CLOSED] * 2)
        self.assertEqual(self.one("RESUME").tag, "RESUME")
        self.assertFalse(self.service.pools.isPaused("other"))

    def test_killClient(self) -> None:
        """
        KILL_CLIENT drops the client with that id, with PgBouncer's errors otherwise.
        """
        client = self.client()
        transport = client.transport
        self.assertEqual(self.one(f"KILL_CLIENT {client.id}").tag, "KILL_CLIENT")
        self.assertTrue(transport.disconnecting)  # type: ignore[union-attr]
        self.assertIn(b"admin forced disconnect", transport.value())  # type: ignore[union-attr]
        self.assertEqual(self.one("KILL_CLIENT 999").error.message, "client not found")  # type: ignore[union-attr]
        self.assertEqual(
            self.one("KILL_CLIENT x").error.message,  # type: ignore[union-attr]
            "invalid client pointer supplied",
        )

    def test_killClientNeedsAdmin(self) -> None:
        """
        A stats user's KILL_CLIENT with the id of a connected client gets
        PgBouncer's "admin access needed" and drops no one (PgBouncer's
        CVE-2026-6667 was this check missing); an admin's then works.
        """
        client = self.client()
        result = self.one(f"KILL_CLIENT {client.id}", self.statsSession())
        assert result.error is not None
        self.assertEqual(
            (result.error.severity, result.error.message), ("ERROR", "admin access needed")
        )
        transport = client.transport
        assert isinstance(transport, StringTransport)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertIn(client, self.service.factory.clients)
        self.assertEqual(self.one(f"KILL_CLIENT {client.id}").tag, "KILL_CLIENT")
        self.assertTrue(transport.disconnecting)

    def test_idsInShowClients(self) -> None:
        """
        SHOW CLIENTS' id is the id KILL_CLIENT takes.
        """
        client = self.client()
        self.assertEqual(self.one("SHOW CLIENTS").column("id"), [str(client.id)])


class SuspendWaitCloseTests(ConsoleTestCase):
    """
    SUSPEND and WAIT_CLOSE, as PgBouncer's.
    """

    def test_suspendResume(self) -> None:
        """
        SUSPEND stops reading from every client, hands out no backend and
        answers once nothing is left to write; SHOW STATE says suspended;
        RESUME reads again.
        """
        client = self.client()
        transport = client.transport
        assert isinstance(transport, StringTransport)
        self.assertEqual(self.one("SUSPEND").tag, "SUSPEND")
        self.assertEqual(transport.producerState, "paused")
        self.assertTrue(self.service.pools.pausedAll)
        self.assertEqual(
            self.one("SHOW STATE").asDict(),
            {"active": "no", "paused": "no", "suspended": "yes"},
        )
        self.assertEqual(self.one("RESUME").tag, "RESUME")
        self.assertEqual(transport.producerState, "producing")
        self.assertFalse(self.service.pools.pausedAll)
        self.assertEqual(self.one("SHOW STATE").asDict()["active"], "yes")

    def test_suspendWaitsForWrites(self) -> None:
        """
        SUSPEND answers only once the transports hold nothing unwritten.
        """
        client = self.client()
        transport = client.transport
        transport.dataBuffer = b"pending"  # type: ignore[union-attr]
        self.assertEqual(self.query("SUSPEND"), [])
        transport.dataBuffer = b""  # type: ignore[union-attr]
        self.reactor.advance(0.05)
        self.assertEqual([r.tag for r in self.results()], ["SUSPEND", None])

    def test_suspendRefused(self) -> None:
        """
        PgBouncer's refusals: SUSPEND while paused or with a paused
        database, PAUSE, KILL or SUSPEND while suspended.
        """
        self.one("PAUSE db")
        self.assertEqual(
            self.one("SUSPEND").error.message,  # type: ignore[union-attr]
            "cannot suspend with paused databases",
        )
        self.one("RESUME db")
        self.one("SUSPEND")
        for sql in ("SUSPEND", "PAUSE", "KILL db"):
            self.assertEqual(
                self.one(sql).error.message,  # type: ignore[union-attr]
                "already suspended/paused",
                sql,
            )

    def test_waitClose(self) -> None:
        """
        WAIT_CLOSE answers once the backends RECONNECT marked are closed:
        at once when none is, else when the last is given back.
        """
        self.assertEqual(self.one("WAIT_CLOSE").tag, "WAIT_CLOSE")
        backend = self.activeBackend()
        self.one("RECONNECT db")
        self.assertEqual(self.query("WAIT_CLOSE db"), [])
        self.reactor.advance(1)
        self.assertEqual(self.results(), [])
        self.service.pools.release(backend, reset=False)
        self.reactor.advance(0.05)
        self.assertEqual([r.tag for r in self.results()], ["WAIT_CLOSE", None])
        self.assertEqual(self.one("WAIT_CLOSE other").tag, "WAIT_CLOSE")

    def test_waitCloseAdminDb(self) -> None:
        """
        WAIT_CLOSE of the console's database gets PgBouncer's error.
        """
        self.assertEqual(
            self.one("WAIT_CLOSE pgbouncer").error.message,  # type: ignore[union-attr]
            "cannot wait in admin db: pgbouncer",
        )


class ConfigurationCommandTests(ConsoleTestCase):
    """
    RELOAD and SET.
    """

    def test_reload(self) -> None:
        """
        RELOAD applies a valid configuration, with a notice for keys that need a restart.
        """
        new = makeConfiguration(maxConnections=3, port=7000)
        self.nextConfiguration = new
        result = self.one("RELOAD")
        self.assertEqual(result.tag, "RELOAD")
        notice = result.messages[0]
        assert isinstance(notice, NoticeResponse)
        self.assertIn("port", dict(notice.fields)[b"M"])
        self.assertEqual(self.service.config.main.maxConnections, 3)

    def test_reloadShowsWhatRuns(self) -> None:
        """
        After a reload changes a key only a restart applies, every RELOAD
        still names it, and SHOW CONFIG shows the value in effect with a
        notice that a restart is pending.
        """
        running = self.service.config.main.port
        self.nextConfiguration = makeConfiguration(port=7000)
        for _ in range(2):
            notice = self.one("RELOAD").messages[0]
            assert isinstance(notice, NoticeResponse)
            self.assertEqual(
                dict(notice.fields)[b"M"], "changes to port take effect after a restart"
            )
        result = self.one("SHOW CONFIG")
        self.assertEqual(result.asDict()["port"], str(running))
        notice = result.messages[0]
        assert isinstance(notice, NoticeResponse)
        self.assertEqual(
            dict(notice.fields)[b"M"],
            f"restart pending: port is {running}, the configuration says 7000",
        )

    def test_upgradePending(self) -> None:
        """
        A changed restart-only key an upgrade applies is said to wait for
        an upgrade, not a restart, in SHOW CONFIG's notice.
        """
        running = self.service.config.main.statsPeriod
        self.nextConfiguration = makeConfiguration(statsPeriod=running + 1)
        self.one("RELOAD")
        notice = self.one("SHOW CONFIG").messages[0]
        assert isinstance(notice, NoticeResponse)
        self.assertEqual(
            dict(notice.fields)[b"M"],
            f"upgrade pending: stats_period is {running:g}, the configuration says "
            f"{running + 1:g} (pgtwist-cli upgrade applies it)",
        )

    def test_reloadFails(self) -> None:
        """
        A broken file gets PgBouncer's RELOAD error.
        """
        result = self.one("RELOAD")
        assert result.error is not None
        self.assertEqual(
            (result.error.code, result.error.message),
            ("F0000", "RELOAD failed, see logs for additional details"),
        )

    def test_set(self) -> None:
        """
        SET changes a runtime setting everywhere, with PgBouncer's tag.
        """
        result = self.one("SET max_connections = 4")
        self.assertEqual(result.tag, "SET max_connections=4")
        self.assertEqual(self.service.config.main.maxConnections, 4)
        self.assertIs(self.service.pools.config, self.service.config)
        self.assertIs(self.service.factory.config, self.service.config)
        self.one("set idle_timeout to '5m'")
        self.assertEqual(self.service.config.main.idleTimeout, 300.0)
        self.assertEqual(self.one("SHOW CONFIG").asDict()["idle_timeout"], "300")

    def test_setRefused(self) -> None:
        """
        Unknown keys, keys that need a restart and bad values fail.
        """
        for sql, detail in (
            ("SET nothing = 1", "unknown parameter: nothing"),
            ("SET port = 1", "port cannot be changed at runtime"),
            ("SET max_connections = lots", "max_connections:"),
        ):
            result = self.one(sql)
            assert result.error is not None
            self.assertEqual(result.error.message, "SET failed")
            self.assertIn(detail, result.error.get(b"D"))
        self.assertIsNotNone(self.one("SET max_connections 4").error)

    def test_setProgramRefused(self) -> None:
        """
        C{SET failover_script} is refused, so an admin cannot make pgtwist
        run a program of their choosing; C{SET failover = on} still works
        and enables only the script the file configured.
        """
        before = self.service.config
        result = self.one("SET failover_script = '/bin/sh'")
        assert result.error is not None
        self.assertEqual(result.error.message, "SET failed")
        self.assertEqual(
            result.error.get(b"D"),
            "failover_script names a program and cannot be changed from the console; "
            "edit the file and RELOAD",
        )
        self.assertIs(self.service.config, before)
        self.assertEqual(self.one("SET failover = on").tag, "SET failover=on")
        self.assertTrue(self.service.config.main.failover)
        self.assertEqual(self.service.config.main.failoverScript, before.main.failoverScript)


class ShutdownTests(ConsoleTestCase):
    """
    SHUTDOWN and its modes.
    """

    def test_immediate(self) -> None:
        """
        Plain SHUTDOWN answers, then stops the reactor.
        """
        self.assertEqual(self.one("SHUTDOWN").tag, "SHUTDOWN")
        self.reactor.advance(0)
        self.assertEqual(self.stopped, [True])

    def test_waitForClients(self) -> None:
        """
        WAIT_FOR_CLIENTS is the graceful shutdown; CANCEL undoes it.
        """
        client = self.client()
        self.one("SHUTDOWN WAIT_FOR_CLIENTS")
        self.assertEqual(self.service.management.state, "gracefully")
        self.assertFalse(self.service.factory.accepting)
        self.one("shutdown cancel")
        self.assertEqual(self.service.management.state, "running")
        self.one("SHUTDOWN GRACEFULLY")
        self.reactor.advance(0.1)
        self.assertEqual(self.stopped, [])
        self.service.factory.clients.discard(client)
        self.reactor.advance(0.1)
        self.assertEqual(self.stopped, [True])

    def test_waitForServers(self) -> None:
        """
        WAIT_FOR_SERVERS answers at once, pauses, and stops once backends are back.
        """
        backend = self.activeBackend()
        self.assertEqual(self.one("SHUTDOWN WAIT_FOR_SERVERS").tag, "SHUTDOWN")
        self.assertTrue(self.service.pools.pausedAll)
        self.reactor.advance(1)
        self.assertEqual(self.stopped, [])
        self.service.pools.release(backend, reset=False)
        self.reactor.advance(0.1)
        self.assertEqual(self.stopped, [True])

    def test_waitForServersCancelled(self) -> None:
        """
        CANCEL after WAIT_FOR_SERVERS resumes the pools and never stops.
        """
        backend = self.activeBackend()
        self.one("SHUTDOWN WAIT_FOR_SERVERS")
        self.one("SHUTDOWN CANCEL")
        self.assertFalse(self.service.pools.pausedAll)
        self.service.pools.release(backend, reset=False)
        self.reactor.advance(1)
        self.assertEqual(self.stopped, [])

    def test_badMode(self) -> None:
        """
        An unknown mode is a syntax error.
        """
        self.assertIn("invalid command", self.one("SHUTDOWN LATER").error.message)  # type: ignore[union-attr]


class TerminateTests(ConsoleTestCase):
    """
    SIGTERM and SIGINT (L{Management.terminate}): a graceful shutdown that
    lets transactions under way finish, and an immediate one at the
    second signal.
    """

    def ended(self, client: FrontendProtocol) -> bool:
        """
        Whether C{client} was sent PostgreSQL's 57P01 for a session its
        shutdown ends, and closed.
        """
        transport = client.transport
        assert isinstance(transport, StringTransport)
        written = transport.value()
        return (
            b"C57P01\0" in written
            and b"terminating connection due to administrator command" in written
            and transport.disconnecting
        )

    def gone(self, client: FrontendProtocol) -> None:
        """
        C{client}'s connection is closed (StringTransport never says so).
        """
        self.service.factory.clients.discard(client)

    def test_transactionsFinish(self) -> None:
        """
        A client outside a transaction is ended at once; one in a
        transaction (a request running, or an open transaction between
        requests) is ended once it is over; then pgtwist exits. No new
        client or transaction gets in meanwhile.
        """
        idle = self.client()
        backend = self.activeBackend()
        inside = self.client(backend=backend)
        self.service.startService()
        self.service.management.terminate()
        self.assertTrue(self.ended(idle))
        self.gone(idle)
        self.assertFalse(self.ended(inside))
        self.assertFalse(self.service.factory.accepting)
        self.assertTrue(self.service.pools.pausedAll)
        # Between two statements of its transaction: still in it.
        backend.transactionStatus = b"T"
        inside.session = type("Idle", (), {"busy": lambda self: False})()  # type: ignore[assignment]
        self.reactor.advance(1)
        self.assertFalse(self.ended(inside))
        self.assertEqual(self.stopped, [])
        backend.transactionStatus = b"I"
        self.reactor.advance(0.05)
        self.assertTrue(self.ended(inside))
        self.gone(inside)
        self.reactor.advance(0.05)
        self.assertEqual(self.stopped, [True])

    def test_endedClientDoesNotHoldExit(self) -> None:
        """
        A client already ended whose connection stays open (a TLS peer that
        never answers the close_notify) does not hold the exit until
        C{shutdown_timeout}: pgtwist exits once the second it gives every
        close to go out has passed.
        """
        lingering = self.client()
        self.service.startService()
        self.service.management.terminate()
        self.assertTrue(self.ended(lingering))
        self.assertIn(lingering, self.service.factory.clients)
        self.reactor.advance(0.05)
        self.assertEqual(self.stopped, [])
        self.reactor.advance(1)
        self.assertEqual(self.stopped, [True])

    def test_endedConnectionCut(self) -> None:
        """
        A connection pgtwist ended that is still open after C{CLOSE_GRACE}
        (its peer neither read the error nor answered a TLS close_notify)
        is aborted; one that closed in time leaves no timer behind.
        """
        from pgtwist.net.frontend import CLOSE_GRACE

        lingering = self.client()
        lingering.fail(None)
        transport = lingering.transport
        assert isinstance(transport, StringTransport)
        self.assertTrue(transport.disconnecting)
        self.reactor.advance(CLOSE_GRACE - 0.1)
        self.assertFalse(transport.disconnected)
        self.reactor.advance(0.1)
        self.assertTrue(transport.disconnected)
        pending = len(self.reactor.getDelayedCalls())
        closing = self.client()
        closing.fail(None)
        closing.session = None  # the stand-in session has no frontendLost
        closing.connectionLost()
        self.assertEqual(len(self.reactor.getDelayedCalls()), pending)

    def test_timeout(self) -> None:
        """
        A transaction still running after C{shutdown_timeout} is cut, its
        client told why, and pgtwist exits.
        """
        self.service.reconfigure(makeConfiguration(shutdownTimeout=5.0))
        inside = self.client(backend=self.activeBackend())
        self.service.management.terminate()
        self.reactor.advance(4.9)
        self.assertFalse(self.ended(inside))
        self.reactor.advance(0.1)
        self.assertTrue(self.ended(inside))
        # Exiting waits (a second at most) for the error to go out.
        self.assertEqual(self.stopped, [])
        self.reactor.advance(1)
        self.assertEqual(self.stopped, [True])

    def test_secondSignalImmediate(self) -> None:
        """
        A second signal stops at once, transactions under way or not.
        """
        inside = self.client(backend=self.activeBackend())
        self.service.management.terminate()
        self.assertEqual(self.stopped, [])
        self.service.management.terminate()
        self.assertTrue(self.ended(inside))
        self.gone(inside)
        self.reactor.advance(0.05)
        self.assertEqual(self.stopped, [True])

    def test_quitImmediate(self) -> None:
        """
        SIGQUIT (L{Management.quit}) is PgBouncer's immediate shutdown:
        every client is ended at once, in a transaction or not, no new
        client is taken, and pgtwist exits once they are gone.
        """
        inside = self.client(backend=self.activeBackend())
        self.service.management.quit()
        self.assertTrue(self.ended(inside))
        self.assertEqual(self.service.management.state, "terminating")
        self.gone(inside)
        self.reactor.advance(0.05)
        self.assertEqual(self.stopped, [True])

    def test_newLoginRefused(self) -> None:
        """
        A login during the graceful shutdown gets PostgreSQL's answer to
        one during its shutdown: 57P03.
        """
        self.service.management.terminate()
        protocol = self.service.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(codec.encode(StartupMessage({"user": "alice", "database": "db"})))
        self.assertIn(b"C57P03\0", transport.value())
        self.assertIn(b"the database system is shutting down", transport.value())


class PgagroalCommandTests(ConsoleTestCase):
    """
    FLUSH, SWITCH_TO, CLEAR SERVER and CLEAR PROMETHEUS.
    """

    def test_flush(self) -> None:
        """
        FLUSH closes idle backends (and marks busy ones by default).
        """
        busy = self.activeBackend()
        idle = self.activeBackend(("db", "bob"))
        self.service.pools.release(idle, reset=False)
        self.assertEqual(self.one("FLUSH IDLE *").tag, "FLUSH")
        self.assertTrue(idle.closed)
        self.assertFalse(self.closesOnRelease(busy))
        self.one("FLUSH db")
        self.assertTrue(self.closesOnRelease(busy))
        self.one("FLUSH ALL")
        self.assertTrue(busy.closed)
        self.assertIn("invalid command", self.one("FLUSH ALL db more").error.message)  # type: ignore[union-attr]

    def test_switchToAndClear(self) -> None:
        """
        SWITCH_TO makes another server the primary; CLEAR SERVER forgets the failure.
        """
        self.assertEqual(self.one("SWITCH_TO standby").tag, "SWITCH_TO")
        self.assertEqual(self.service.pools.servers.current.name, "standby")
        self.assertEqual(self.one("SWITCH_TO nowhere").error.message, "no such server: nowhere")  # type: ignore[union-attr]
        self.assertEqual(self.one("CLEAR SERVER primary").tag, "CLEAR")
        self.assertEqual(
            self.one("SHOW STATUS").asDict()["server.primary"], "standby 127.0.0.1:5432"
        )
        self.assertIsNotNone(self.one("CLEAR SERVER nowhere").error)

    def test_switchToClosesOldServerBackends(self) -> None:
        """
        After SWITCH_TO, the old server's idle backends are closed at once
        and its lent ones when given back; new ones go to the new server.
        """
        lent = self.activeBackend()
        idle = self.activeBackend(("db", "bob"))
        self.service.pools.release(idle, reset=False)
        self.one("SWITCH_TO standby")
        self.assertTrue(idle.closed)
        self.assertFalse(lent.closed)
        self.assertTrue(self.closesOnRelease(lent))
        self.service.pools.release(lent, reset=False)
        self.assertTrue(lent.closed)
        fresh = self.activeBackend()
        self.assertEqual(fresh.server.name, "standby")
        self.assertFalse(self.closesOnRelease(fresh))

    def test_clearPrometheus(self) -> None:
        """
        CLEAR PROMETHEUS zeroes the statistics.
        """
        self.service.pools.pool(("db", "alice")).stats.addQuery(1.0)
        self.assertEqual(self.one("CLEAR PROMETHEUS").tag, "CLEAR")
        self.assertEqual(self.service.pools.pool(("db", "alice")).stats.queryCount, 0)


def _messages(transport: StringTransport) -> list[Message]:
    data = transport.value()
    transport.clear()
    return [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(data)]


class RoutingTests(ConsoleTestCase):
    """
    Clients reach the console by database name (or the management port)
    and authenticate against the admins file, stats_users or their uid.
    """

    def connectClient(self, address: object, consoleOnly: bool = False) -> FrontendProtocol:
        """
        A fresh client of the service's frontend factory.
        """
        protocol = self.service.factory.buildProtocol(address)  # type: ignore[arg-type]
        protocol.consoleOnly = consoleOnly
        self.transport = StringTransport(peerAddress=address)  # type: ignore[arg-type]
        protocol.makeConnection(self.transport)
        return protocol

    def scramLogin(
        self, protocol: FrontendProtocol, user: str, password: str, database: str
    ) -> list[Message]:
        """
        Log in with SCRAM-SHA-256; return what followed the exchange.
        """
        protocol.dataReceived(codec.encode(StartupMessage({"user": user, "database": database})))
        request = _messages(self.transport)[0]
        assert isinstance(request, AuthenticationRequest), request
        client = ScramClient(password, "clientnonce")
        protocol.dataReceived(
            codec.encode(codec.encodeSASLInitialResponse(SCRAM_SHA_256, client.clientFirst()))
        )
        serverFirst = _messages(self.transport)[0]
        assert isinstance(serverFirst, AuthenticationRequest), serverFirst
        protocol.dataReceived(codec.encode(PasswordMessage(client.serverFirst(serverFirst.data))))
        return _messages(self.transport)

    def test_adminScram(self) -> None:
        """
        An admin logs in with SCRAM and runs commands; no pool is created.
        """
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        replies = self.scramLogin(protocol, "root", "rootpw", "pgbouncer")
        self.assertEqual(type(replies[-1]).__name__, "ReadyForQuery")
        self.assertEqual(protocol.consoleRole, "admin")
        self.assertIn(protocol, self.service.factory.consoles)
        self.assertNotIn(protocol, self.service.factory.clients)
        protocol.dataReceived(codec.encode(Query("SHOW CLIENTS")))
        replies = _messages(self.transport)
        self.assertIn(
            b"pgbouncer", b"".join(v or b"" for m in replies for v in getattr(m, "values", ()))
        )
        self.assertEqual(self.service.pools.pools, {})

    def test_wrongPassword(self) -> None:
        """
        A wrong admin password fails like PostgreSQL's.
        """
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        replies = self.scramLogin(protocol, "root", "nope", "pgtwist")
        error = replies[-1]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28P01")
        self.assertEqual(self.service.pools.pools, {})

    def test_statsUser(self) -> None:
        """
        A stats user logs in with the vault's password and gets the stats role.
        """
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        self.scramLogin(protocol, "watcher", "seen", "pgbouncer")
        self.assertEqual(protocol.consoleRole, "stats")
        protocol.dataReceived(codec.encode(Query("PAUSE")))
        error = _messages(self.transport)[0]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.message, "admin access needed")

    def test_notAllowedGetsThePasswordStep(self) -> None:
        """
        A name that is neither an admin nor a stats user gets the same
        SCRAM-SHA-256 challenge as an admin, and the same 28P01 as a wrong
        password: the refusal does not tell which names are admins.
        """
        for user in ("alice", "root"):
            protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
            replies = self.scramLogin(protocol, user, "guess", "pgbouncer")
            error = replies[-1]
            assert isinstance(error, ErrorResponse)
            self.assertEqual(
                (error.severity, error.code, error.message),
                ("FATAL", "28P01", f'password authentication failed for user "{user}"'),
            )
            self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.service.pools.pools, {})

    def test_vaultPasswordIsNoConsoleLogin(self) -> None:
        """
        A vault user who is neither an admin nor a stats user cannot log
        into the console with the vault's password.
        """
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        error = self.scramLogin(protocol, "alice", "pw", "pgbouncer")[-1]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28P01")

    def test_consoleHba(self) -> None:
        """
        HBA applies to the console: a C{reject} rule for its database name
        stops it before any password step, while other rules still let the
        console's other name through.
        """
        config = dataclasses.replace(
            self.service.config,
            hba=(
                HbaRule("host", "pgbouncer", "all", None, "reject"),
                HbaRule("host", "all", "all", None, "scram-sha-256"),
            ),
        )
        self.service.reconfigure(config)
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        protocol.dataReceived(
            codec.encode(StartupMessage({"user": "root", "database": "pgbouncer"}))
        )
        error = _messages(self.transport)[0]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28000")
        self.assertIn("pg_hba.conf rejects connection", error.message)
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        self.scramLogin(protocol, "root", "rootpw", "pgtwist")
        self.assertEqual(protocol.consoleRole, "admin")

    def test_consoleNoHbaEntry(self) -> None:
        """
        With no rule for the console's database, the console is refused as
        PostgreSQL refuses a database no rule names.
        """
        config = dataclasses.replace(
            self.service.config, hba=(HbaRule("host", "db", "all", None, "scram-sha-256"),)
        )
        self.service.reconfigure(config)
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        protocol.dataReceived(
            codec.encode(StartupMessage({"user": "root", "database": "pgbouncer"}))
        )
        error = _messages(self.transport)[0]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28000")
        self.assertIn("no pg_hba.conf entry", error.message)

    def test_otherUidNotTrusted(self) -> None:
        """
        A unix socket peer from another OS user gets the password step,
        even when it names its own OS user.
        """
        self.patch(frontendModule, "peerUser", lambda transport: (os.getuid() + 1, "alice"))
        protocol = self.connectClient(UNIXAddress(None))
        replies = self.scramLogin(protocol, "alice", "pw", "pgbouncer")
        error = replies[-1]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28P01")

    def test_peerAdminTrusted(self) -> None:
        """
        A unix socket peer whose OS user is the admin it names needs no
        password (PostgreSQL's C{peer}), whatever its uid.
        """
        self.patch(frontendModule, "peerUser", lambda transport: (os.getuid() + 1, "root"))
        protocol = self.connectClient(UNIXAddress(None))
        protocol.dataReceived(
            codec.encode(StartupMessage({"user": "root", "database": "pgbouncer"}))
        )
        self.assertEqual(_messages(self.transport)[0], AuthenticationRequest(0))
        self.assertEqual(protocol.consoleRole, "admin")

    def test_sameUidTrusted(self) -> None:
        """
        A unix socket peer running as pgtwist's own OS user and naming that
        user needs no password, and is an admin.
        """
        self.patch(frontendModule, "peerUser", lambda transport: (os.getuid(), "pgtwistuser"))
        protocol = self.connectClient(UNIXAddress(None))
        protocol.dataReceived(
            codec.encode(StartupMessage({"user": "pgtwistuser", "database": "pgtwist"}))
            + codec.encode(Query("SHOW STATE"))
        )
        replies = _messages(self.transport)
        self.assertEqual(replies[0], AuthenticationRequest(0))
        self.assertEqual(protocol.consoleRole, "admin")
        self.assertIn("RowDescription", [type(m).__name__ for m in replies])

    def test_sameUidOtherNameNotTrusted(self) -> None:
        """
        A peer with pgtwist's uid that names another user is not trusted:
        it gets the password step like anyone (finding 7 of issue 11).
        """
        self.patch(frontendModule, "peerUser", lambda transport: (os.getuid(), "pgtwistuser"))
        protocol = self.connectClient(UNIXAddress(None))
        replies = self.scramLogin(protocol, "anyone", "guess", "pgtwist")
        error = replies[-1]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28P01")
        self.assertIsNot(protocol.consoleRole, "admin")

    def test_tcpNeverTrusted(self) -> None:
        """
        Over TCP the peer's uid is not asked: the password step applies.
        """
        self.patch(frontendModule, "peerUser", lambda transport: (os.getuid(), "anyone"))
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        replies = self.scramLogin(protocol, "anyone", "guess", "pgtwist")
        error = replies[-1]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28P01")
        self.assertEqual(protocol.state, FrontendState.CLOSED)

    def test_consoleOnly(self) -> None:
        """
        On the management port any database name opens the console.
        """
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1), consoleOnly=True)
        self.scramLogin(protocol, "root", "rootpw", "db")
        self.assertEqual(protocol.key, ("pgbouncer", "root"))
        self.assertEqual(protocol.state, FrontendState.READY)

    def test_refusedWhileShuttingDown(self) -> None:
        """
        During a graceful shutdown new pool clients are refused; the console is not.
        """
        self.service.stopListening()
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        protocol.dataReceived(codec.encode(StartupMessage({"user": "alice", "database": "db"})))
        error = _messages(self.transport)[0]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "57P03")
        protocol = self.connectClient(IPv4Address("TCP", "127.0.0.1", 1))
        self.scramLogin(protocol, "root", "rootpw", "pgbouncer")
        self.assertEqual(protocol.state, FrontendState.READY)


class ServiceTests(ConsoleTestCase):
    """
    The management listener and the statistics timer.
    """

    def test_managementEndpoint(self) -> None:
        """
        C{management} listens on the main host; 0 is off.
        """
        main = makeConfiguration().main
        self.assertIsNone(managementEndpoint(main))
        self.assertEqual(
            managementEndpoint(dataclasses.replace(main, management=6433)),
            "tcp:6433:interface=127.0.0.1:backlog=128",
        )
        self.assertEqual(
            managementEndpoint(dataclasses.replace(main, host="*", management=6433)),
            "tcp6:6433:interface=\\:\\::backlog=128",
        )

    def test_managementListener(self) -> None:
        """
        The management port has a listener whose clients only get the console,
        and it keeps listening during a graceful shutdown.
        """
        reactor = MemoryReactorClock()
        config = makeConfiguration(management=6433, unixSocketDir="/tmp/pgtwist-test")
        service = buildService(config, reactor)
        service.startService()
        ports = [port for port, *_ in reactor.tcpServers]
        self.assertEqual(ports, [6432, 6433])
        protocol = reactor.tcpServers[1][1].buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.assertTrue(protocol.consoleOnly)  # type: ignore[union-attr]
        service.management.shutdown("gracefully")
        assert service.managementListener is not None
        self.assertTrue(service.managementListener.running)
        self.assertTrue(
            [lst for lst in service.listeners if lst.description.startswith("unix:")][0].running
        )
        self.assertFalse(service.listeners[0].running)
        self.successResultOf(service.stopService())
        self.assertFalse(service.managementListener.running)

    def test_statsTimer(self) -> None:
        """
        Averages are refreshed every stats_period once started.
        """
        self.service.startService()
        stats = self.service.pools.pool(("db", "alice")).stats
        stats.addQuery(0.001)
        self.reactor.advance(self.service.config.main.statsPeriod)
        self.assertEqual(self.service.console.averages.averages["db"][2], 0)
        self.assertEqual(self.service.console.averages.averages["db"][6], 1000)
        self.successResultOf(self.service.stopService())
        self.assertFalse(self.service.statsTimer.running)

    def test_pausedPoolsNotPrefilled(self) -> None:
        """
        The janitor opens no backends for a paused pool.
        """
        config = makeConfiguration()
        limits = (dataclasses.replace(config.limits[0], user="alice", minSize=1),)
        self.service.reconfigure(dataclasses.replace(config, limits=limits))
        self.service.pools.pause("db")
        self.service.janitor.maintenance.maintain()
        self.assertEqual(self.connects, [])
        self.service.pools.resume("db")
        self.service.janitor.maintenance.maintain()
        self.assertEqual(len(self.connects), 1)
        self.assertEqual(self.service.pools.pool(("db", "alice")).count(BackendState.CONNECTING), 1)
