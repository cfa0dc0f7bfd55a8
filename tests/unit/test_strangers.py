"""
Clients that never authenticate leave nothing behind them: no pool, no
statistics, no metrics series and no console rows named after what they
sent, through a real service (L{pgtwist.app.service}) on a
C{MemoryReactorClock}.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import re

from prometheus_client.exposition import generate_latest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from pgtwist.admin.metrics import makeRegistry
from pgtwist.auth._scram import SCRAM_SHA_256, ScramClient
from pgtwist.config.model import HbaRule
from pgtwist.net.frontend import FrontendProtocol, FrontendState
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    ErrorResponse,
    Message,
    PasswordMessage,
    StartupMessage,
)
from tests.unit._console import ConsoleTestCase, makeConfiguration

#: Matches the numbers of a metrics body (values change, series must not).
_NUMBER = re.compile(rb"[0-9.e+-]+$", re.MULTILINE)


class StrangerTests(ConsoleTestCase):
    """
    Refused logins of every kind, with random names.
    """

    def setUp(self) -> None:
        super().setUp()
        config = makeConfiguration()
        hba = (
            HbaRule("host", "rejected", "all", None, "reject"),
            HbaRule("host", "trusted", "all", None, "trust"),
            HbaRule("host", "all", "all", ipaddress.ip_network("127.0.0.1"), "all"),
        )
        self.service.reconfigure(
            dataclasses.replace(
                config, hba=hba, main=dataclasses.replace(config.main, allowUnknownUsers=False)
            )
        )
        self.registry = makeRegistry(self.service, self.reactor)
        self.random = random.Random(11)

    def name(self) -> str:
        """
        A random name nobody configured.
        """
        return "x" + "".join(self.random.choice("abcdefghijklmnop") for _ in range(12))

    def attempt(self, host: str, user: str, database: str, password: str) -> list[Message]:
        """
        One client from C{host}: StartupMessage, and a SCRAM exchange if it
        is asked for one; the connection is closed at the end.
        """
        address = IPv4Address("TCP", host, 40000)
        protocol: FrontendProtocol = self.service.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        sent: list[Message] = []

        def receive() -> list[Message]:
            data = transport.value()
            transport.clear()
            messages = [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(data)]
            sent.extend(messages)
            return messages

        protocol.dataReceived(codec.encode(StartupMessage({"user": user, "database": database})))
        request = receive()
        if request and isinstance(request[0], AuthenticationRequest):
            self.assertEqual(request[0].code, constants.AUTH_SASL)
            client = ScramClient(password, "clientnonce")
            protocol.dataReceived(
                codec.encode(codec.encodeSASLInitialResponse(SCRAM_SHA_256, client.clientFirst()))
            )
            serverFirst = receive()[0]
            assert isinstance(serverFirst, AuthenticationRequest), serverFirst
            protocol.dataReceived(
                codec.encode(PasswordMessage(client.serverFirst(serverFirst.data)))
            )
            receive()
        self.assertIs(protocol.state, FrontendState.CLOSED)
        protocol.connectionLost()
        return sent

    def snapshot(self) -> tuple[object, ...]:
        """
        What a stranger must not change: the pools, the console's SHOW
        USERS, POOLS and DATABASES, and the metrics series (values aside).
        """
        return (
            sorted(self.service.pools.pools),
            self.one("SHOW USERS").rows,
            self.one("SHOW POOLS").rows,
            self.one("SHOW DATABASES").rows,
            _NUMBER.sub(b"", generate_latest(self.registry)),
        )

    def test_refusedLoginsLeaveNothing(self) -> None:
        """
        Wrong passwords, unknown users and databases through C{all}, no HBA
        entry, C{reject} and an unknown user under C{trust}: each is
        refused, and afterwards pools, console rows and metrics series are
        as before; only the total of failed authentications counts them.
        """
        before = self.snapshot()
        attempts = 0
        for _ in range(20):
            for host, user, database, password in (
                ("127.0.0.1", "alice", self.name(), "guess"),
                ("127.0.0.1", "alice", "db", "guess"),
                ("127.0.0.1", self.name(), self.name(), "guess"),
                ("127.0.0.1", self.name(), "db", "guess"),
                ("10.0.0.1", self.name(), self.name(), "guess"),
                ("127.0.0.1", self.name(), "rejected", "guess"),
                ("127.0.0.1", self.name(), "trusted", "guess"),
            ):
                replies = self.attempt(host, user, database, password)
                error = replies[-1]
                assert isinstance(error, ErrorResponse), replies
                self.assertEqual(error.severity, "FATAL")
                self.assertIn(error.code, ("28P01", "28000"))
                attempts += 1
        self.assertEqual(self.connects, [])
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.service.pools.authFailures, attempts)
        body = generate_latest(self.registry).decode()
        self.assertIn(f"pgtwist_auth_failure_total {attempts:.1f}", body)

    def test_failureCountedInAnExistingPool(self) -> None:
        """
        A wrong password for a pool that exists (its user logged in before)
        still counts in that pool's C{pgtwist_auth_user_bad_password}.
        """
        self.service.pools.statsFor(("db", "alice"))
        self.attempt("127.0.0.1", "alice", "db", "guess")
        self.assertEqual(self.service.pools.statsFor(("db", "alice")).authFailure, 1)
        self.assertEqual(self.service.pools.authFailures, 1)
