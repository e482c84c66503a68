"""``--xp-baseline``: compare every run with a committed baseline while the session runs.

In the process that runs an experiment, its metrics are compared with the baseline
entry of the same node id right after the test body returns, so a regression beyond
tolerance fails that very test (and is recorded as ``failed``). The verdicts travel to
the controller in the report's ``user_properties`` (builtin types: a JSON string), where
groups of seeds are judged at the end (``over=``), the summary is printed, and the
markdown report and a new baseline are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_experiments.compare import (
    IMPROVED,
    NEW,
    REGRESSED,
    BaselineError,
    Entry,
    MetricVerdict,
    Rule,
    RuleError,
    compare_groups,
    compare_run,
    markdown_report,
    parse_marker_rules,
    parse_rule,
    read_baseline,
    require_scipy,
    write_baseline,
)
from pytest_experiments.identity import grid_point
from pytest_experiments.options import ComparisonOptions
from pytest_experiments.recorder import RUN_KEY

_PROPERTY = "xp_compare"
_USAGE_ERROR = "xp_usage_error"


class RunComparison:
    """Worker side: judges each run as its body returns (registered with --xp-baseline)."""

    def __init__(self, options: ComparisonOptions) -> None:
        self._options = options
        self._baseline: dict[str, Entry] | None = None
        self._marker_rules: dict[object, dict[str, Rule]] = {}
        if options.baseline is not None:
            try:
                self._baseline = read_baseline(options.baseline)
                if any(rule.over for rule in options.rules.values()):
                    require_scipy()  # missing: say so now, not after the whole sweep ran
            except (BaselineError, RuleError) as exc:
                raise pytest.UsageError(f"xp: {exc}") from None

    def _rules(self, item: pytest.Function) -> dict[str, Rule]:
        """The session's rules, overridden per metric by the experiment mark's ``compare=``."""
        key = (item.parent, item.originalname)
        if key not in self._marker_rules:
            mark = item.get_closest_marker("experiment")
            compare = mark.kwargs.get("compare") if mark is not None else None
            try:
                marked = parse_marker_rules(compare, item.originalname) if compare is not None else {}
                if self._baseline is not None and any(rule.over for rule in marked.values()):
                    require_scipy()
            except RuleError as exc:
                raise pytest.UsageError(f"xp: {exc}") from None
            marked = {metric: rule.with_over(self._options.over) for metric, rule in marked.items()}
            self._marker_rules[key] = {**self._options.rules, **marked}
        return self._marker_rules[key]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        # A bad compare= is a usage error before anything runs, not a failure of every run after its body.
        try:
            for item in items:
                if isinstance(item, pytest.Function) and item.get_closest_marker("experiment") is not None:
                    self._rules(item)
        except pytest.UsageError as exc:
            workeroutput = getattr(config, "workeroutput", None)
            if workeroutput is None:
                raise
            # A usage error raised in an xdist worker is an internal error: the controller raises it.
            workeroutput[_USAGE_ERROR] = str(exc)
            items.clear()

    @pytest.hookimpl(wrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Any:
        outcome = yield
        run = pyfuncitem.stash.get(RUN_KEY, None)
        if run is None:
            return outcome
        point = grid_point(pyfuncitem)
        entry = Entry(
            pyfuncitem.nodeid, point.module, point.experiment, point.param_hash, point.stored_params, dict(run.metrics)
        )
        rules = self._rules(pyfuncitem)
        verdicts = [] if self._baseline is None else compare_run(entry, self._baseline.get(entry.node_id), rules)
        grouped = sorted(rule.describe() for rule in rules.values() if rule.over)
        payload = {"entry": entry.__dict__, "verdicts": [v.to_json() for v in verdicts], "grouped_rules": grouped}
        pyfuncitem.user_properties.append((_PROPERTY, json.dumps(payload)))
        regressions = [verdict.message() for verdict in verdicts if verdict.verdict == REGRESSED]
        if regressions:
            pytest.fail("xp: worse than the baseline: " + "; ".join(regressions), pytrace=False)
        return outcome


class ComparisonReport:
    """Controller side: group verdicts, terminal summary, markdown report, new baseline."""

    def __init__(self, options: ComparisonOptions, session_id: str, store_path: Path) -> None:
        self._options = options
        self._session_id = session_id
        self._store_path = store_path
        self.verdicts: list[MetricVerdict] = []
        self._entries: list[Entry] = []
        self._grouped_rules: dict[str, Rule] = {}
        self._saved: str | None = None

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == _PROPERTY:
                payload = json.loads(str(value))
                self._entries.append(Entry(**payload["entry"]))
                self.verdicts.extend(MetricVerdict.from_json(item) for item in payload["verdicts"])
                for text in payload["grouped_rules"]:
                    rule = parse_rule(text)
                    self._grouped_rules[rule.metric] = rule

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        message = getattr(node, "workeroutput", {}).get(_USAGE_ERROR)
        if message:
            raise pytest.UsageError(message)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.USAGE_ERROR:  # nothing ran: no report, no baseline, no summary
            self._options = ComparisonOptions()
            return
        if self._options.baseline is not None and self._grouped_rules:
            baseline = read_baseline(self._options.baseline)
            group_verdicts = compare_groups(
                self._entries, list(baseline.values()), self._grouped_rules, self._options.alpha
            )
            self.verdicts.extend(group_verdicts)
            # Groups are judged once all their runs are in: no single test to fail, so the session does.
            if any(v.verdict == REGRESSED for v in group_verdicts) and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self._options.report_md is not None:
            self._options.report_md.parent.mkdir(parents=True, exist_ok=True)
            self._options.report_md.write_text(markdown_report(self.verdicts), encoding="utf-8")
        if self._options.save_baseline is not None:
            self._saved = self._save_baseline(self._options.save_baseline)

    def _save_baseline(self, path: Path) -> str:
        from pytest_experiments.sqlite_store import DB_NAME
        from pytest_experiments.store import Store

        if not (self._store_path / DB_NAME).exists():
            return f"xp: no baseline written to {path}: this session recorded no run"
        with Store.open(self._store_path) as store:
            runs = store.runs(session_id=self._session_id, status="passed")
        count = write_baseline(path, (Entry.of_run(run) for run in runs))
        return f"xp: baseline of {count} passed runs written to {path}"

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._options.baseline is not None:
            for title, kind in (("regressions", REGRESSED), ("improvements", IMPROVED)):
                found = sorted((v for v in self.verdicts if v.verdict == kind), key=lambda v: (v.label, v.metric))
                if found:
                    terminalreporter.write_sep("-", f"xp: {title} against {self._options.baseline.name}")
                    for verdict in found:
                        terminalreporter.write_line(f"{verdict.label}: {verdict.message()}")
            new = sorted({v.label for v in self.verdicts if v.verdict == NEW})
            judged = sum(1 for v in self.verdicts if v.verdict != NEW)
            regressed = sum(1 for v in self.verdicts if v.verdict == REGRESSED)
            improved = sum(1 for v in self.verdicts if v.verdict == IMPROVED)
            terminalreporter.write_line(
                f"xp: compared with {self._options.baseline}: {regressed} regressed, {improved} improved, "
                f"{judged - regressed - improved} within tolerance or unjudged, {len(new)} new (not in the baseline)"
            )
            for label in new[:20]:
                terminalreporter.write_line(f"  new: {label}")
            if len(new) > 20:
                terminalreporter.write_line(f"  ... and {len(new) - 20} more new")
        if self._options.report_md is not None:
            terminalreporter.write_line(f"xp: comparison report written to {self._options.report_md}")
        if self._saved:
            terminalreporter.write_line(self._saved)
