# -*- test-case-name: tests.unit.test_bench -*-
"""
A minimal asyncio PostgreSQL client for the harness: log in (trust or
SCRAM-SHA-256), run a simple query, hold connections idle.

It serves two steps: warming a freshly started pooler up with one login and
one query before its CPU time is read (so import and first-use costs are
not charged to the run), and opening thousands of idle connections for the
memory step. SCRAM goes through L{pgtwist.auth._scram.ScramClient}, whose
derived keys are cached: only the first login pays for PBKDF2.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from dataclasses import dataclass

from pgtwist.auth._scram import SCRAM_SHA_256, ScramClient, makeNonce
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    ErrorResponse,
    PasswordMessage,
    Query,
    SSLRequest,
    StartupMessage,
    Terminate,
)

#: How many logins are in flight at once.
CONCURRENCY = 64
#: How long one login may take.
LOGIN_TIMEOUT = 30.0

_CODE = struct.Struct("!i")


class LoginError(RuntimeError):
    """
    A connection was refused or closed before it was ready for queries, or
    a query failed.
    """


def _error(body: bytes) -> LoginError:
    """
    A L{LoginError} carrying an ErrorResponse's SQLSTATE and message.
    """
    error = codec.decodeBackend(constants.ERROR_RESPONSE, body)
    assert isinstance(error, ErrorResponse)
    return LoginError(f"{error.code} {error.message}")


def requireContext() -> ssl.SSLContext:
    """
    A client TLS context that encrypts without checking the server's
    certificate: libpq's C{sslmode=require}, as pgbench connects in the
    TLS workloads.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def startTLS(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """
    Send an SSLRequest and upgrade the connection to TLS (L{requireContext})
    on C{S}, as libpq does with C{sslmode=require}.

    @raise LoginError: The server answered anything but C{S}.
    """
    writer.write(codec.encode(SSLRequest()))
    answer = await reader.readexactly(1)
    if answer != b"S":
        raise LoginError(f"the server answered {answer!r} to SSLRequest")
    await writer.start_tls(requireContext())


async def login(
    host: str, port: int, user: str, password: str, database: str, tls: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """
    Open one connection and log in, returning once the server sent
    ReadyForQuery.

    @param tls: Ask for TLS first (L{startTLS}).
    @raise LoginError: The server refused the login or closed.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if tls:
            await startTLS(reader, writer)
        writer.write(codec.encode(StartupMessage({"user": user, "database": database})))
        framer = MessageFramer()
        scram: ScramClient | None = None
        while True:
            data = await reader.read(65536)
            if not data:
                raise LoginError("the server closed the connection during login")
            for frame in framer.feed(data):
                if frame.type == constants.READY_FOR_QUERY:
                    return reader, writer
                if frame.type == constants.ERROR_RESPONSE:
                    raise _error(frame.body)
                if frame.type != constants.AUTHENTICATION:
                    continue
                (code,) = _CODE.unpack_from(frame.body)
                payload = frame.body[4:]
                if code == constants.AUTH_SASL:
                    scram = ScramClient(password, makeNonce())
                    initial = codec.encodeSASLInitialResponse(SCRAM_SHA_256, scram.clientFirst())
                    writer.write(codec.encode(initial))
                elif code == constants.AUTH_SASL_CONTINUE and scram is not None:
                    writer.write(codec.encode(PasswordMessage(scram.serverFirst(payload))))
                elif code == constants.AUTH_SASL_FINAL and scram is not None:
                    scram.serverFinal(payload)
                elif code != constants.AUTH_OK:
                    raise LoginError(f"unsupported authentication request {code}")
    except BaseException:
        writer.close()
        raise


async def query(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sql: str) -> None:
    """
    Run C{sql} with the simple protocol and wait for ReadyForQuery.

    @raise LoginError: The query failed or the server closed.
    """
    writer.write(codec.encode(Query(sql)))
    framer = MessageFramer()
    failure: LoginError | None = None
    while True:
        data = await reader.read(65536)
        if not data:
            raise LoginError("the server closed the connection during a query")
        for frame in framer.feed(data):
            if frame.type == constants.ERROR_RESPONSE:
                failure = _error(frame.body)
            elif frame.type == constants.READY_FOR_QUERY:
                if failure is not None:
                    raise failure
                return


async def _close(writer: asyncio.StreamWriter) -> None:
    """
    Send Terminate and close, ignoring a connection already gone.
    """
    try:
        writer.write(codec.encode(Terminate()))
        writer.close()
        await writer.wait_closed()
    except (OSError, RuntimeError):
        pass


def warmUp(
    host: str, port: int, user: str, password: str, database: str, tls: bool = False
) -> None:
    """
    Log in, run C{SELECT 1}, log out: the first login and query of a fresh
    pooler, kept out of the measured run.

    @param tls: Log in over TLS (the pooler's first handshake is then kept
        out of the run too).
    @raise LoginError: The pooler refused the login or the query.
    """

    async def once() -> None:
        """
        The warm-up connection.
        """
        reader, writer = await asyncio.wait_for(
            login(host, port, user, password, database, tls), LOGIN_TIMEOUT
        )
        try:
            await asyncio.wait_for(query(reader, writer, "SELECT 1"), LOGIN_TIMEOUT)
        finally:
            await _close(writer)

    asyncio.run(once())


@dataclass
class Connections:
    """
    Idle logged-in connections, closed together by L{close}.

    @ivar seconds: How long opening them took.
    """

    writers: list[asyncio.StreamWriter]
    seconds: float

    async def close(self) -> None:
        """
        Send Terminate on each connection and close it.
        """
        writers, self.writers = self.writers, []
        await asyncio.gather(*(_close(writer) for writer in writers))


async def openConnections(
    count: int, host: str, port: int, user: str, password: str, database: str
) -> Connections:
    """
    Open and log in C{count} connections, L{CONCURRENCY} at a time.

    @raise LoginError: Any login failed (the ones already open are closed).
    """
    gate = asyncio.Semaphore(CONCURRENCY)
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        """
        Open one connection when the gate lets us.
        """
        async with gate:
            _, writer = await asyncio.wait_for(
                login(host, port, user, password, database), LOGIN_TIMEOUT
            )
            writers.append(writer)

    started = time.monotonic()
    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    opened = Connections(writers, time.monotonic() - started)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await opened.close()
        raise LoginError(f"{len(failures)} of {count} logins failed; first: {failures[0]!r}")
    return opened
