"""``--xp-shard K/N``: run one of N disjoint parts of the selected grid, for schedulers that
give each job an index (a SLURM array task, a CI matrix entry).

A grid point's shard is a pure function of its identity, the key resume looks it up by
(module, experiment function, parameter hash): never of node ids, positions or of which
other points are collected. So every process computes the same partition on its own (each
xdist worker deselects exactly what the others do), the shards of one grid never overlap and
always cover it, and a shard resumed later with ``--xp-resume`` (fewer points left to run)
still takes exactly its own points. The price is a balance by chance: a grid of P points
gives each shard about P/N of them, within a few times sqrt(P/N).

Tests that are not experiments have no grid point; each runs in one shard too, chosen by its
node id, so N shards together run a suite once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

#: SLURM's job array variables that ``--xp-shard auto`` reads.
ARRAY_ID, ARRAY_COUNT, ARRAY_MIN = "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"
ARRAY_MAX, ARRAY_STEP = "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP"
AUTO = "auto"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: tuple[str, ...]) -> bool:
        """Whether the grid point (or test) identified by ``key`` belongs to this shard."""
        return shard_of(key, self.count) == self.index


def shard_of(key: tuple[str, ...], count: int) -> int:
    """The shard (0 to ``count - 1``) of ``key``: a stable hash, the same in every process and
    Python version (the builtin ``hash`` of a string changes with each interpreter)."""
    digest = hashlib.sha256("\0".join(key).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


def shard_option(text: str) -> Shard | str:
    """Parse ``--xp-shard``: ``K/N`` with 0 <= K < N, or ``auto`` (resolved at configure time)."""
    if text.strip().lower() == AUTO:
        return AUTO
    index_text, slash, count_text = text.partition("/")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        index, count = -1, 0
    if not slash or count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shard: write K/N with 0 <= K < N (0-based, e.g. 0/4 ... 3/4), or auto"
        )
    return Shard(index, count)


def from_slurm(environ: Mapping[str, str]) -> Shard:
    """The shard of this SLURM array task: its position among the array's task ids.

    ``--array=0-3`` and ``--array=1-4`` give shards 0/4 to 3/4; a stepped array
    (``--array=0-9:3``) counts its tasks 0, 1, 2...; a list with gaps (``--array=1,4,5``) has
    no such position and is refused. Raises ``pytest.UsageError`` saying what to do.
    """
    fix = "submit with sbatch --array=0-(N-1), or give --xp-shard K/N"
    names = (ARRAY_ID, ARRAY_COUNT, ARRAY_MIN)
    missing = [name for name in names if not environ.get(name, "").strip()]
    if missing:
        raise pytest.UsageError(f"xp: --xp-shard auto: {', '.join(missing)} not set (not a SLURM array task); {fix}")
    try:
        task, count, first = (int(environ[name]) for name in names)
        step = int(environ.get(ARRAY_STEP, "").strip() or 1)
        last = int(environ.get(ARRAY_MAX, "").strip() or first + (count - 1) * step)
    except ValueError:
        shown = ", ".join(f"{name}={environ.get(name, '')!r}" for name in names)
        raise pytest.UsageError(
            f"xp: --xp-shard auto: SLURM array variables are not numbers ({shown}); {fix}"
        ) from None
    regular = count >= 1 and step >= 1 and last == first + (count - 1) * step
    offset = task - first
    if not regular or offset % step or not 0 <= offset // step < count:
        raise pytest.UsageError(
            f"xp: --xp-shard auto: array task {task} of {count} (ids {first} to {last}, step {step}) is not one "
            f"of evenly spaced ids; {fix}"
        )
    return Shard(offset // step, count)


def resolve(value: Shard | str | None, environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard ``--xp-shard`` asks for (``auto`` read from SLURM's variables), or None."""
    if value == AUTO:
        return from_slurm(os.environ if environ is None else environ)
    return value if isinstance(value, Shard) else None


def item_key(item: pytest.Item) -> tuple[str, ...]:
    """What decides ``item``'s shard: its grid point, or for other tests its node id."""
    # Imported here: --xp-shard loads this module at configuration, before any experiment is known.
    from pytest_experiments.plugin.identity import is_experiment, point_key

    if isinstance(item, pytest.Function) and is_experiment(item):
        return point_key(item)
    return ("test", item.nodeid)


class Sharding:
    """Deselects the items of other shards (in every process: a pure function of each item)."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.kept = 0
        self.deselected = 0

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> object:
        # After every other selection (-k, -m, resume...): which of the survivors run here
        # does not depend on that order, and their reports then count the whole grid.
        result = yield
        kept: list[pytest.Item] = []
        others: list[pytest.Item] = []
        for item in items:
            (kept if self.shard.owns(item_key(item)) else others).append(item)
        self.kept, self.deselected = len(kept), len(others)
        # Under xdist, for the controller, which collects nothing itself (xdist's channel is
        # imported here, not with this module: the plugin imports it in every session).
        import pytest_experiments.plugin.xdist as xdist

        xdist.put_output(config, xdist.SHARD_DESELECTED_KEY, self.deselected)
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = kept
        return result

    @pytest.hookimpl
    def pytest_report_collectionfinish(self, config: pytest.Config) -> str | None:
        import pytest_experiments.plugin.xdist as xdist

        if config.get_verbosity() < -1 or xdist.is_worker(config):
            return None
        return f"xp: shard {self.shard}: {self.kept} tests here, {self.deselected} in other shards"

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        # xdist's controller: what its workers deselected decides its exit status below.
        import pytest_experiments.plugin.xdist as xdist

        deselected = xdist.output_of(node).get(xdist.SHARD_DESELECTED_KEY, 0)
        self.deselected = max(self.deselected, int(deselected))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # A shard left empty (fewer points than shards, or all of its points done) is not an
        # error: array jobs run under ``set -e``, and pytest's "no tests collected" (5) would fail one.
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.deselected:
            session.exitstatus = pytest.ExitCode.OK
