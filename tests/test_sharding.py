"""``--xp-shard K/N`` and ``--xp-shard auto``: N sessions split one grid exactly, against real stores."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import pytest
from processes import history

from pytest_experiments.plugin.sharding import Shard, from_slurm, shard_of, shard_option

pytestmark = pytest.mark.usefixtures("clean_env")

GRID = """
    import pytest

    @pytest.mark.grid(lr=[0.1, 0.01, 0.001], depth=list(range(8)))
    def test_fit(xp, lr, depth):
        xp.log_metric("score", lr * depth)

    @pytest.mark.parametrize("name", ["a", "b", "c", "d", "e"])
    def test_plain(name):
        pass
"""
POINTS = 24
PLAIN = 5


def grid_points(pytester: pytest.Pytester) -> Counter[tuple[str, str]]:
    """How many runs each grid point (experiment, parameter hash) has in the store."""
    return Counter((run.experiment, run.param_hash) for run in history(pytester))


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shard"), [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" auto ", "auto")])
def test_shard_option_reads_k_of_n_and_auto(text: str, shard: object) -> None:
    assert shard_option(text) == shard


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1/0", "1", "a/b", "1/2/3", ""])
def test_shard_option_refuses_what_is_not_a_shard(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="0 <= K < N"):
        shard_option(text)


@pytest.mark.parametrize(
    ("environ", "shard"),
    [
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, Shard(2, 4)),
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, Shard(3, 4)),
        (
            {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
             "SLURM_ARRAY_TASK_MAX": "9", "SLURM_ARRAY_TASK_STEP": "3"},
            Shard(2, 4),
        ),
    ],
    ids=["from-0", "from-1", "stepped"],
)  # fmt: skip
def test_auto_takes_the_task_position_in_the_array(environ: dict[str, str], shard: Shard) -> None:
    assert from_slurm(environ) == shard


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN not set"),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "x", "SLURM_ARRAY_TASK_MIN": "0"}, "not numbers"),
        (
            {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
             "SLURM_ARRAY_TASK_MAX": "5"},
            "not one of evenly spaced ids",
        ),
    ],
    ids=["not-an-array", "garbage", "list-with-gaps"],
)  # fmt: skip
def test_auto_refuses_what_it_cannot_map(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(pytest.UsageError, match=problem) as raised:
        from_slurm(environ)
    assert "sbatch --array=0-(N-1), or give --xp-shard K/N" in str(raised.value)


def test_shards_are_a_stable_partition() -> None:
    keys = [("test_m.py", "test_fit", f"{index:064x}") for index in range(2000)]
    sizes = Counter(shard_of(key, 4) for key in keys)
    assert set(sizes) == {0, 1, 2, 3}
    assert all(400 <= size <= 600 for size in sizes.values()), sizes
    # A known value: the partition must never change between versions (resumed shards rely on it).
    assert [shard_of(key, 4) for key in keys[:8]] == [1, 2, 3, 3, 2, 0, 2, 3]


# -- sessions ---------------------------------------------------------------------------------


def test_n_shards_run_the_grid_exactly_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sweep=GRID)
    plain_passed = 0
    for index in range(3):
        args = [f"--xp-shard={index}/3", "-p", "no:randomly"]
        # One shard under xdist: its workers must all deselect the same items (xdist aborts otherwise).
        run = pytester.runpytest_subprocess(*args, "-n", "2") if index == 1 else pytester.runpytest(*args)
        assert run.ret == 0, run.stdout.str()
        plain_passed += run.parseoutcomes().get("passed", 0)
    points = grid_points(pytester)
    assert len(points) == POINTS  # the union is the whole grid
    assert set(points.values()) == {1}  # and no point ran twice
    assert plain_passed == POINTS + PLAIN  # plain tests are split too, each run once


def test_a_shard_composes_with_resume(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sweep=GRID)
    first = pytester.runpytest("--xp-shard=0/2", "-k", "fit")
    first.assert_outcomes(passed=len(grid_points(pytester)), deselected=POINTS + PLAIN - len(grid_points(pytester)))
    done = set(grid_points(pytester))
    again = pytester.runpytest("--xp-shard=0/2", "--xp-resume", "-k", "fit")
    assert again.ret == 0  # nothing left in this shard is success
    assert "passed" not in again.parseoutcomes()
    other = pytester.runpytest_subprocess("--xp-shard=1/2", "--xp-resume", "-k", "fit", "-n", "2")
    assert other.ret == 0, other.stdout.str()
    points = grid_points(pytester)
    assert len(points) == POINTS
    assert set(points.values()) == {1}
    assert len(set(points) - done) == other.parseoutcomes()["passed"]


def test_auto_reads_the_slurm_array_variables(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_sweep=GRID)
    explicit = pytester.runpytest("--xp-shard=2/3", "-k", "fit", "--co", "-q")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    auto = pytester.runpytest("--xp-shard=auto", "-k", "fit", "--co", "-q")
    chosen = [line for line in explicit.outlines if "::" in line]
    assert chosen
    assert [line for line in auto.outlines if "::" in line] == chosen


def test_auto_outside_an_array_is_a_usage_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    pytester.makepyfile(test_sweep=GRID)
    result = pytester.runpytest("--xp-shard=auto")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: xp: --xp-shard auto: SLURM_ARRAY_TASK_ID*not set*give --xp-shard K/N"])
    assert not (pytester.path / ".experiments").exists()


def test_a_malformed_shard_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sweep=GRID)
    result = pytester.runpytest("--xp-shard=3/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--xp-shard: '3/3' is not a shard: write K/N with 0 <= K < N*"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_an_empty_shard_succeeds(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.grid(a=[1])\ndef test_g(xp, a):\n    pass\n")
    codes = [pytester.runpytest_subprocess(f"--xp-shard={index}/4", *workers).ret for index in range(4)]
    assert codes == [0, 0, 0, 0]
    assert len(history(pytester)) == 1


def test_shards_hold_in_sessions_after_the_plugin_modules_were_dropped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytester's in-process sessions drop the modules each one imported, leaving them as attributes
    # of their package: a lazy import must load the module again, not take the dropped one (whose
    # Shard is another class than the one the settings check for, and the shard was ignored).
    import pytest_experiments.plugin.option_values
    import pytest_experiments.plugin.sharding  # noqa: F401

    for name in ("pytest_experiments.plugin.option_values", "pytest_experiments.plugin.sharding"):
        monkeypatch.delitem(sys.modules, name)
    pytester.makepyfile(test_grid=GRID)

    result = pytester.runpytest("--xp-shard=0/2", f"--xp-store={pytester.path / 'store'}", "-p", "no:randomly")

    ran = result.parseoutcomes()["passed"]
    assert 0 < ran < POINTS + PLAIN, result.stdout.str()
