# -*- test-case-name: tests.unit.test_endpoints -*-
"""
Where pgtwist listens and where it connects: the strports descriptions of
its listeners, the C{.s.PGSQL.<port>} unix socket path PostgreSQL and libpq
agree on, and the one way to open a connection to a configured server.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.interfaces import IConnector
from twisted.internet.protocol import ClientFactory

from pgtwist.config.model import MainSettings, ServerSettings

__all__ = [
    "connectServer",
    "escape",
    "listenBacklog",
    "listenEndpoints",
    "managementEndpoint",
    "socketPath",
    "tcpEndpoint",
    "tcpHost",
]


def socketPath(directory: str, port: int) -> str:
    """
    The unix socket of a server listening on C{port} in C{directory}:
    C{<directory>/.s.PGSQL.<port>}, as PostgreSQL names it and libpq
    looks for it.
    """
    return os.path.join(directory, f".s.PGSQL.{port}")


def tcpHost(host: str) -> str:
    """
    The address to use for a configured C{host}: C{localhost} is 127.0.0.1
    (so that an IPv6-first resolver does not send pgtwist to C{::1} where
    nothing listens), anything else as it is.
    """
    return "127.0.0.1" if host == "localhost" else host


def escape(value: str) -> str:
    """
    C{value} as one field of a strports description (C{\\}, C{:} and C{=}
    escaped).
    """
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def tcpEndpoint(host: str, port: int | str, backlog: int | None = None) -> str:
    """
    The strports description for listening on C{host}/C{port}: C{*} is
    every address (IPv4 and IPv6), C{localhost} is 127.0.0.1.

    @param backlog: The listen queue, or C{None} for Twisted's default.
    """
    suffix = "" if backlog is None else f":backlog={backlog}"
    if host == "*":
        return f"tcp6:{port}:interface=\\:\\:{suffix}"
    if ":" in host:
        return f"tcp6:{port}:interface={escape(host)}{suffix}"
    return f"tcp:{port}:interface={tcpHost(host)}{suffix}"


def listenBacklog(main: MainSettings) -> int:
    """
    The listen queue of the client listeners: C{backlog}, by default a
    quarter of C{max_connections} and at least 128.
    """
    return main.backlog or max(128, main.maxConnections // 4)


def listenEndpoints(main: MainSettings) -> list[str]:
    """
    The strports descriptions pgtwist listens on: C{host}/C{port} (C{*} is
    every address, IPv4 and IPv6), the unix socket C{.s.PGSQL.<port>} in
    C{unix_socket_dir}, and any extra C{listen} endpoints.
    """
    result = [tcpEndpoint(main.host, main.port, listenBacklog(main))]
    if main.unixSocketDir:
        path = socketPath(main.unixSocketDir, main.port)
        result.append(f"unix:{escape(path)}:mode=777:lockfile=1")
    result.extend(main.listen)
    return result


def managementEndpoint(main: MainSettings) -> str | None:
    """
    The strports description of the remote admin console (C{management}
    port on the main C{host}), or C{None} when C{management} is off.
    """
    if main.management <= 0:
        return None
    return tcpEndpoint(main.host, main.management, 128)


def connectServer(
    reactor: Any, server: ServerSettings, factory: ClientFactory, timeout: float = 30.0
) -> IConnector:
    """
    Connect C{factory} to C{server}: over its unix socket when C{host} is a
    directory (starts with C{/}), else over TCP.
    """
    if server.host.startswith("/"):
        connector: IConnector = reactor.connectUNIX(
            socketPath(server.host, server.port), factory, timeout
        )
    else:
        connector = reactor.connectTCP(tcpHost(server.host), server.port, factory, timeout)
    return connector


def releaseConnector(connector: Any) -> None:
    """
    Drop a connector's reference to its transport once the connection is
    over (from a factory's C{clientConnectionLost}). Twisted's transport
    and connector refer to each other, and the connector to its factory:
    left so, the connection's objects would be freed only by Python's
    cyclic collector, in bulk and late, not by reference counting when the
    connection ends. Twisted drops it the same way when a connection fails.
    """
    if getattr(connector, "transport", None) is not None:
        connector.transport = None
