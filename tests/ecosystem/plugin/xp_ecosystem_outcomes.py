"""The ecosystem check's reporting plugin: each test's outcome, by node id, into a JSON file.

``run_ecosystem.py`` loads it into every run of a third-party suite with ``-p
xp_ecosystem_outcomes`` (this folder on ``PYTHONPATH``, nothing else in it) and names the file
in ``XP_ECOSYSTEM_OUTCOMES``. Without that variable it does nothing. It only reads reports, so
it changes nothing about the session it watches, and it works with and without pytest-experiments.

An outcome is one string per node id, the same on both sides when the test behaved the same:
``passed``, ``failed``, ``skipped``, ``xfailed``, ``xpassed``, ``error`` (setup raised), plus
``+teardown error`` when teardown raised and ``[subtests: ...]`` counts for tests with subtests;
a collector that failed or was skipped is ``collection error`` / ``collection skipped``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

ENV = "XP_ECOSYSTEM_OUTCOMES"

# pytest >= 9 reports each subtest separately (unittest's subTest included); older pytest has no such type.
_SUBTEST_REPORT: type | None = getattr(pytest, "SubtestReport", None)


def _phase_outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return report.outcome


def _final(phases: dict[str, str]) -> str:
    setup = phases.get("setup", "not set up")
    if setup == "failed":
        outcome = "error"
    elif setup != "passed":
        outcome = setup  # skipped or xfailed before the body, or never set up (interrupted)
    else:
        outcome = phases.get("call", "no call")
    if phases.get("teardown") == "failed":
        outcome += "+teardown error"
    return outcome


class Outcomes:
    """Collects the reports of one session and writes them at its end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.phases: dict[str, dict[str, str]] = {}
        self.subtests: dict[str, Counter[str]] = {}
        self.collectors: dict[str, str] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the outcome of each phase; subtests are counted by outcome instead."""
        if _SUBTEST_REPORT is not None and isinstance(report, _SUBTEST_REPORT):
            self.subtests.setdefault(report.nodeid, Counter())[_phase_outcome(report)] += 1
            return
        phases = self.phases.setdefault(report.nodeid, {})
        if report.when == "call" and phases.get("call") == "failed":
            return  # a later report of the same phase (a rerun plugin) does not hide a failure
        phases[report.when] = _phase_outcome(report)

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A collector that failed or was skipped yields no items: record it by its own node id."""
        if report.failed:
            self.collectors[report.nodeid] = "collection error"
        elif report.skipped:
            self.collectors[report.nodeid] = "collection skipped"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the outcomes, the exit status, the rootdir and whether pytest-experiments was active."""
        outcomes = dict(self.collectors)
        for nodeid, phases in self.phases.items():
            outcomes[nodeid] = _final(phases)
        for nodeid, counts in self.subtests.items():
            summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
            outcomes[nodeid] = f"{outcomes.get(nodeid, 'no report')} [subtests: {summary}]"
        data = {
            "exitstatus": int(exitstatus),
            "rootdir": str(session.config.rootpath),
            "experiments_plugin": session.config.pluginmanager.has_plugin("experiments"),
            "outcomes": outcomes,
        }
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(data, indent=0, sort_keys=True))
        os.replace(partial, self.path)


def pytest_configure(config: pytest.Config) -> None:
    """Register the collector on the controller only: xdist workers' reports reach it anyway."""
    target = os.environ.get(ENV)
    if target and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Outcomes(Path(target)), "xp-ecosystem-outcomes-collector")
