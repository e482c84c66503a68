"""``--xp-baseline``: compare every run with a committed baseline while the session runs.

The pytest side only: rules, baseline files and verdicts are :mod:`pytest_experiments.comparison`
(shared with the ``baseline`` / ``compare`` commands of ``cli/compare.py``).

In the process that runs an experiment, its metrics are compared with the baseline
entry of the same node id right after the test body returns, so a regression beyond
tolerance fails that very test (and is recorded as ``failed``). The verdicts travel to
the controller in the report's ``user_properties`` (builtin types: a JSON string), where
groups of seeds are judged at the end (``over=``), baseline entries the session did not
run and rules that judged nothing are listed, the summary is printed, and the markdown
report is written and the baseline saved (merged into the file).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Submodules by their full name: ``from package import module`` would take the copy a finished
# in-process (pytester) session left as the package's attribute, and keep that session alive.
import pytest_experiments.plugin.xdist as xdist
from pytest_experiments.comparison import (
    BaselineError,
    Entry,
    MetricVerdict,
    Rule,
    RuleError,
    compare_groups,
    compare_run,
    markdown_report,
    noise_parameter_problem,
    parse_marker_rules,
    read_baseline,
    require_scipy,
    save_baseline,
    unreported_line,
    unreported_rules,
    unrun_verdicts,
    write_text_atomically,
)
from pytest_experiments.model import IMPROVED, NEW, NOT_RUN, REGRESSED
from pytest_experiments.plugin import ITEM_RUN_KEY
from pytest_experiments.plugin.identity import is_experiment
from pytest_experiments.plugin.settings import ComparisonOptions

_PROPERTY = "xp_compare"


class RunComparison:
    """Worker side: judges each run as its body returns (registered with --xp-baseline)."""

    def __init__(self, options: ComparisonOptions) -> None:
        self._options = options
        self._baseline: dict[str, Entry] | None = None
        self._marker_rules: dict[object, dict[str, Rule]] = {}
        #: Parameter names of every collected experiment (before -k and resume deselect any).
        self._parameters: set[str] = set()
        self._experiments_collected = False
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

    @pytest.hookimpl
    def pytest_itemcollected(self, item: pytest.Item) -> None:
        if isinstance(item, pytest.Function) and is_experiment(item):
            self._experiments_collected = True
            callspec = getattr(item, "callspec", None)
            if callspec is not None:
                self._parameters.update(callspec.params)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        # A bad compare= or over= is a usage error before anything runs, not a failure of every run after its body.
        try:
            rules: set[Rule] = set(self._options.rules.values())
            for item in items:
                if isinstance(item, pytest.Function) and item.get_closest_marker("experiment") is not None:
                    rules.update(self._rules(item).values())
            self._check_noise_parameters(rules)
        except pytest.UsageError as exc:
            # A usage error raised in an xdist worker is an internal error: the controller raises it.
            if not xdist.put_output(config, xdist.USAGE_ERROR_KEY, str(exc)):
                raise
            items.clear()

    def _check_noise_parameters(self, rules: set[Rule]) -> None:
        """``--xp-compare-over`` and every rule's ``over=`` must name a parameter of a collected experiment."""
        if not self._experiments_collected:
            return  # nothing to compare: nothing to check against
        ordered = sorted(rules, key=lambda rule: rule.describe())
        problem = noise_parameter_problem(self._options.over, ordered, self._parameters, "--xp-compare-over")
        if problem is not None:
            raise pytest.UsageError(f"xp: {problem}")

    @pytest.hookimpl(wrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Any:
        outcome = yield
        current = pyfuncitem.stash.get(ITEM_RUN_KEY, None)
        if current is None:
            return outcome
        run = current.run
        entry = Entry(
            pyfuncitem.nodeid, run.module, run.experiment, run.param_hash, run.stored_params, dict(run.metrics)
        )
        rules = self._rules(pyfuncitem)
        verdicts = [] if self._baseline is None else compare_run(entry, self._baseline.get(entry.node_id), rules)
        payload = {
            "entry": entry.__dict__,
            "verdicts": [v.to_json() for v in verdicts],
            "rules": [rule.to_json() for rule in rules.values()],
        }
        pyfuncitem.user_properties.append((_PROPERTY, json.dumps(payload)))
        regressions = [verdict.message() for verdict in verdicts if verdict.verdict == REGRESSED]
        if regressions:
            pytest.fail("xp: worse than the baseline: " + "; ".join(regressions), pytrace=False)
        return outcome


class ComparisonReport:
    """Controller side: group verdicts, terminal summary, markdown report, baseline saving."""

    def __init__(
        self, options: ComparisonOptions, session_id: str, store_path: Path | str, artifacts: Path | None = None
    ) -> None:
        self._options = options
        self._session_id = session_id
        self._store_path = store_path
        #: A server store's artefacts folder, where its journals are too.
        self._artifacts = artifacts
        self.verdicts: list[MetricVerdict] = []
        self._entries: list[Entry] = []
        self._grouped_rules: dict[str, Rule] = {}
        #: Node ids of every test this session ran (any report), to tell baseline entries not run.
        self._ran: set[str] = set()
        #: Rules that applied to some run, and those of them whose metric some run reported.
        self._applied: set[Rule] = set()
        self._reported: set[Rule] = set()
        #: Summary lines of what was written, and of what could not be.
        self._written: list[str] = []
        self._errors: list[str] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._ran.add(report.nodeid)
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == _PROPERTY:
                self._collect(json.loads(str(value)))

    def _collect(self, payload: dict[str, Any]) -> None:
        """Take one run's entry, verdicts and rules from its report."""
        entry = Entry(**payload["entry"])
        self._entries.append(entry)
        self.verdicts.extend(MetricVerdict.from_json(item) for item in payload["verdicts"])
        rules = {Rule.from_json(item) for item in payload["rules"]}
        self._applied |= rules
        self._reported |= rules - set(unreported_rules(rules, [entry]))
        for rule in rules:
            if rule.over:
                self._grouped_rules[rule.metric] = rule

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        message = xdist.output_of(node).get(xdist.USAGE_ERROR_KEY)
        if message:
            raise pytest.UsageError(message)

    @property
    def unreported(self) -> list[Rule]:
        """Rules that judged nothing: no run they applied to reported their metric."""
        return sorted(self._applied - self._reported, key=lambda rule: rule.describe())

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.USAGE_ERROR:  # nothing ran: no report, no baseline, no summary
            self._options = ComparisonOptions()
            return
        baseline, report_md, save_to = self._options.baseline, self._options.report_md, self._options.save_baseline
        if baseline is not None:
            self._judge_session(session, baseline)
        if report_md is not None:
            text = markdown_report(self.verdicts, self.unreported if baseline is not None else ())
            if self._attempt(session, f"comparison report {report_md}", lambda: write_text_atomically(report_md, text)):
                self._written.append(f"xp: comparison report written to {report_md}")
        if save_to is not None:
            self._attempt(session, f"baseline {save_to}", lambda: self._save_baseline(save_to))

    def _judge_session(self, session: pytest.Session, path: Path) -> None:
        """What needs every run: groups of seeds (``over=``) and baseline entries not run."""
        try:
            baseline = read_baseline(path)
        except BaselineError as exc:  # read at start, since removed or damaged
            self._errors.append(f"xp: error: {exc}")
            return
        if self._grouped_rules:
            group_verdicts = compare_groups(
                self._entries, list(baseline.values()), self._grouped_rules, self._options.alpha
            )
            self.verdicts.extend(group_verdicts)
            # Groups are judged once all their runs are in: no single test to fail, so the session does.
            if any(v.verdict == REGRESSED for v in group_verdicts) and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.verdicts.extend(unrun_verdicts(baseline, self._ran))

    def _attempt(self, session: pytest.Session, what: str, write: Callable[[], None]) -> bool:
        """Call ``write``; a failure (the disk filled up meanwhile) is one line and exit status 1."""
        try:
            write()
        except (OSError, BaselineError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._errors.append(f"xp: error: could not write the {what}: {reason}")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return False
        return True

    def _save_baseline(self, path: Path) -> None:
        """Merge this session's passed runs into the baseline at ``path`` (the file's other entries stay)."""
        from pytest_experiments.store import Store, store_exists

        runs = []
        if store_exists(self._store_path):
            with Store.open(self._store_path, artifacts=self._artifacts) as store:
                runs = store.runs(session_id=self._session_id, status="passed")
        if not runs:
            self._written.append(f"xp: baseline {path} not written: no run passed in this session")
            return
        self._written.append("xp: " + save_baseline(path, (Entry.of_run(run) for run in runs)).summary())

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._options.baseline is not None:
            self._summarise(terminalreporter, self._options.baseline)
        for line in self._written:
            terminalreporter.write_line(line)
        for error in self._errors:
            terminalreporter.write_line(error, red=True)

    def _summarise(self, terminalreporter: Any, baseline: Path) -> None:
        for title, kind in (("regressions", REGRESSED), ("improvements", IMPROVED)):
            found = sorted((v for v in self.verdicts if v.verdict == kind), key=lambda v: (v.label, v.metric))
            if found:
                terminalreporter.write_sep("-", f"xp: {title} against {baseline.name}")
                for verdict in found:
                    terminalreporter.write_line(f"{verdict.label}: {verdict.message()}")
        new = sorted({v.label for v in self.verdicts if v.verdict == NEW})
        not_run = sorted(v.label for v in self.verdicts if v.verdict == NOT_RUN)
        judged = sum(1 for v in self.verdicts if v.verdict not in (NEW, NOT_RUN))
        regressed = sum(1 for v in self.verdicts if v.verdict == REGRESSED)
        improved = sum(1 for v in self.verdicts if v.verdict == IMPROVED)
        terminalreporter.write_line(
            f"xp: compared with {baseline}: {regressed} regressed, {improved} improved, "
            f"{judged - regressed - improved} within tolerance or unjudged, {len(new)} new (not in the baseline)"
        )
        _listed(terminalreporter, "new", new)
        if not_run:
            terminalreporter.write_line(f"xp: {len(not_run)} baseline entries not run in this session")
            _listed(terminalreporter, "not run", not_run)
        unjudged = unreported_line(self.unreported)
        if unjudged:
            terminalreporter.write_line(f"xp: {unjudged}")


def _listed(terminalreporter: Any, what: str, labels: list[str], limit: int = 20) -> None:
    """The first ``limit`` of ``labels``, one per line, and how many more."""
    for label in labels[:limit]:
        terminalreporter.write_line(f"  {what}: {label}")
    if len(labels) > limit:
        terminalreporter.write_line(f"  ... and {len(labels) - limit} more {what}")
