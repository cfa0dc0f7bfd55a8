# -*- test-case-name: tests.unit.test_config_validate -*-
"""
The main-section keys a running pgtwist cannot change: listeners, logging
and worker processes are set up once at start. A reload reports them, the
console's C{SET} refuses them, C{SHOW CONFIG} marks them.
"""

from __future__ import annotations

from pgtwist.config.model import Configuration

__all__ = ["RESTART_KEYS", "restartRequired"]

#: L{pgtwist.config.model.MainSettings} field -> key as in the file.
RESTART_KEYS = {
    "host": "host",
    "port": "port",
    "unixSocketDir": "unix_socket_dir",
    "listen": "listen",
    "backlog": "backlog",
    "logType": "log_type",
    "logLevel": "log_level",
    "logPath": "log_path",
    "logFileMode": "log_file_mode",
    "logRotationSize": "log_rotation_size",
    "logRotationAge": "log_rotation_age",
    "logFormat": "log_format",
    "metrics": "metrics",
    "management": "management",
    "manhole": "manhole",
    "manholeKeysDir": "manhole_keys_dir",
    "workers": "workers",
    "statsPeriod": "stats_period",
}


def restartRequired(old: Configuration, new: Configuration) -> list[str]:
    """
    The changed main-section keys that only take effect after a restart.
    """
    return [
        key
        for field, key in RESTART_KEYS.items()
        if getattr(old.main, field) != getattr(new.main, field)
    ]
