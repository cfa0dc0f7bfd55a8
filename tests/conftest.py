"""
Settings shared by the whole suite: the Hypothesis profiles of the property
tests (C{tests/unit/test_property_*.py}).

C{ci}, the default, is derandomized: every run tries the same examples, so a
run that passes once passes again, and a failure is the same failure on every
machine (printed shrunk, with the C{@reproduce_failure} blob). C{explore}
(C{HYPOTHESIS_PROFILE=explore}) draws fresh random examples, many more of
them, and keeps failures in Hypothesis's example database: the way to look
for new bugs, whose shrunk examples then become regression tests.

Hypothesis also draws, now and then, a constant it found in the source of
the modules imported so far, and which modules those are depends on which
tests run: a derandomized property test would try other examples in the
whole suite than alone, and a failure seen in one would not show in the
other. Under C{ci} that pool stays empty (L{_withoutLocalConstants}), so that
the examples depend on the test alone; C{explore} keeps it.
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


def _withoutLocalConstants() -> None:
    """
    Keep Hypothesis from drawing constants out of the imported modules'
    source (a private part of Hypothesis, hence the care: where it is
    missing there is nothing to keep out).
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - another Hypothesis
        return
    empty = getattr(providers, "_local_constants", None)
    if empty is not None and hasattr(providers, "_get_local_constants"):
        providers._get_local_constants = lambda: empty


profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(profile)
if profile == "ci":
    _withoutLocalConstants()
