# -*- test-case-name: tests.integration.test_faultproxy -*-
"""
A small fault-injecting TCP proxy, in the spirit of Toxiproxy (which
pgcat's tests put between the pooler and PostgreSQL): it forwards every
connection it accepts to one upstream address and, on command, delays
what it forwards (latency), stops forwarding for a while (a stall: the
bytes wait in the proxy, as they would in a congested network), or resets
every connection it carries (RST both ways, as a dropped NAT entry or a
rebooted middlebox does).

The soak (L{benchmarks.soak}) runs one between pgtwist and PostgreSQL.
It runs an C{asyncio} loop in a thread of its own, so that the soak's
blocking code drives it through plain method calls: L{FaultProxy.start},
L{FaultProxy.latency}, L{FaultProxy.stall}, L{FaultProxy.reset},
L{FaultProxy.stop}; each is safe to call from any thread.

When the upstream refuses a connection (PostgreSQL is restarting), the
accepted connection is reset at once, so that the pooler sees what it
would see without the proxy: a connection that failed.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

#: How much one read takes from a socket.
CHUNK = 65536
#: SO_LINGER on, zero seconds: close() sends RST and discards what is unsent.
_LINGER_RESET = struct.pack("ii", 1, 0)


def _resetSocket(writer: asyncio.StreamWriter) -> None:
    """
    Close C{writer}'s socket with an RST rather than a FIN.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
    writer.transport.abort()


class _Link:
    """
    One proxied connection: the accepted (downstream) side and the
    upstream side.
    """

    def __init__(
        self,
        down: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.down = down
        self.up = up
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        """
        Abort both sides with RST and stop forwarding.
        """
        for _, writer in (self.down, self.up):
            _resetSocket(writer)
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """
    Forward connections on C{127.0.0.1:port} to C{upstream}, with faults
    on command.

    @ivar port: The port it listens on (known after L{start}).
    @ivar accepted: How many connections it has accepted.
    @ivar refused: How many it reset because the upstream refused them.
    """

    def __init__(self, upstreamHost: str, upstreamPort: int, port: int = 0) -> None:
        """
        @param port: The port to listen on; C{0} lets the system choose.
        """
        self.upstream = (upstreamHost, upstreamPort)
        self.port = port
        self.accepted = 0
        self.refused = 0
        self._links: set[_Link] = set()
        self._delay = 0.0
        self._stalledUntil = 0.0
        self._cut = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    # -- control, from any thread ------------------------------------------

    def start(self) -> FaultProxy:
        """
        Start the loop thread and listen; return once listening.
        """
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="faultproxy", daemon=True
        )  # fmt: skip
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """
        Reset every connection, stop listening and end the loop thread.
        """
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self._callOn(loop, self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    def latency(self, seconds: float) -> None:
        """
        Delay every chunk forwarded, both ways, by C{seconds} from now on
        (C{0} for none).
        """
        self._delay = max(0.0, seconds)

    def stall(self, seconds: float) -> None:
        """
        Forward nothing, either way, for C{seconds} from now; what arrives
        meanwhile is held and forwarded afterwards.
        """
        self._stalledUntil = time.monotonic() + seconds

    def reset(self) -> int:
        """
        Reset every connection carried now (RST both ways); return how many.
        """
        return self._call(self._resetAll())

    def cut(self) -> int:
        """
        Make the upstream unreachable for good, as a server whose host died
        or was cut off: reset every connection carried now and every one
        accepted from now on. Returns how many were reset now.
        """
        self._cut = True
        return self.reset()

    @property
    def connections(self) -> int:
        """
        How many connections it carries now.
        """
        return len(self._links)

    # -- the loop ------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """
        Run C{coroutine} on the loop and wait for its result.
        """
        assert self._loop is not None, "the proxy is not running"
        return self._callOn(self._loop, coroutine)

    @staticmethod
    def _callOn(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """
        Run C{coroutine} on C{loop} from another thread and wait for it.
        """
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30)

    async def _listen(self) -> None:
        """
        Listen on C{127.0.0.1:port}.
        """
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        """
        Stop listening and reset every link.
        """
        if self._server is not None:
            self._server.close()
        await self._resetAll()

    async def _resetAll(self) -> int:
        """
        Reset every link; return how many there were.
        """
        links = list(self._links)
        self._links.clear()
        for link in links:
            link.reset()
        return len(links)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """
        Connect upstream for a new connection and forward both ways until
        either side closes.
        """
        self.accepted += 1
        if self._cut:
            self.refused += 1
            _resetSocket(writer)
            return
        try:
            up = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 15)
        except (OSError, asyncio.TimeoutError):
            self.refused += 1
            _resetSocket(writer)
            return
        link = _Link((reader, writer), up)
        self._links.add(link)
        link.tasks = [
            asyncio.ensure_future(self._pump(reader, up[1])),
            asyncio.ensure_future(self._pump(up[0], writer)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        for _, w in (link.down, link.up):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """
        Copy C{reader} to C{writer}, honouring latency and stalls, until
        C{reader} ends; then pass the end on (FIN) and end the other
        direction too.
        """
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self._delay:
                    await asyncio.sleep(self._delay)
                while (wait := self._stalledUntil - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()
