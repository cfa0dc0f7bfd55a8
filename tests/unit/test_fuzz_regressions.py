"""
The fuzz targets (L{tests.fuzz.targets}) in the unit tests: every input in
C{tests/fuzz_regressions/} (the seeds of C{make fuzz}, and each input it
ever found to fail) is replayed, and Hypothesis feeds each target random
and mutated inputs: the same properties, without atheris (which PyPy and
some platforms lack), and without its coverage guidance.
"""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz.targets import TARGETS

REGRESSIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fuzz_regressions")


def corpus(target: str) -> list[tuple[str, bytes]]:
    """
    The regression inputs of C{target}: (file name, bytes), sorted.
    """
    directory = os.path.join(REGRESSIONS, target)
    inputs = []
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            inputs.append((name, f.read()))
    return inputs


def replay(target: str, name: str, data: bytes) -> None:
    """
    Run one regression input through its target; a failure names the file.
    """
    try:
        TARGETS[target](data)
    except Exception as e:
        raise AssertionError(f"tests/fuzz_regressions/{target}/{name}: {e!r}") from e


def _mutated(target: str) -> st.SearchStrategy[bytes]:
    """
    A regression input with a few bytes overwritten, inserted or cut.
    """

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from([data for _, data in corpus(target)])))
        for _ in range(draw(st.integers(0, 4))):
            where = draw(st.integers(0, len(data)))
            how = draw(st.sampled_from(["set", "insert", "cut"]))
            if how == "set" and where < len(data):
                data[where] = draw(st.integers(0, 255))
            elif how == "insert":
                data[where:where] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[where : where + draw(st.integers(1, 8))]
        return bytes(data)

    return mutate()


class FuzzRegressionTests(SynchronousTestCase):
    """
    Every input the fuzzers were seeded with or found failing passes.
    """

    def test_corpora(self) -> None:
        """
        Each target has a directory of regression inputs, and no other
        directory is there.
        """
        directories = {
            name
            for name in os.listdir(REGRESSIONS)
            if os.path.isdir(os.path.join(REGRESSIONS, name))
        }
        self.assertEqual(directories, set(TARGETS))
        for target in TARGETS:
            self.assertTrue(corpus(target), target)

    def test_startup(self) -> None:
        """
        The C{startup} target's regression inputs pass.
        """
        for name, data in corpus("startup"):
            replay("startup", name, data)

    def test_codec(self) -> None:
        """
        The C{codec} target's regression inputs pass.
        """
        for name, data in corpus("codec"):
            replay("codec", name, data)

    @given(st.one_of(st.binary(max_size=200), _mutated("startup")))
    def test_startupHypothesis(self, data: bytes) -> None:
        """
        The C{startup} target passes for random and mutated inputs.
        """
        TARGETS["startup"](data)

    @given(st.one_of(st.binary(max_size=200), _mutated("codec")))
    def test_codecHypothesis(self, data: bytes) -> None:
        """
        The C{codec} target passes for random and mutated inputs.
        """
        TARGETS["codec"](data)
