"""Comparing runs with a baseline: rules, baseline files and verdicts.

Pure functions shared by the plugin (``--xp-baseline``, in ``plugin/baseline.py``) and the
command line (``pytest-experiments baseline`` / ``compare``, in ``cli/compare.py``): those two
only call what is here. No pytest, no pandas.

A rule says which direction is better for one metric and how much worse is tolerated::

    acc higher 0.01          # absolute tolerance
    loss lower 5%            # relative to the baseline value
    acc higher 0.01 over=seed  # judge groups of seeds, not single runs (see compare_groups)
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_args

from pytest_experiments.model import IMPROVED, NEW, NOT_RUN, OK, REGRESSED, SHOWN, RunRecord, Verdict
from pytest_experiments.tables import Column, markdown_escape, markdown_table, text_table
from pytest_experiments.values import canonical_json

BASELINE_FORMAT = 1
_RULE_EXAMPLES = "e.g. 'acc higher 0.01' or 'loss lower 5%'"
_NO_SCIPY = "comparing over seeds (over=...) needs scipy: pip install 'pytest-experiments[stats]'"

# Why a value was judged without its tolerance (it is NaN or absent), in messages and reports.
BECAME_NAN = "became NaN"
STILL_NAN = "still NaN"
NO_LONGER_NAN = "no longer NaN"
MISSING = "missing"


class RuleError(ValueError):
    """A comparison rule that cannot be parsed; the message names it and shows the form."""


class BaselineError(ValueError):
    """A baseline file that cannot be read; the message names it and what to do."""


@dataclass(frozen=True)
class Rule:
    """How to judge one metric: the better direction and the tolerated worsening."""

    metric: str
    higher_is_better: bool
    tolerance: float
    relative: bool = False
    #: Parameters that only add noise (seeds): runs differing in them are judged as a group.
    over: tuple[str, ...] = ()

    def allowed(self, base: float) -> float:
        """The tolerated worsening, in the metric's units, for a baseline value ``base``."""
        return self.tolerance * abs(base) if self.relative else self.tolerance

    def worsening(self, base: float, new: float) -> float:
        """How much worse ``new`` is than ``base`` (negative when it is better)."""
        return base - new if self.higher_is_better else new - base

    def with_over(self, names: tuple[str, ...]) -> Rule:
        """The same rule, judging groups over ``names`` too (``--xp-compare-over``)."""
        return dataclasses.replace(self, over=self.over + names) if names else self

    def describe(self) -> str:
        """The rule as written (``acc higher 0.01``)."""
        tolerance = f"{self.tolerance * 100:g}%" if self.relative else f"{self.tolerance:g}"
        over = f" over={','.join(self.over)}" if self.over else ""
        return f"{self.metric} {'higher' if self.higher_is_better else 'lower'} {tolerance}{over}"

    def to_json(self) -> dict[str, Any]:
        """Builtin types only (it crosses the xdist channel); exact, unlike :meth:`describe`."""
        return {**dataclasses.asdict(self), "over": list(self.over)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rule:
        """The rule :meth:`to_json` made."""
        return cls(**{**data, "over": tuple(data["over"])})


def parse_rule(text: str) -> Rule:
    """Parse ``"<metric> higher|lower <tolerance>[%] [over=<param>[,<param>]]"``."""
    words = text.split()
    if len(words) < 3:
        raise RuleError(f"comparison rule {text!r} needs a metric, a direction and a tolerance, {_RULE_EXAMPLES}")
    metric, direction, tolerance_text, *rest = words
    if direction not in ("higher", "lower"):
        raise RuleError(
            f"comparison rule {text!r}: direction must be 'higher' or 'lower', not {direction!r}; {_RULE_EXAMPLES}"
        )
    relative = tolerance_text.endswith("%")
    try:
        tolerance = float(tolerance_text.rstrip("%"))
    except ValueError:
        tolerance = -1.0
    if not tolerance >= 0 or math.isinf(tolerance):
        raise RuleError(
            f"comparison rule {text!r}: tolerance must be a number >= 0 (or a percentage), {_RULE_EXAMPLES}"
        )
    over: tuple[str, ...] = ()
    for word in rest:
        if not word.startswith("over=") or not word[5:]:
            raise RuleError(f"comparison rule {text!r}: unexpected {word!r}; only over=<parameter> may follow")
        over += tuple(name for name in word[5:].split(",") if name)
    return Rule(metric, direction == "higher", tolerance / 100 if relative else tolerance, relative, over)


def parse_rules(lines: Iterable[str], over: Iterable[str] = ()) -> dict[str, Rule]:
    """Rules by metric from rule lines (blank lines and ``#`` comments skipped); later lines win.

    ``over`` adds noise parameters to every rule (``--xp-compare-over seed``).
    """
    extra = tuple(over)
    rules: dict[str, Rule] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            rule = parse_rule(line).with_over(extra)
            rules[rule.metric] = rule
    return rules


def parse_marker_rules(compare: Any, where: str) -> dict[str, Rule]:
    """Rules from ``@pytest.mark.experiment(compare={"acc": "higher 0.01"})``."""
    if not isinstance(compare, Mapping):
        raise RuleError(f"{where}: experiment(compare=...) must be a dict such as {{'acc': 'higher 0.01'}}")
    return {str(metric): parse_rule(f"{metric} {spec}") for metric, spec in compare.items()}


# -- baselines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One run as a comparison sees it: identity, parameters and metrics."""

    node_id: str
    module: str
    experiment: str
    param_hash: str
    params: dict[str, Any]
    metrics: dict[str, float]

    @classmethod
    def of_run(cls, run: RunRecord) -> Entry:
        return cls(run.node_id, run.module, run.experiment, run.param_hash, run.params, dict(run.metrics))


def baseline_text(entries: Iterable[Entry]) -> str:
    """A deterministic, diff-friendly baseline: sorted keys, one entry per node id."""
    runs = {
        entry.node_id: {
            "experiment": entry.experiment,
            "metrics": entry.metrics,
            "module": entry.module,
            "param_hash": entry.param_hash,
            "params": entry.params,
        }
        for entry in entries
    }
    return json.dumps({"pytest_experiments_baseline": BASELINE_FORMAT, "runs": runs}, sort_keys=True, indent=2) + "\n"


@dataclass(frozen=True)
class BaselineUpdate:
    """What :func:`save_baseline` did to a baseline file."""

    path: Path
    #: Entries of the file replaced by a run of this save.
    updated: int
    #: Node ids the file did not hold before.
    added: int
    #: Entries of the file no run of this save replaced (grid points not run, deselected, failed).
    kept: int

    @property
    def total(self) -> int:
        """Entries the file holds now."""
        return self.updated + self.added + self.kept

    def summary(self) -> str:
        """One line for the user."""
        return (
            f"baseline written to {self.path}: {self.updated} updated, {self.added} added, "
            f"{self.kept} kept ({self.total} entries)"
        )


def save_baseline(path: Path, entries: Iterable[Entry]) -> BaselineUpdate:
    """Merge ``entries`` into the baseline file at ``path`` (created if absent) and write it atomically.

    Entries of the file whose node id is not among ``entries`` are kept: saving after ``-k``
    or ``--xp-resume`` updates the grid points that ran and keeps the others. The one writer
    of baseline files, for ``--xp-save-baseline`` and ``pytest-experiments baseline save``.
    """
    existing = read_saved_baseline(path)
    fresh = {entry.node_id: entry for entry in entries}
    updated = sum(1 for node_id in fresh if node_id in existing)
    write_text_atomically(path, baseline_text({**existing, **fresh}.values()))
    return BaselineUpdate(path, updated, len(fresh) - updated, len(existing.keys() - fresh.keys()))


def read_saved_baseline(path: Path) -> dict[str, Entry]:
    """The entries a save into ``path`` merges with: none for a new file; a :class:`BaselineError`
    when the file cannot be written or is something else than a baseline (never overwritten)."""
    problem = output_path_problem(path)
    if problem is not None:
        raise BaselineError(problem)
    if not path.exists():
        return {}
    try:
        return read_baseline(path)
    except BaselineError as exc:
        raise BaselineError(f"{exc}; move it away to save a new baseline") from None


def output_path_problem(path: Path) -> str | None:
    """Why no file can be written at ``path`` (a folder, below a file, a read-only place), else None.

    Checked before anything runs, so that a sweep does not end in a traceback; creates nothing.
    """
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent  # the folders to create: the first existing one decides
    if not folder.is_dir():
        return f"cannot write {path}: {folder} is not a folder"
    # os.access tells a read-only mount (EROFS) even for root, who ignores permissions.
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write {path}: {folder} is not writable"
    if path.exists() and not os.access(path, os.W_OK):
        return f"cannot write {path}: it is read-only"
    return None


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read_baseline(path: Path) -> dict[str, Entry]:
    """The entries of a baseline file, by node id."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} does not exist; write one with --xp-save-baseline={path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BaselineError(f"baseline {path} is not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("pytest_experiments_baseline") != BASELINE_FORMAT:
        raise BaselineError(f"{path} is not a pytest-experiments baseline (format {BASELINE_FORMAT})")
    try:
        return {
            node_id: Entry(node_id, item["module"], item["experiment"], item["param_hash"], item["params"],
                           {name: float(value) for name, value in item["metrics"].items()})
            for node_id, item in data["runs"].items()
        }  # fmt: skip
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BaselineError(f"baseline {path} has a malformed entry ({exc!r})") from None


# -- single runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricVerdict:
    """One metric of one run (or group of runs) against its baseline."""

    label: str  # node id, or the group's description
    metric: str
    base: float | None
    new: float | None
    verdict: Verdict
    tolerance: float | None = None  # in the metric's units
    rule: str | None = None
    p_value: float | None = None
    base_interval: tuple[float, float] | None = None
    new_interval: tuple[float, float] | None = None
    #: Why the verdict needed no tolerance: ``became NaN``, ``missing``...
    note: str | None = None

    @property
    def delta(self) -> float | None:
        """``new - base``, when both exist and the difference is a number (not NaN)."""
        if self.base is None or self.new is None:
            return None
        delta = self.new - self.base
        return None if math.isnan(delta) else delta

    @property
    def mark(self) -> str:
        """The verdict with its note: ``regressed (became NaN)``."""
        return f"{self.verdict} ({self.note})" if self.note else self.verdict

    def message(self) -> str:
        """One line for a failing test or a summary."""
        text = f"{self.metric} {self.mark}: baseline {_number(self.base)}, now {_number(self.new)}"
        if self.delta is not None:
            text += f", delta {self.delta:+.6g}"
        if self.tolerance is not None:
            text += f", tolerance {self.tolerance:.6g}"
        if self.p_value is not None:
            text += f", p={self.p_value:.3g}"
        return text + (f" (rule: {self.rule})" if self.rule else "")

    def to_json(self) -> dict[str, Any]:
        """Builtin types only (it crosses the xdist channel)."""
        return {
            "label": self.label, "metric": self.metric, "base": self.base, "new": self.new,
            "verdict": self.verdict, "tolerance": self.tolerance, "rule": self.rule, "p_value": self.p_value,
            "note": self.note,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricVerdict:
        """The verdict :meth:`to_json` made."""
        return cls(
            str(data["label"]), str(data["metric"]), data.get("base"), data.get("new"), _verdict(data["verdict"]),
            data.get("tolerance"), data.get("rule"), data.get("p_value"), note=data.get("note"),
        )  # fmt: skip


def _verdict(value: object) -> Verdict:
    """A verdict read back (from a worker's report): one of :data:`Verdict`, else a ``ValueError``."""
    if value not in get_args(Verdict):
        raise ValueError(f"unknown verdict {value!r}")
    return cast("Verdict", value)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def judge(label: str, metric: str, base: float | None, new: float | None, rule: Rule | None) -> MetricVerdict:
    """The verdict of one metric value against its baseline value (None: not reported).

    Without a rule, or without a baseline value, the metric is shown, never judged. With
    both, a missing or NaN value is a regression whatever the tolerance (a diverged model
    must not pass), and infinite values are judged by their direction alone.
    """
    if rule is None or base is None:
        return MetricVerdict(label, metric, base, new, SHOWN)
    if new is None:
        return MetricVerdict(label, metric, base, new, REGRESSED, rule=rule.describe(), note=MISSING)
    special = _untolerated(base, new, rule)
    if special is not None:
        return MetricVerdict(label, metric, base, new, special[0], rule=rule.describe(), note=special[1])
    allowed = rule.allowed(base)
    worsening = rule.worsening(base, new)
    verdict: Verdict = REGRESSED if _beyond(worsening, allowed) else IMPROVED if _beyond(-worsening, allowed) else OK
    return MetricVerdict(label, metric, base, new, verdict, allowed, rule.describe())


def _untolerated(base: float, new: float, rule: Rule) -> tuple[Verdict, str | None] | None:
    """(verdict, note) when a tolerance cannot judge, a value being NaN or infinite; else None.

    NaN compares false with everything, so tolerances would call it ``ok``: it is judged
    here first. An infinite change is beyond any tolerance (and a relative tolerance of an
    infinite baseline is infinite), so its direction alone decides.
    """
    if math.isnan(new):
        return REGRESSED, STILL_NAN if math.isnan(base) else BECAME_NAN
    if math.isnan(base):
        return IMPROVED, NO_LONGER_NAN
    if math.isfinite(base) and math.isfinite(new):
        return None
    if new == base:
        return OK, None
    worse = new < base if rule.higher_is_better else new > base
    return (REGRESSED if worse else IMPROVED), None


def _beyond(change: float, allowed: float) -> bool:
    """``change > allowed``, but a change of exactly the tolerance is within it despite float
    rounding (``0.9 - 0.89`` is ``0.010000000000000009``)."""
    return change > allowed and not math.isclose(change, allowed, rel_tol=1e-9, abs_tol=1e-12)


def compare_run(new: Entry, base: Entry | None, rules: Mapping[str, Rule]) -> list[MetricVerdict]:
    """Every metric of ``new`` against ``base`` (the baseline entry of its node id).

    A run without an entry, or whose parameters changed, is ``new``; metrics whose rule
    judges groups (``over=``) are left to :func:`compare_groups`. A metric with a rule
    that the baseline has and the run does not report is a regression (``missing``).
    """
    if base is None or base.param_hash != new.param_hash:
        return [MetricVerdict(new.node_id, "", None, None, NEW)]
    verdicts = []
    for metric in sorted(set(new.metrics) | set(base.metrics)):
        rule = rules.get(metric)
        if rule is not None and rule.over:
            continue
        verdicts.append(judge(new.node_id, metric, base.metrics.get(metric), new.metrics.get(metric), rule))
    return verdicts


def compare_entries(
    new: Iterable[Entry], base: Mapping[str, Entry], rules: Mapping[str, Rule], alpha: float
) -> list[MetricVerdict]:
    """All verdicts: per run for plain rules, per group for rules with ``over=``, and
    ``not run`` for each baseline entry no new run has."""
    new = list(new)
    verdicts = [verdict for entry in new for verdict in compare_run(entry, base.get(entry.node_id), rules)]
    grouped = {metric: rule for metric, rule in rules.items() if rule.over}
    if grouped:
        verdicts.extend(compare_groups(new, list(base.values()), grouped, alpha))
    return verdicts + unrun_verdicts(base, {entry.node_id for entry in new})


def unrun_verdicts(base: Mapping[str, Entry], ran: Collection[str]) -> list[MetricVerdict]:
    """A ``not run`` verdict for each baseline entry whose node id is not in ``ran``."""
    return [MetricVerdict(node_id, "", None, None, NOT_RUN) for node_id in sorted(base) if node_id not in ran]


def unreported_rules(rules: Iterable[Rule], entries: Iterable[Entry]) -> list[Rule]:
    """The rules whose metric no entry reports: they judged nothing, which must not go unnoticed."""
    reported = {metric for entry in entries for metric in entry.metrics}
    return sorted({rule for rule in rules if rule.metric not in reported}, key=lambda rule: rule.describe())


def unreported_line(rules: Iterable[Rule]) -> str | None:
    """One line naming the rules that judged nothing, or None."""
    parts = [f"rule {rule.describe()!r} judged nothing: no run reports {rule.metric!r}" for rule in rules]
    return "; ".join(parts) or None


def has_regression(verdicts: Iterable[MetricVerdict]) -> bool:
    """Whether anything regressed."""
    return any(verdict.verdict == REGRESSED for verdict in verdicts)


def noise_parameter_problem(
    over: Iterable[str], rules: Iterable[Rule], known: Collection[str], option: str
) -> str | None:
    """The first noise parameter (given with ``option``, or in a rule's ``over=``) that no
    experiment has, as a message naming the known parameters; None when all exist."""
    names = ", ".join(sorted(known)) or "none"
    for name in over:
        if name not in known:
            return f"{option} {name}: no experiment has a parameter {name!r}; parameters: {names}"
    for rule in rules:
        for name in rule.over:
            if name not in known:
                return (
                    f"comparison rule {rule.describe()!r}: over={name} names no parameter of any experiment; "
                    f"parameters: {names}"
                )
    return None


# -- groups of seeds ---------------------------------------------------------------------


@dataclass
class _Group:
    """One metric's values in one group of runs, both sides."""

    label: str
    base: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)
    #: New runs of the group that do not report the metric.
    missing: int = 0


def _group_key(entry: Entry, over: tuple[str, ...]) -> tuple[str, str, str]:
    kept = {name: value for name, value in entry.params.items() if name not in over}
    return entry.module, entry.experiment, canonical_json(kept)


def compare_groups(new: list[Entry], base: list[Entry], rules: Mapping[str, Rule], alpha: float) -> list[MetricVerdict]:
    """Judge groups of runs that differ only in their noise parameters (``over=``, e.g. seeds).

    Per group and metric, the baseline's and the new runs' values are two samples. Their
    means are compared with Welch's t-test, one-sided in the direction of "worse" (it does
    not assume equal variances and suits a handful of seeds), and each mean gets a 95%
    confidence interval. A regression is called only when the mean got worse by more than
    the tolerance AND the test is significant at ``alpha``; an improvement likewise. With
    fewer than two values on a side no test is possible and the means are judged by the
    tolerance alone. A new run of the group that reports NaN, or does not report the metric
    at all, regresses the group (see :func:`_judge_group`).
    """
    verdicts = []
    for metric, rule in sorted(rules.items()):
        groups: dict[tuple[str, str, str], _Group] = {}
        for side, entries in (("base", base), ("new", new)):
            for entry in entries:
                key = _group_key(entry, rule.over)
                group = groups.setdefault(key, _Group(f"{entry.module}::{entry.experiment}{_params_label(key[2])}"))
                if metric in entry.metrics:
                    (group.base if side == "base" else group.new).append(entry.metrics[metric])
                elif side == "new":
                    group.missing += 1
        for group in sorted(groups.values(), key=lambda g: g.label):
            if not group.new and not group.missing:
                continue  # not run: the baseline entries say so
            if not group.base:  # no baseline values: new (and nothing to miss)
                if group.new:
                    verdicts.append(
                        MetricVerdict(group.label, metric, None, _mean(group.new), NEW, rule=rule.describe())
                    )
                continue
            verdicts.append(_judge_group(group, metric, rule, alpha))
    return verdicts


def _params_label(params_json: str) -> str:
    params = json.loads(params_json)
    return "[" + "-".join(f"{k}={v}" for k, v in params.items()) + "]" if params else ""


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _judge_group(group: _Group, metric: str, rule: Rule, alpha: float) -> MetricVerdict:
    """One group's verdict. Baseline values that are NaN carry nothing and are left out; a new
    run without the metric, or with NaN, regresses the group; infinite values leave no sample
    to test, so the means are judged by their direction alone."""
    base = [value for value in group.base if not math.isnan(value)]
    runs = len(group.new) + group.missing
    nans = sum(1 for value in group.new if math.isnan(value))
    note = None
    if group.missing:
        note = f"{MISSING} in {group.missing} of {runs} runs"
    elif nans:
        note = f"NaN in {nans} of {runs} runs"
    if note is not None:
        new_mean = _mean(group.new) if group.new else None
        return MetricVerdict(group.label, metric, _mean(base), new_mean, REGRESSED, rule=rule.describe(), note=note)
    base_mean, new_mean = _mean(base), _mean(group.new)
    special = _untolerated(base_mean, new_mean, rule)
    if special is not None:
        return MetricVerdict(
            group.label, metric, base_mean, new_mean, special[0], rule=rule.describe(), note=special[1]
        )
    return _judge_samples(group.label, metric, base, group.new, rule, alpha)


def _judge_samples(
    label: str, metric: str, base: list[float], new: list[float], rule: Rule, alpha: float
) -> MetricVerdict:
    base_mean, new_mean = _mean(base), _mean(new)
    allowed = rule.allowed(base_mean)
    worsening = rule.worsening(base_mean, new_mean)
    p_worse, p_better, base_ci, new_ci = _welch(base, new, rule.higher_is_better)
    significant_worse = p_worse is None or p_worse < alpha
    significant_better = p_better is None or p_better < alpha
    verdict: Verdict = OK
    if _beyond(worsening, allowed) and significant_worse:
        verdict = REGRESSED
    elif _beyond(-worsening, allowed) and significant_better:
        verdict = IMPROVED
    p_value = p_worse if worsening > 0 else p_better
    return MetricVerdict(
        label, metric, base_mean, new_mean, verdict, allowed, rule.describe(), p_value, base_ci, new_ci
    )


def require_scipy() -> None:
    """A :class:`RuleError` when comparisons over seeds cannot work (scipy is missing); imports nothing."""
    if importlib.util.find_spec("scipy") is None:
        raise RuleError(_NO_SCIPY)


def _scipy_stats() -> Any:
    try:
        from scipy import stats
    except ImportError:
        raise RuleError(_NO_SCIPY) from None
    return stats


def _welch(
    base: list[float], new: list[float], higher_is_better: bool
) -> tuple[float | None, float | None, tuple[float, float] | None, tuple[float, float] | None]:
    """One-sided Welch p-values (worse, better) and 95% intervals of both means.

    None where a side has fewer than two values. Uses scipy.
    """
    if len(base) < 2 or len(new) < 2:
        return None, None, None, None
    stats = _scipy_stats()

    def interval(values: list[float]) -> tuple[float, float]:
        mean = _mean(values)
        spread = stats.sem(values) * stats.t.ppf(0.975, len(values) - 1) if len(set(values)) > 1 else 0.0
        return mean - spread, mean + spread

    if len(set(base)) == 1 and len(set(new)) == 1:  # no variance at all: the difference is exact
        difference = _mean(new) - _mean(base)
        worse = difference < 0 if higher_is_better else difference > 0
        better = difference > 0 if higher_is_better else difference < 0
        return (0.0 if worse else 1.0), (0.0 if better else 1.0), interval(base), interval(new)
    worse_side = "less" if higher_is_better else "greater"
    better_side = "greater" if higher_is_better else "less"
    p_worse = float(stats.ttest_ind(new, base, equal_var=False, alternative=worse_side).pvalue)
    p_better = float(stats.ttest_ind(new, base, equal_var=False, alternative=better_side).pvalue)
    return p_worse, p_better, interval(base), interval(new)


# -- reports -----------------------------------------------------------------------------

_REPORT_COLUMNS = [
    Column("run"),
    Column("metric"),
    Column("baseline", right=True),
    Column("new", right=True),
    Column("delta", right=True),
    Column("verdict"),
]


def markdown_report(verdicts: list[MetricVerdict], unreported: Iterable[Rule] = ()) -> str:
    """The comparison as a markdown table (for a CI job summary), then the counts and the
    rules that judged nothing (``unreported``, see :func:`unreported_rules`)."""
    rows = []
    for verdict in _ordered(verdicts):
        delta = "" if verdict.delta is None else f"{verdict.delta:+.6g}"
        base, new = (
            _with_interval(verdict.base, verdict.base_interval),
            _with_interval(verdict.new, verdict.new_interval),
        )
        mark = {REGRESSED: "❌ ", IMPROVED: "✅ ", NEW: "🆕 "}.get(verdict.verdict, "") + verdict.mark
        if verdict.p_value is not None and verdict.verdict != NEW:
            mark += f" (p={verdict.p_value:.3g})"
        rows.append([verdict.label, verdict.metric, base, new, delta, mark])
    lines = markdown_table(_REPORT_COLUMNS, rows)
    lines.append("")
    lines.append(counts_line(verdicts))
    unjudged = unreported_line(unreported)
    if unjudged:
        lines += ["", markdown_escape(unjudged[0].upper() + unjudged[1:])]
    return "\n".join(lines) + "\n"


def text_report(verdicts: list[MetricVerdict]) -> list[str]:
    """The comparison as aligned text lines."""
    rows = []
    for verdict in _ordered(verdicts):
        delta = "" if verdict.delta is None else f"{verdict.delta:+.6g}"
        mark = verdict.mark + (f" p={verdict.p_value:.3g}" if verdict.p_value is not None else "")
        rows.append([verdict.label, verdict.metric, _number(verdict.base), _number(verdict.new), delta, mark])
    # Left-aligned throughout and never shortened: a log keeps every run's label whole.
    return text_table([Column(column.header) for column in _REPORT_COLUMNS], rows, width=0)


def summary_counts(verdicts: Iterable[MetricVerdict]) -> dict[str, int]:
    """How many verdicts of each kind (``new`` and ``not run`` counted once per run)."""
    counts = {REGRESSED: 0, IMPROVED: 0, OK: 0, SHOWN: 0, NEW: 0, NOT_RUN: 0}
    for verdict in verdicts:
        counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
    return counts


def counts_line(verdicts: Iterable[MetricVerdict]) -> str:
    """``1 regressed, 4 ok, 2 new``: the verdicts that occur, counted."""
    return ", ".join(f"{n} {name}" for name, n in summary_counts(verdicts).items() if n) or "nothing compared"


def _ordered(verdicts: list[MetricVerdict]) -> list[MetricVerdict]:
    rank = {REGRESSED: 0, IMPROVED: 1, NEW: 2, NOT_RUN: 3, OK: 4, SHOWN: 5}
    return sorted(verdicts, key=lambda v: (rank.get(v.verdict, 6), v.label, v.metric))


def _with_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    if interval is None:
        return f"{value:.6g}"
    return f"{value:.6g} ± {(interval[1] - interval[0]) / 2:.2g}"
