"""With ``xp_gc_freeze = true``, while experiments run, what collection built is frozen out of the
garbage collector's full passes, and unfrozen as the session ends; off by default; a freeze made
by someone else is theirs, and a session without experiments is left alone."""

from __future__ import annotations

import gc
import re

import pytest

# Each test reports what the collector holds frozen while it runs, in its result and on stdout.
EXPERIMENT = """
import gc
import pytest

@pytest.mark.experiment
@pytest.mark.parametrize("point", [1, 2])
def test_exp(point):
    print("frozen:", gc.get_freeze_count())
    return {"frozen": gc.get_freeze_count()}
"""
FREEZE_INI = "[pytest]\nxp_gc_freeze = true\n"
PLAIN = """
import gc

def test_plain():
    print("frozen:", gc.get_freeze_count())
"""


def frozen_counts(result: pytest.RunResult) -> list[int]:
    return [int(count) for count in re.findall(r"frozen: (\d+)", result.stdout.str())]


@pytest.fixture(autouse=True)
def _nothing_frozen_around() -> object:
    assert gc.get_freeze_count() == 0  # this process freezes nothing of its own
    yield
    gc.unfreeze()  # whatever a failing test left


@pytest.mark.parametrize("store_given", [False, True], ids=["activated-by-collection", "store-option"])
def test_experiments_run_frozen_and_the_session_unfreezes(pytester: pytest.Pytester, store_given: bool) -> None:
    pytester.makeini(FREEZE_INI)
    pytester.makepyfile(EXPERIMENT)
    args = ["-s", f"--xp-store={pytester.path / 'store'}"] if store_given else ["-s"]
    result = pytester.runpytest(*args)  # in this process: the freeze is this process's
    result.assert_outcomes(passed=2)
    counts = frozen_counts(result)
    assert len(counts) == 2
    assert all(count > 100 for count in counts)  # the collected tree, modules and all
    assert gc.get_freeze_count() == 0


def test_xdist_workers_run_frozen(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(EXPERIMENT)
    result = pytester.runpytest_subprocess("-n", "2", "-s", "-p", "no:randomly", "-o", "xp_gc_freeze=true")
    result.assert_outcomes(passed=2)
    from pytest_experiments import load

    frame = load(pytester.path / ".experiments")
    assert len(frame) == 2
    assert (frame["metrics.frozen"] > 100).all()


def test_off_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(EXPERIMENT)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=2)
    assert frozen_counts(result) == [0, 0]
    result.stdout.fnmatch_lines(["xp: 2 runs recorded*"])


def test_a_session_without_experiments_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makeini(FREEZE_INI)  # set, it asks for no store
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    assert frozen_counts(result) == [0]
    assert not (pytester.path / ".experiments").exists()


def test_a_freeze_made_first_is_left_to_whoever_made_it(pytester: pytest.Pytester) -> None:
    pytester.makeini(FREEZE_INI)
    pytester.makeconftest(
        """
        import gc

        def pytest_configure(config):
            gc.freeze()
        """
    )
    pytester.makepyfile(EXPERIMENT)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=2)
    assert all(count > 0 for count in frozen_counts(result))
    assert gc.get_freeze_count() > 0  # the conftest's, still: not ours to undo
