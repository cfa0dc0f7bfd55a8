"""
Settings shared by the whole suite: the Hypothesis profiles of the property
tests (C{tests/unit/test_property_*.py}).

C{ci}, the default, is derandomized: every run tries the same examples, so a
run that passes once passes again, and a failure is the same failure on every
machine (printed shrunk, with the C{@reproduce_failure} blob). C{explore}
(C{HYPOTHESIS_PROFILE=explore}) draws fresh random examples, many more of
them, and keeps failures in Hypothesis's example database: the way to look
for new bugs, whose shrunk examples then become regression tests.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    deadline=None,
    max_examples=2000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
