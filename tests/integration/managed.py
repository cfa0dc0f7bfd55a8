"""
pgtwist in a process of its own, with its management API driven over stdin:
the API has no network surface yet (the admin console comes later), so the
integration tests reach the real L{pgtwist.admin.management.Management} of a real
service this way.

Run as C{python -m tests.integration.managed -c FILE -a FILE -u FILE [-l FILE]}.
Each line read is a JSON list C{[method, *arguments]} naming a method of
L{Management}; each is answered with one JSON line, C{{"result": ...}} or
C{{"error": "..."}}. Two more commands watch the cyclic garbage collector:
C{["saveGarbage"]} collects, then keeps whatever later collections find
(C{gc.DEBUG_SAVEALL}); C{["garbage"]} collects and answers how many objects
of each of pgtwist's classes were found only as cyclic garbage since. The
process exits when the reactor stops (graceful or
immediate shutdown, SIGTERM) or when stdin closes.
"""

from __future__ import annotations

import gc
import json
import sys
from collections import Counter
from typing import Any

from twisted.internet.stdio import StandardIO
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from pgtwist.admin.management import Management
from pgtwist.app.bootstrap import setUpProcess
from pgtwist.app.service import buildService
from pgtwist.app.tap import Options


class Commands(LineReceiver):
    """
    Calls L{Management} methods named by JSON lines, answering each with one
    JSON line.
    """

    delimiter = b"\n"

    def __init__(self, management: Management, reactor: Any) -> None:
        """
        Serve C{management}; stop C{reactor} when stdin closes.
        """
        self.management = management
        self.reactor = reactor

    def lineReceived(self, line: bytes) -> None:
        """
        Run one command.
        """
        name, *arguments = json.loads(line)
        try:
            if name == "saveGarbage":
                answer: dict[str, Any] = {"result": saveGarbage()}
            elif name == "garbage":
                answer = {"result": garbage()}
            else:
                answer = {"result": getattr(self.management, name)(*arguments)}
        except Exception as e:
            answer = {"error": f"{type(e).__name__}: {e}"}
        self.sendLine(json.dumps(answer).encode())

    def connectionLost(self, reason: Failure | None = None) -> None:
        """
        stdin closed: stop, as SIGTERM would.
        """
        if self.reactor.running:
            self.reactor.stop()


def saveGarbage() -> None:
    """
    Collect what is cyclic garbage now and forget it; from now on keep what
    the collector finds, for L{garbage} to count.
    """
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    del gc.garbage[:]


def garbage() -> dict[str, int]:
    """
    Collect, then count the objects of pgtwist's classes (by qualified class
    name) that only the cyclic collector found since L{saveGarbage}: objects
    reference counting did not free when their connection ended.
    """
    gc.collect()
    found = Counter(
        f"{type(thing).__module__}.{type(thing).__qualname__}"
        for thing in gc.garbage
        if type(thing).__module__.startswith("pgtwist.")
    )
    del gc.garbage[:]
    return dict(found)


def main(argv: list[str]) -> None:
    """
    Load the configuration as C{pgtwist} does, log where it says, start the
    service tree, and serve commands on stdin until the reactor stops.
    """
    from twisted.internet import reactor

    options = Options()
    options.parseOptions(argv)
    config = options.configuration
    service = buildService(config, reactor, reloadConfiguration=options.load)
    setUpProcess(config.main, reactor, service.reload)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    StandardIO(Commands(service.management, reactor), reactor=reactor)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main(sys.argv[1:])
