"""
How many examples a property test tries, by Hypothesis profile (see
C{tests/conftest.py}).
"""

from __future__ import annotations

from hypothesis import settings


def examples(ci: int) -> int:
    """
    C{ci} examples under the default C{ci} profile (a budget the test
    chose to keep the suite fast), the profile's own number under any
    other (C{explore} tries many more).
    """
    if settings.get_current_profile_name() == "ci":
        return ci
    return settings.default.max_examples
