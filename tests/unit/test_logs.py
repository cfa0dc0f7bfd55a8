"""
Tests for L{pgtwist.logs}: pgagroal's logging keys become an observer.
"""

from __future__ import annotations

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from pgtwist import logs
from pgtwist.config.model import MainSettings
from tests.unit._tempdir import temporaryDirectory


class LogsTests(SynchronousTestCase):
    """
    Levels and file output.
    """

    def test_levels(self) -> None:
        """
        pgagroal's levels map onto twisted.logger's.
        """
        self.assertEqual(logs.logLevel("FATAL"), LogLevel.critical)
        self.assertEqual(logs.logLevel("warn"), LogLevel.warn)
        self.assertEqual(logs.logLevel("info"), LogLevel.info)
        self.assertEqual(logs.logLevel("debug3"), LogLevel.debug)
        self.assertEqual(logs.logLevel("trace"), LogLevel.debug)

    def test_fileFiltered(self) -> None:
        """
        C{log_type = file} writes to C{log_path}, dropping events below C{log_level}.
        """
        path = temporaryDirectory(self) / "log"
        observer = logs.observerFor(
            MainSettings(logType="file", logPath=str(path), logLevel="warn")
        )
        base = {"log_time": 0.0, "log_namespace": "t", "log_system": "-"}
        observer({**base, "log_level": LogLevel.info, "log_format": "quiet"})
        observer({**base, "log_level": LogLevel.warn, "log_format": "loud {x}", "x": 1})
        text = path.read_text()
        self.assertIn("loud 1", text)
        self.assertNotIn("quiet", text)

    def test_configuredObserver(self) -> None:
        """
        twistd's C{--logger} factory uses the configured settings.
        """
        path = temporaryDirectory(self) / "log"
        self.patch(logs, "_configured", MainSettings(logType="file", logPath=str(path)))
        observer = logs.makeObserver()
        observer(
            {
                "log_time": 0.0,
                "log_namespace": "t",
                "log_system": "-",
                "log_level": LogLevel.info,
                "log_format": "hello",
            }
        )
        self.assertIn("hello", path.read_text())
