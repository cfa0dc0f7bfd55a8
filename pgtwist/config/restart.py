# -*- test-case-name: tests.unit.test_config_validate -*-
"""
The main-section keys a running pgtwist cannot change: listeners, logging
and worker processes are set up once at start. A reload reports them, the
console's C{SET} refuses them, C{SHOW CONFIG} marks them.
"""

from __future__ import annotations

from pgtwist.config.model import Configuration

__all__ = ["RESTART_KEYS", "UPGRADE_CANNOT", "restartNotice", "restartRequired"]

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


#: The restart-only keys (as in the file) an upgrade cannot apply either:
#: where pgtwist listens (the new process adopts the running one's sockets
#: and refuses other addresses) and C{workers}. An upgrade
#: (C{pgtwist-cli upgrade}) applies the others.
UPGRADE_CANNOT = frozenset({"host", "port", "unix_socket_dir", "listen", "management", "workers"})


def restartNotice(keys: list[str]) -> str:
    """
    What a reload says of the changed restart-only C{keys}: which need a
    restart, and which an upgrade applies.
    """
    restart = [key for key in keys if key in UPGRADE_CANNOT]
    upgrade = [key for key in keys if key not in UPGRADE_CANNOT]
    parts = []
    if restart:
        parts.append(f"changes to {', '.join(restart)} take effect after a restart")
    if upgrade:
        parts.append(
            f"changes to {', '.join(upgrade)} take effect after an upgrade "
            "(pgtwist-cli upgrade) or a restart"
        )
    return "; ".join(parts)
