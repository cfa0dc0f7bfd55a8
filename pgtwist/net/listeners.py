# -*- test-case-name: tests.unit.test_service -*-
"""
Listening on one endpoint as a service: the client listeners, the
management port, metrics and the manhole all use L{ListenerService}.
"""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

#: An endpoint description's C{backlog} parameter.
_BACKLOG = re.compile(r":backlog=(\d+)(?::|$)")


class ListenerService(Service):
    """
    Listen on one endpoint; remember the port so tests can use port 0.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        description: str,
        factory: IProtocolFactory,
        prefix: str = "listen",
        name: str | None = None,
    ) -> None:
        self._reactor = reactor
        self.description = description
        self.factory = factory
        self.port: IListeningPort | None = None
        self.name = name or f"{prefix}:{description}"
        #: Services named explicitly (metrics, manhole) say where they listen;
        #: client listeners are announced by Twisted's port already.
        self._announce = name is not None
        self._listening: Deferred[IListeningPort] | None = None
        #: C{"<fd>:<family>"}: a socket listening on C{description} already,
        #: handed over by the pgtwist this one upgrades, to adopt instead.
        self.adopt: str | None = None

    def privilegedStartService(self) -> None:
        """
        Listen before privileges are dropped (twistd's order).
        """
        super().privilegedStartService()
        adopt = self.adopt
        if adopt is None and self.description.startswith("adopt:"):
            # A socket the worker supervisor listened on and handed down.
            adopt = self.description[len("adopt:") :]
        if adopt is not None:
            fd, family = adopt.split(":")
            port = self._reactor.adoptStreamPort(int(fd), int(family), self.factory)
            if self.adopt is not None:
                # An upgraded pgtwist's socket: the port holds a copy, and
                # listened again with Twisted's default backlog (50).
                os.close(int(fd))
                backlog = _BACKLOG.search(self.description)
                if backlog is not None:
                    port.socket.listen(int(backlog.group(1)))
            elif getattr(port, "_bindPath", None):
                # The supervisor's unix socket: its file is the supervisor's
                # to remove. Twisted would unlink it as each worker's copy
                # closes (all but the first finding it gone); a path in the
                # abstract namespace (a leading NUL) is not unlinked.
                port._bindPath = "\0"  # type: ignore[attr-defined]
            self._listening = succeed(port)
        else:
            endpoint = endpoints.serverFromString(self._reactor, self.description)
            self._listening = endpoint.listen(self.factory)
        self._listening.addCallback(self._cbListening)

    def _cbListening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        if self._announce:
            self.log.info(
                "{service} listening on {description}",
                service=self.name,
                description=self.description,
            )
        return port

    def startService(self) -> None:
        """
        Start listening unless L{privilegedStartService} did.
        """
        if self._listening is None:
            self.privilegedStartService()
        super().startService()

    def whenListening(self) -> Deferred[IListeningPort]:
        """
        Fires with the listening port (or the failure to listen).
        """
        if self.port is not None:
            return succeed(self.port)
        assert self._listening is not None
        d: Deferred[IListeningPort] = Deferred()

        def relay(result: Any) -> Any:
            d.callback(result) if not isinstance(result, Failure) else d.errback(result)
            return result

        self._listening.addBoth(relay)
        return d

    def stopService(self) -> Deferred[None] | None:
        """
        Stop listening.
        """
        super().stopService()
        listening, self._listening = self._listening, None
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()  # type: ignore[no-any-return]
        if listening is not None:
            listening.cancel()
        return None
