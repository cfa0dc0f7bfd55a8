"""
Tests for L{pgtwist.app.script}: pgagroal's command line becomes twistd's.
"""

from __future__ import annotations

import io
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from pgtwist import __version__
from pgtwist.app.script import twistdArguments


class ScriptTests(SynchronousTestCase):
    """
    The translation, and the flags answered directly.
    """

    def test_foreground(self) -> None:
        """
        Without C{-d}, twistd runs in the foreground with no pidfile.
        """
        self.assertEqual(
            twistdArguments(["-c", "a.conf", "-a", "hba.conf", "-u", "users.conf"]),
            [
                "twistd",
                "--reactor=pgtwist",
                "--nodaemon",
                "--pidfile=",
                "pgtwist",
                "--config",
                "a.conf",
                "--hba",
                "hba.conf",
                "--users",
                "users.conf",
            ],
        )

    def test_otherReactor(self) -> None:
        """
        C{--reactor NAME} replaces the default reactor.
        """
        arguments = twistdArguments(["--reactor", "uvloop", "-c", "a.conf"])
        assert arguments is not None
        self.assertEqual(arguments[:2], ["twistd", "--reactor=uvloop"])
        self.assertNotIn("--reactor=pgtwist", arguments)

    def test_daemon(self) -> None:
        """
        C{-d} lets twistd daemonize with a pidfile.
        """
        arguments = twistdArguments(["-d", "-c", "a.conf", "-l", "db.conf", "-A", "admins"])
        assert arguments is not None
        self.assertEqual(arguments[2], f"--pidfile={os.path.abspath('pgtwist.pid')}")
        self.assertNotIn("--nodaemon", arguments)
        self.assertEqual(arguments[-4:], ["--limit", "db.conf", "--admins", "admins"])

    def test_versionAndHelp(self) -> None:
        """
        C{-V} and C{-?} print and run nothing.
        """
        for flag, expected in (("-V", f"pgtwist {__version__}"), ("-?", "Usage:")):
            out = io.StringIO()
            self.patch(sys, "stdout", out)
            self.assertIsNone(twistdArguments([flag]))
            self.assertIn(expected, out.getvalue())
