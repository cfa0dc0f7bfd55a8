# -*- test-case-name: tests.unit.test_access -*-
"""
Which databases accept new clients: the console's and C{pgtwist-cli}'s
ENABLE and DISABLE, checked by the frontend when a client logs in.
"""

from __future__ import annotations


class DatabaseAccess:
    """
    The databases refused to new clients. Connected clients are not
    affected.

    @ivar disabled: Databases refused (C{"*"}: all but those in C{enabled}).
    @ivar enabled: Databases enabled again after C{"*"} was disabled.
    """

    def __init__(self) -> None:
        self.disabled: set[str] = set()
        self.enabled: set[str] = set()

    def disable(self, database: str = "*") -> None:
        """
        Refuse new clients of C{database} (C{"*"}: all).
        """
        if database == "*":
            self.enabled.clear()
        else:
            self.enabled.discard(database)
        self.disabled.add(database)

    def enable(self, database: str = "*") -> None:
        """
        Accept new clients of C{database} (C{"*"}: all) again.
        """
        if database == "*":
            self.disabled.clear()
            self.enabled.clear()
        else:
            self.disabled.discard(database)
            if "*" in self.disabled:
                self.enabled.add(database)

    def isEnabled(self, database: str) -> bool:
        """
        Whether new clients of C{database} are accepted.
        """
        if database in self.disabled:
            return False
        return "*" not in self.disabled or database in self.enabled
