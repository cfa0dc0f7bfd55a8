"""
Tests for L{benchmarks.replicas}: the configuration it runs pgtwist with,
and how it reads pgbench.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import replicas, servers
from pgtwist.config.loader import loadConfiguration


class ReplicasBenchTests(SynchronousTestCase):
    """
    L{replicas.spreadConf} and L{replicas.tps}.
    """

    def test_spreadConfLoads(self) -> None:
        """
        The spread configuration loads: two servers, the routing keys in
        the main section.
        """
        text = replicas.spreadConf(servers.pgtwistConf(6432, 5432, "transaction", 4), 5433)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        config = loadConfiguration(path, warn=lambda message: None)
        self.assertEqual([s.port for s in config.servers], [5432, 5433])
        self.assertEqual(config.main.targetSessionAttrs, "any")
        self.assertEqual(config.main.loadBalanceHosts, "round-robin")

    def test_tps(self) -> None:
        """
        The tps without connection time is read; output without it is an error.
        """
        output = "latency average = 1.2 ms\ntps = 6543.21 (without initial connection time)\n"
        self.assertEqual(replicas.tps(output), 6543.21)
        self.assertRaises(RuntimeError, replicas.tps, "nothing")
