"""
Tests for L{pgtwist.admin.console} and L{pgtwist.admin.commands}: the
console protocol, PgBouncer's result-set shapes, parsing, SHOW HELP and
permissions, driven through a L{FakeFrontendLink} (no sockets).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pgtwist.admin import commands, show
from pgtwist.admin.console import EXTENDED_PROTOCOL_ERROR
from pgtwist.admin.results import COLUMN_TYPES, ResultSet, encodeReply
from pgtwist.config.model import DatabaseLimit, UserEntry
from pgtwist.config.verifiers import parseVerifier
from pgtwist.interfaces import IPipelineSession
from pgtwist.wire import codec
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    Bind,
    CommandComplete,
    DataRow,
    Execute,
    NoticeResponse,
    Parse,
    ReadyForQuery,
    Sync,
    Terminate,
)
from tests.unit._console import ConsoleTestCase


class _Pinned:
    """
    A pipeline session that reports it is pinned, otherwise the wrapped one.
    """

    def __init__(self, session: Any, pinned: str) -> None:
        self._session = session
        self.pinned = pinned

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


SOCKET = (
    "ssssssisiTTiiississiis",
    "type user database replication state addr port local_addr local_port connect_time "
    "request_time wait wait_us close_needed ptr link remote_pid tls application_name "
    "prepared_statements id pinned",
)
STATS_TOTALS = (
    "sNNNNNNNNNNNN",
    "database server_assignment_count xact_count query_count bytes_received bytes_sent "
    "xact_time query_time wait_time client_parse_count server_parse_count bind_count "
    "client_login_count",
)

#: SHOW subject -> (PgBouncer type letters, column names): REFERENCE.md section 3.
SHAPES: dict[str, tuple[str, str]] = {
    "POOLS": (
        "ssiiiiiiiiiiiiissss",
        "database user cl_active cl_waiting cl_active_cancel_req cl_waiting_cancel_req "
        "sv_active sv_active_cancel sv_being_canceled sv_idle sv_used sv_tested sv_login "
        "maxwait maxwait_us pool_mode load_balance_hosts target_session_attrs servers",
    ),
    "STATS": (
        "s" + "N" * 24,
        "database total_server_assignment_count total_xact_count total_query_count "
        "total_received total_sent total_xact_time total_query_time total_wait_time "
        "total_client_parse_count total_server_parse_count total_bind_count "
        "total_client_login_count avg_server_assignment_count avg_xact_count avg_query_count "
        "avg_recv avg_sent avg_xact_time avg_query_time avg_wait_time avg_client_parse_count "
        "avg_server_parse_count avg_bind_count avg_client_login_count",
    ),
    "STATS_TOTALS": STATS_TOTALS,
    "STATS_AVERAGES": (
        STATS_TOTALS[0],
        STATS_TOTALS[1]
        .replace("client_parse_count", "avg_client_parse_count")
        .replace("server_parse_count", "avg_server_parse_count")
        .replace("bind_count", "avg_bind_count")
        .replace("client_login_count", "avg_client_login_count"),
    ),
    "TOTALS": ("sN", "name value"),
    "CLIENTS": SOCKET,
    "SERVERS": (SOCKET[0] + "ss", SOCKET[1] + " server server_role"),
    "DATABASES": (
        "ssissiiiissiiiiii",
        "name host port database force_user pool_size min_pool_size reserve_pool_size "
        "server_lifetime pool_mode load_balance_hosts max_connections current_connections "
        "max_client_connections current_client_connections paused disabled",
    ),
    "USERS": (
        "ssssiiii",
        "name pool_size reserve_pool_size pool_mode max_user_connections current_connections "
        "max_user_client_connections current_client_connections",
    ),
    "LISTS": ("si", "list items"),
    "CONFIG": ("ssss", "key value default changeable"),
    "STATE": ("ss", "key value"),
    "VERSION": ("s", "version"),
    "MEM": ("siiii", "name size used free memtotal"),
    "LISTENERS": (
        "ssisiiii",
        "database user backend_pid state channels clients delivered lost",
    ),
    "CHANNELS": ("sssii", "database user channel clients listening"),
    "STATUS": ("ss", "key value"),
    "FILES": ("ss", "name path"),
    "PEERS": ("isii", "peer_id host port pool_size"),
    "PEER_POOLS": (
        "iiiii",
        "peer_id cl_active_cancel_req cl_waiting_cancel_req sv_active_cancel sv_login",
    ),
    "DNS_HOSTS": ("sqs", "hostname ttl addrs"),
    "DNS_ZONES": ("sqi", "zonename serial count"),
}


class ShapeTests(ConsoleTestCase):
    """
    Every SHOW answers with PgBouncer's columns, types and the C{SHOW} tag.
    """

    def setUp(self) -> None:
        super().setUp()
        backend = self.activeBackend()
        self.client(backend=backend)
        self.client(waiting=True)
        self.service.pools.acquire(("db", "bob"), None)

    def test_everyShow(self) -> None:
        """
        Column names, order and type OIDs match PgBouncer's for each SHOW.
        """
        for subject, (letters, names) in SHAPES.items():
            result = self.one(f"SHOW {subject}")
            self.assertEqual(result.tag, "SHOW", subject)
            self.assertEqual(result.names, names.split(), subject)
            self.assertEqual(result.types, [COLUMN_TYPES[x][0] for x in letters], subject)
            sizes = [f.typeSize for f in result.description.fields]  # type: ignore[union-attr]
            self.assertEqual(sizes, [COLUMN_TYPES[x][1] for x in letters], subject)

    def test_everyShowInRegistry(self) -> None:
        """
        The shapes above cover every SHOW command of the registry but HELP.
        """
        subjects = {c.subject for c in commands.COMMANDS if c.verb == "SHOW"}
        self.assertEqual(subjects - {"HELP"}, set(SHAPES))

    def test_selectIsShow(self) -> None:
        """
        C{SELECT} is an alias of C{SHOW}, any case, with a trailing C{;}.
        """
        self.assertEqual(self.one("select version;").names, ["version"])

    def test_version(self) -> None:
        """
        SHOW VERSION names pgtwist.
        """
        self.assertTrue(self.one("SHOW VERSION").rows[0][0].startswith("pgtwist "))  # type: ignore[union-attr]

    def test_pools(self) -> None:
        """
        SHOW POOLS counts clients and backends per pool, with the console's own pool.
        """
        result = self.one("SHOW POOLS")
        rows = {(r[0], r[1]): r for r in result.rows}
        db = dict(zip(result.names, rows[("db", "alice")], strict=True))
        self.assertEqual((db["cl_active"], db["cl_waiting"], db["sv_active"]), ("1", "1", "1"))
        bob = dict(zip(result.names, rows[("db", "bob")], strict=True))
        self.assertEqual((bob["sv_login"], bob["maxwait"]), ("1", "0"))
        admin = dict(zip(result.names, rows[("pgbouncer", "pgbouncer")], strict=True))
        self.assertEqual((admin["cl_active"], admin["pool_mode"]), ("0", "statement"))

    def test_maxwait(self) -> None:
        """
        maxwait is how long the oldest waiter has waited, split in seconds and microseconds.
        """
        self.reactor.advance(2.5)
        result = self.one("SHOW POOLS")
        bob = dict(zip(result.names, [r for r in result.rows if r[1] == "bob"][0], strict=True))
        self.assertEqual((bob["maxwait"], bob["maxwait_us"]), ("2", "500000"))

    def test_clientsAndServers(self) -> None:
        """
        SHOW CLIENTS lists pool clients (states, links) and console
        sessions; SHOW SERVERS lists backends linked back to their client.
        """
        clients = self.one("SHOW CLIENTS")
        states = sorted(zip(clients.column("database"), clients.column("state"), strict=True))
        self.assertEqual(states, [("db", "active"), ("db", "waiting")])
        servers = self.one("SHOW SERVERS")
        self.assertEqual(sorted(servers.column("state")), ["active", "new"])
        active = servers.column("state").index("active")
        link = servers.column("link")[active]
        self.assertIn(link, clients.column("ptr"))
        self.assertEqual(servers.column("remote_pid")[active], "2000")
        self.assertEqual(servers.column("addr")[active], "127.0.0.1")
        self.assertEqual(servers.column("server")[active], "primary")
        self.assertEqual(servers.column("server_role")[active], "unknown")
        pools = self.one("SHOW POOLS")
        dbs = [r for r in pools.rows if r[0] == "db"]
        servers = [dict(zip(pools.names, r, strict=True))["servers"] for r in dbs]
        self.assertEqual(servers, ["primary=1", "primary=1"])
        self.assertEqual(pools.column("target_session_attrs")[0], "read-write")
        self.assertEqual(clients.column("application_name"), ["psql", "psql"])

    def test_pinned(self) -> None:
        """
        SHOW CLIENTS' and SHOW SERVERS' last column, C{pinned}, says what
        keeps a transaction-pooling client on its backend (empty when
        nothing does).
        """
        clients = self.one("SHOW CLIENTS")
        self.assertEqual(clients.column("pinned"), ["", ""])
        client = next(c for c in self.service.factory.clients if c.backend is not None)
        session: Any = client.session
        client.session = _Pinned(session, "temporary tables")
        clients = self.one("SHOW CLIENTS")
        self.assertEqual(sorted(clients.column("pinned")), ["", "temporary tables"])
        servers = self.one("SHOW SERVERS")
        self.assertEqual(sorted(servers.column("pinned")), ["", "temporary tables"])

    def test_consoleInClients(self) -> None:
        """
        A console session on a real frontend shows up as a pgbouncer client.
        """
        console = self.client(("pgbouncer", "root"))
        self.service.factory.clients.discard(console)
        self.service.factory.consoles.add(console)
        rows = self.one("SHOW CLIENTS").rows
        self.assertIn("pgbouncer", [r[2] for r in rows])

    def test_databases(self) -> None:
        """
        SHOW DATABASES lists the databases file's databases and aliases,
        those in use and the console's.
        """
        result = self.one("SHOW DATABASES")
        byName = {r[0]: dict(zip(result.names, r, strict=True)) for r in result.rows}
        self.assertEqual(sorted(byName), ["db", "dbalias", "pgbouncer"])
        self.assertEqual(byName["dbalias"]["database"], "db")
        self.assertEqual(byName["db"]["pool_size"], "5")
        self.assertEqual(byName["db"]["current_connections"], "2")
        self.assertEqual(byName["db"]["current_client_connections"], "2")
        self.assertEqual((byName["db"]["paused"], byName["db"]["disabled"]), ("0", "0"))
        self.assertEqual(byName["pgbouncer"]["force_user"], "pgbouncer")

    def test_databasesDbname(self) -> None:
        """
        SHOW DATABASES' C{database} is a line's C{dbname}: the database its
        backends log into.
        """
        config = self.service.config
        line = DatabaseLimit("db_ro", "all", 2, dbname="db", targetSessionAttrs="standby")
        self.service.config = dataclasses.replace(config, limits=(*config.limits, line))
        result = self.one("SHOW DATABASES")
        byName = {r[0]: dict(zip(result.names, r, strict=True)) for r in result.rows}
        self.assertEqual(byName["db_ro"]["database"], "db")

    def test_users(self) -> None:
        """
        SHOW USERS lists the vault's users and those in use.
        """
        result = self.one("SHOW USERS")
        self.assertEqual(result.column("name"), ["alice", "bob", "watcher"])
        self.assertEqual(result.column("current_connections"), ["1", "1", "0"])

    def test_usersOfAuthFile(self) -> None:
        """
        The users of C{auth_file} are listed as the vault's are, and counted
        in SHOW LISTS.
        """
        config = self.service.config
        authFile = {"carol": UserEntry("carol", None, verifier=parseVerifier("md5" + "0" * 32))}
        self.service.reconfigure(dataclasses.replace(config, authFile=authFile))
        result = self.one("SHOW USERS")
        self.assertEqual(result.column("name"), ["alice", "bob", "carol", "watcher"])
        self.assertEqual(self.one("SHOW LISTS").asDict()["users"], "4")

    def test_lists(self) -> None:
        """
        SHOW LISTS has PgBouncer's list names in two columns.
        """
        lists = self.one("SHOW LISTS").asDict()
        self.assertEqual(lists["pools"], "3")
        self.assertEqual(lists["used_servers"], "2")
        self.assertEqual(lists["used_clients"], "2")
        self.assertIn("dns_pending", lists)

    def test_config(self) -> None:
        """
        SHOW CONFIG has every main-section key with value, default and changeable.
        """
        result = self.one("SHOW CONFIG")
        rows = {r[0]: r for r in result.rows}
        self.assertEqual(rows["max_connections"], ("max_connections", "10", "100", "yes"))
        self.assertEqual(rows["port"][3], "no")
        self.assertEqual(rows["stats_users"][1], "watcher")
        self.assertEqual(rows["log_connections"][1], "off")

    def test_stateAndStatus(self) -> None:
        """
        SHOW STATE and SHOW STATUS report running, not paused.
        """
        self.assertEqual(
            self.one("SHOW STATE").asDict(), {"active": "yes", "paused": "no", "suspended": "no"}
        )
        status = self.one("SHOW STATUS").asDict()
        self.assertEqual(status["status"], "running")
        self.assertEqual(status["total_connections"], "2")
        self.assertEqual(status["server.primary"], "primary 127.0.0.1:5432")
        self.assertEqual(status["server.standby"], "standby 127.0.0.2:5432")

    def test_files(self) -> None:
        """
        SHOW FILES names each file of the family ('' when not given).
        """
        self.assertEqual(
            self.one("SHOW FILES").asDict(),
            dict.fromkeys(
                ["config", "hba", "limit", "users", "frontend", "admins", "superuser"], ""
            ),
        )

    def test_statsTotalsAndAverages(self) -> None:
        """
        Totals are summed per database; averages come from the snapshots
        taken every stats_period.
        """
        self.service.console.refreshAverages()
        stats = self.service.pools.pool(("db", "alice")).stats
        stats.addQuery(0.002)
        stats.addQuery(0.004)
        stats.bytesReceived += 1000
        self.reactor.advance(10)
        self.service.console.refreshAverages()
        totals = self.one("SHOW STATS_TOTALS")
        db = dict(
            zip(totals.names, totals.rows[totals.column("database").index("db")], strict=True)
        )
        self.assertEqual((db["query_count"], db["query_time"]), ("2", "6000"))
        averages = self.one("SHOW STATS_AVERAGES")
        db = dict(
            zip(averages.names, averages.rows[averages.column("database").index("db")], strict=True)
        )
        self.assertEqual((db["query_time"], db["bytes_received"]), ("3000", "100"))
        total = self.one("SHOW TOTALS").asDict()
        self.assertEqual((total["total_query_count"], total["avg_client_bytes"]), ("2", "100"))
        self.assertEqual(len(total), 24)
        everything = self.one("SHOW STATS")
        self.assertIn("pgbouncer", everything.column("database"))

    def test_fakeParameters(self) -> None:
        """
        Drivers' SHOW of a few settings gets PgBouncer's fake values.
        """
        result = self.one("SHOW client_encoding")
        self.assertEqual((result.names, result.rows), (["client_encoding"], [("UTF-8",)]))


class HelpTests(ConsoleTestCase):
    """
    SHOW HELP is built from the registry.
    """

    def test_notice(self) -> None:
        """
        A NoticeResponse C{Console usage} whose detail lists the commands,
        then tag SHOW (no rows), as PgBouncer sends it.
        """
        result = self.one("SHOW HELP")
        notice = result.messages[0]
        assert isinstance(notice, NoticeResponse)
        fields = dict(notice.fields)
        self.assertEqual(
            (fields[b"S"], fields[b"C"], fields[b"M"]), ("NOTICE", "00000", "Console usage")
        )
        self.assertTrue(fields[b"D"].startswith("\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS"))
        self.assertIn("\n\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS", fields[b"D"])
        self.assertIsNone(result.description)
        self.assertEqual(result.tag, "SHOW")

    def test_everyCommandListed(self) -> None:
        """
        Every registered command appears in the help.
        """
        text = commands.helpText()
        for command in commands.COMMANDS:
            self.assertIn(command.subject if command.verb == "SHOW" else command.usage[0], text)

    def test_findCommand(self) -> None:
        """
        Commands are found by name, any case; SELECT is SHOW.
        """
        command = commands.findCommand("select", "pools")
        assert command is not None
        self.assertEqual(command.name, "SHOW POOLS")
        self.assertIsNone(commands.findCommand("RESTART"))


class ParsingTests(SynchronousTestCase):
    """
    Statements split and tokenized as PgBouncer's regexes do.
    """

    def test_split(self) -> None:
        """
        Statements split on C{;} outside quotes; blanks are dropped.
        """
        self.assertEqual(
            commands.splitStatements("SHOW POOLS; ; SET x = 'a;b';"),
            ["SHOW POOLS", "SET x = 'a;b'"],
        )
        self.assertEqual(commands.splitStatements("  ;  "), [])

    def test_tokens(self) -> None:
        """
        Bare words, C{"names"} and C{'strings'} (quotes doubled to escape), and C{=}.
        """
        self.assertEqual(
            commands.tokenize("""set x='it''s' "My ""db" """),
            [
                commands.Token("set"),
                commands.Token("x"),
                commands.Token("="),
                commands.Token("it's", True),
                commands.Token('My "db', True),
            ],
        )
        self.assertIsNone(commands.tokenize("SHOW 'unterminated"))

    def test_encodeChecksWidth(self) -> None:
        """
        A result set with a wrong number of types is refused when built.
        """
        self.assertRaises(ValueError, ResultSet, "s", ("a", "b"))
        data = encodeReply(ResultSet("si", ("a", "b"), [(None, 7)]))
        messages = [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(data)]
        self.assertEqual(messages[1:], [DataRow((None, b"7")), CommandComplete("SHOW")])


class ProtocolTests(ConsoleTestCase):
    """
    The console session's handling of the wire protocol.
    """

    def test_provides(self) -> None:
        """
        A console session provides IPipelineSession.
        """
        verifyObject(IPipelineSession, self.session)

    def test_login(self) -> None:
        """
        The login reports PgBouncer's welcome parameters and the client's id.
        """
        frontend, _ = self.openSession("admin")
        assert frontend.loginParameters is not None
        self.assertEqual(frontend.loginParameters["client_encoding"], "UTF8")
        self.assertEqual(frontend.loginParameters["standard_conforming_strings"], "on")
        self.assertTrue(frontend.loginParameters["server_version"].startswith("15.0 (pgtwist"))
        self.activeBackend()
        frontend, _ = self.openSession("admin")
        assert frontend.loginParameters is not None
        self.assertEqual(frontend.loginParameters["server_version"], "15.4")

    def test_unknownCommand(self) -> None:
        """
        An unknown command gets PgBouncer's text, SQLSTATE 08P01, and the session goes on.
        """
        result = self.one("FROB")
        assert result.error is not None
        self.assertEqual(result.error.message, "invalid command 'FROB', use SHOW HELP;")
        self.assertEqual((result.error.code, result.error.severity), ("08P01", "ERROR"))
        self.assertEqual(self.one("SHOW STATE").tag, "SHOW")

    def test_wholeQueryQuoted(self) -> None:
        """
        The error quotes the whole query, trailing semicolon included.
        """
        result = self.one("SHOW NOTHING;")
        assert result.error is not None
        self.assertEqual(result.error.message, "invalid command 'SHOW NOTHING;', use SHOW HELP;")

    def test_tooManyArguments(self) -> None:
        """
        Extra arguments are a syntax error.
        """
        result = self.one("RELOAD now")
        assert result.error is not None
        self.assertIn("invalid command", result.error.message)

    def test_severalStatements(self) -> None:
        """
        Statements of one Query run in order, with one ReadyForQuery at the end.
        """
        results = self.query("SHOW VERSION; SHOW STATE")
        self.assertEqual([r.tag for r in results], ["SHOW", "SHOW", None])
        self.assertEqual(results[2].messages, [ReadyForQuery(b"I")])

    def test_errorStopsQuery(self) -> None:
        """
        An error skips the rest of the Query.
        """
        results = self.query("FROB; SHOW STATE")
        self.assertIsNotNone(results[0].error)
        self.assertEqual(results[1].messages, [ReadyForQuery(b"I")])

    def test_emptyQuery(self) -> None:
        """
        An empty query gets EmptyQueryResponse and ReadyForQuery.
        """
        results = self.query(" ; ")
        self.assertEqual(
            [type(m).__name__ for m in results[0].messages], ["EmptyQueryResponse", "ReadyForQuery"]
        )

    def test_byteByByte(self) -> None:
        """
        A Query split into single bytes is answered once whole.
        """
        data = codec.frame(b"Q", b"SHOW VERSION\0")
        for i in range(len(data)):
            self.session.frontendDataReceived(data[i : i + 1])
        results = self.results()
        self.assertEqual(results[0].names, ["version"])

    def test_extendedProtocol(self) -> None:
        """
        Parse/Bind/Execute get one clear error, then ReadyForQuery at Sync.
        """
        data = codec.encodeAll([Parse("", "SHOW POOLS"), Bind("", ""), Execute(""), Sync()])
        self.session.frontendDataReceived(data)
        results = self.results()
        assert results[0].error is not None
        self.assertEqual(results[0].error.message, EXTENDED_PROTOCOL_ERROR)
        self.assertEqual(results[0].error.code, "0A000")
        self.assertEqual(results[1].messages, [ReadyForQuery(b"I")])
        self.assertEqual(self.one("SHOW STATE").tag, "SHOW")

    def test_otherMessage(self) -> None:
        """
        A message the console does not know is refused, and the session goes on.
        """
        self.session.frontendDataReceived(codec.frame(b"F", b"\0\0\0\0"))
        results = self.results()
        assert results[0].error is not None
        self.assertIn("unsupported message type", results[0].error.message)
        self.assertEqual(results[1].messages, [ReadyForQuery(b"I")])

    def test_terminate(self) -> None:
        """
        Terminate closes the connection without a message.
        """
        self.session.frontendDataReceived(codec.encode(Terminate()))
        self.assertTrue(self.frontend.failed)
        self.assertIsNone(self.frontend.failedWith)

    def test_badLength(self) -> None:
        """
        A broken frame closes the connection with FATAL 08P01.
        """
        self.session.frontendDataReceived(b"Q\0\0\0\1")
        assert self.frontend.failedWith is not None
        self.assertEqual(self.frontend.failedWith.code, "08P01")

    def test_statsUser(self) -> None:
        """
        A stats user may SHOW but gets "admin access needed" for the rest.
        """
        frontend = self.statsSession()
        self.assertEqual(self.one("SHOW POOLS", frontend).tag, "SHOW")
        for sql in (
            "PAUSE",
            "RELOAD",
            "SET max_connections = 5",
            "KILL_CLIENT 1",
            "CLEAR PROMETHEUS",
        ):
            result = self.one(sql, frontend)
            assert result.error is not None
            self.assertEqual(result.error.message, "admin access needed", sql)
        self.assertFalse(self.service.pools.pausedAll)

    def test_statsUserControlsNothing(self) -> None:
        """
        Every command of the registry but SHOW needs an admin: a stats
        user gets "admin access needed" for each, whatever its arguments,
        and nothing changes (no pause, suspension, shutdown or kill).
        """
        frontend = self.statsSession()
        controls = [c for c in commands.COMMANDS if c.verb != "SHOW"]
        self.assertTrue(all(c.adminOnly for c in controls))
        self.assertTrue({"SUSPEND", "WAIT_CLOSE", "KILL_CLIENT"} <= {c.name for c in controls})
        for command in controls:
            if command.verb == "SET":
                sql = "SET max_connections = 5"
            else:
                sql = " ".join([command.name, *["1"] * command.minArgs])
            result = self.one(sql, frontend)
            assert result.error is not None, sql
            self.assertEqual(result.error.message, "admin access needed", sql)
        management = self.service.management
        self.assertEqual((management.state, management.suspended), ("running", False))
        self.assertFalse(self.service.pools.pausedAll)
        self.assertEqual(self.stopped, [])

    def test_fakeSetForEveryone(self) -> None:
        """
        SET of a setting drivers send is ignored with a notice, even for stats users.
        """
        result = self.one("SET extra_float_digits = 3", self.statsSession())
        notice = result.messages[0]
        assert isinstance(notice, NoticeResponse)
        self.assertEqual(dict(notice.fields)[b"M"], "SET ignored")
        self.assertEqual(result.tag, "SET")

    def test_showSubjectMissing(self) -> None:
        """
        A bare SHOW is a syntax error.
        """
        self.assertIsNotNone(self.one("SHOW").error)


class ShowHelpersTests(SynchronousTestCase):
    """
    Small formatting helpers.
    """

    def test_formatSetting(self) -> None:
        """
        Settings print as the configuration file spells them.
        """
        self.assertEqual(
            [show.formatSetting(v) for v in (True, False, None, 30.0, 0.5, ("a", "b"), 7)],
            ["on", "off", "", "30", "0.5", "a,b", "7"],
        )
