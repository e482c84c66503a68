"""The third-party test suites the ecosystem check runs (``tests/ecosystem/run_ecosystem.py``).

Each suite's tests come from its released sdist on PyPI (sdists ship their tests); its code is
the same release, installed from PyPI into a venv of the suite's own with its test dependencies,
``BASE``, ``BUILD`` and this project's dependencies. Everything is pinned, so a run today and a
run next month test the same things.

To add a suite: append a ``Suite`` below, run ``python tests/ecosystem/run_ecosystem.py --suite
NAME`` and check that its reference side mostly passes with the pytest of ``BASE`` (a failure
there is the suite's business, as long as the plugin side fails alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The pytest the suites are pinned against, and the plugins this project depends on: pluggy
# and pytest-xdist are suites below too, so the releases whose tests run are the ones installed.
BASE = ("pytest==9.2.0", "pluggy==1.7.0", "pytest-xdist==3.8.0", "execnet==2.1.2")
# This project's build backend: the check builds the plugin from the working tree without the network.
BUILD = ("hatchling==1.33.0",)


@dataclass(frozen=True)
class Suite:
    """One third-party suite: which release, what to run, what it needs."""

    name: str  # its distribution name on PyPI
    version: str  # the release: its sdist's tests and its installed code
    paths: tuple[str, ...]  # what pytest runs, relative to the sdist's root (its rootdir)
    options: tuple[str, ...] = ()  # further pytest options, also used when differences are re-checked
    deps: tuple[str, ...] = ()  # its test dependencies, pinned
    # node id -> why: deselected on both sides. Only for the suite's own flakiness or for tests
    # that cannot work here (no network, root, ...), never for a difference the plugin causes.
    known_flaky: Mapping[str, str] = field(default_factory=dict)
    default: bool = True  # run when no --suite is given (all of them stay under ten minutes)
    timeout: float = 600.0  # seconds for one side: a bound for a hung suite (pytest-xdist takes 2-7 min here)

    @property
    def requirement(self) -> str:
        """The pinned requirement of the release itself."""
        return f"{self.name}=={self.version}"


SUITES: tuple[Suite, ...] = (
    Suite(name="pluggy", version="1.7.0", paths=("testing",)),
    # unittest TestCases with about 21,000 subTests (pytest 9 reports each as a subtest).
    Suite(name="more-itertools", version="11.2.1", paths=("tests",)),
    # Runs real pytest sessions with -n through pytester and execnet: the plugin in controllers
    # and workers, crashed workers, SIGTERM (test_dist_tests_with_crash).
    Suite(
        name="pytest-xdist",
        version="3.8.0",
        paths=("testing",),
        deps=("filelock==4.3.1",),
        known_flaky={
            # Both assert which of two workers ran the first items: under load either can, and both
            # changed outcome from one run to the next here, on either side.
            "testing/acceptance_test.py::TestLoadScope::test_workqueue_ordered_by_size": "worker order under load",
            "testing/acceptance_test.py::TestLoadScope::test_workqueue_ordered_by_input": "worker order under load",
        },
    ),
    # Its array-namespace fixture is named `xp`, as is the plugin's run handle. Backends that are
    # not installed (jax, torch, dask, sparse, cupy) are skipped by the suite itself.
    Suite(
        name="array-api-extra",
        version="0.11.5",
        paths=("tests/main",),
        deps=(
            "array-api-compat==1.16.0",
            "array-api-strict==2.6.1",
            "hypothesis==6.170.17",
            "typing-extensions==4.16.0",
        ),
    ),
    # Not run by default, to keep the check under ten minutes: --suite attrs / --suite packaging.
    Suite(
        name="attrs",
        version="26.1.0",
        paths=("tests",),
        deps=("hypothesis==6.170.17", "pympler==1.1", "cloudpickle==3.1.3"),
        default=False,
    ),
    Suite(
        name="packaging",
        version="26.4",
        paths=("tests",),
        deps=("pretend==1.0.9", "tomli-w==1.2.0", "hypothesis==6.170.17"),
        default=False,
    ),
)
