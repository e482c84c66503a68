"""The ``show`` subcommand: everything recorded about one run."""

from __future__ import annotations

import argparse
import difflib
import json
import math
from collections.abc import Sequence
from typing import Any

from pytest_experiments import tables
from pytest_experiments.cli.common import (
    CLIError,
    add_subcommand,
    duration_text,
    no_runs,
    opened_store,
    print_lines,
    utc_time,
)
from pytest_experiments.model import Attempt, RunRecord
from pytest_experiments.store import Store
from pytest_experiments.tables import Column, human_size, text_table


def register(subparsers: Any) -> None:
    """Add ``show RUN``."""
    show = add_subcommand(
        subparsers, "show", "everything recorded about one run",
        "RUN is a run id, a unique prefix of one, or a node id (its latest run).\n\nexamples:\n"
        "  pytest-experiments show 20261123-182434-16a4\n"
        "  pytest-experiments show 'experiments/test_train.py::test_train[lr=0.1-seed=0]'",
    )  # fmt: skip
    show.add_argument("run", metavar="RUN")
    show.set_defaults(handler=show_command)


def find_run(store: Store, ref: str) -> str:
    """The run id ``ref`` means: a run id, a unique prefix of one, or a node id (its latest run).

    A node id may also be given without its shared prefix (``test_train[lr=0.1]``), as the
    text table shows it, when that names one grid point.
    """
    runs = store.runs(history=True)
    if not runs:
        raise no_runs(store)
    by_node = [run for run in runs if run.node_id == ref]
    if by_node:
        return by_node[-1].run_id  # oldest first: the last is the latest
    prefixed = [run.run_id for run in runs if run.run_id.startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    by_tail = [run for run in runs if run.node_id.endswith(("::" + ref, "/" + ref))]
    node_ids = sorted({run.node_id for run in by_tail})
    if len(node_ids) == 1 and not prefixed:
        return by_tail[-1].run_id
    if prefixed or node_ids:
        candidates = prefixed or node_ids
        more = f" and {len(candidates) - 5} more" if len(candidates) > 5 else ""
        raise CLIError(f"{ref!r} is ambiguous: it matches {', '.join(candidates[:5])}{more}; give more of it")
    close = difflib.get_close_matches(ref, sorted({run.node_id for run in runs}), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "`pytest-experiments runs --history` lists them"
    raise CLIError(f"no run with id or node id {ref!r}; {hint}")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _pairs(pairs: Sequence[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max((len(key) for key, _ in pairs), default=0)
    return [f"{indent}{key.ljust(width)}  {value}".rstrip() for key, value in pairs]


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            pairs += _flatten(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", _value(value)))
    return pairs


def _session_pairs(session: dict[str, Any]) -> list[tuple[str, str]]:
    """The session's metadata, git/host/command spelled out and the package list as a count."""
    rest = dict(session)
    pairs = []
    git = rest.pop("git", None)
    if isinstance(git, dict):
        commit = str(git.get("commit") or "no commit")[:10]
        branch = f" on {git['branch']}" if git.get("branch") else ""
        remote = f", {git['remote']}" if git.get("remote") else ""
        pairs.append(("git", f"{commit}{branch}{' (dirty)' if git.get('dirty') else ''}{remote}"))
    host = rest.pop("host", None)
    if isinstance(host, dict):
        python = f"{host.get('implementation', 'Python')} {host.get('python', '?')}"
        pairs.append(("host", f"{host.get('hostname', '?')}, {host.get('platform', '?')}, {python}"))
    if "command" in rest:
        cwd = rest.pop("cwd", None)
        pairs.append(("command", str(rest.pop("command")) + (f"  (in {cwd})" if cwd else "")))
    versions = rest.pop("versions", None)
    if isinstance(versions, dict):
        pairs.append(("versions", ", ".join(f"{name} {version}" for name, version in versions.items())))
    packages = rest.pop("packages", None)
    if isinstance(packages, dict):
        pairs.append(("packages", f"{len(packages)} installed distributions recorded"))
    return pairs + _flatten(rest)


def _indented(text: str) -> list[str]:
    return [f"  {line}".rstrip() for line in text.splitlines()]


def _summary(last: float | None, points: Sequence[float | None]) -> list[str]:
    """Last, min and max of a metric's logged points; NaN points are left out of min and max.

    A store may keep a NaN point as NULL and hand it back as None: NaN again here.
    """
    values = [math.nan if value is None else value for value in points] or [math.nan if last is None else last]
    if last is None:
        last = values[-1]
    numbers = [value for value in values if not math.isnan(value)] or [math.nan]
    return [f"{value:.6g}" for value in (last, min(numbers), max(numbers))]


def describe_run(
    run: RunRecord, series: dict[str, list[tuple[int | None, float]]], attempts: Sequence[Attempt] = ()
) -> list[str]:
    """The lines ``show`` prints for ``run``, given its metric series and its attempts (a continued
    run's: paused or interrupted, then continued)."""
    lines = [f"run {run.run_id}  {run.status}"]
    lines += _pairs(
        [
            ("node id", run.node_id),
            ("experiment", f"{run.module}::{run.experiment}"),
            ("session", run.session_id),
            ("worker", f"{run.worker} on {run.host}, pid {run.pid}"),
            ("started", f"{utc_time(run.started_at)} UTC"),
            (
                "finished",
                f"{utc_time(run.finished_at)} UTC, took {duration_text(run.duration)}" if run.finished_at else "-",
            ),
            ("folder", str(run.dir) if run.dir.is_dir() else f"{run.dir} (not created: nothing written)"),
        ]
    )
    params = [(name, _value(value)) for name, value in run.params.items()]
    params += [(f"{name} (logged)", _value(value)) for name, value in run.logged_params.items()]
    lines += ["", "parameters", *(_pairs(params) if params else ["  (none)"])]
    if run.tags:
        lines += ["", "tags", *_pairs(sorted(run.tags.items()))]
    lines += ["", "metrics"]
    if series:
        rows = []
        for name, points in series.items():
            rows.append([name, str(len(points)), *_summary(run.metrics.get(name), [value for _, value in points])])
        columns = [
            Column("name", shrink="end"),
            *(Column(head, right=True) for head in ("points", "last", "min", "max")),
        ]
        lines += ["  " + line for line in text_table(columns, rows, tables.terminal_width() - 2)]
    else:
        lines.append("  (none)")
    metadata = _flatten(run.metadata)
    if run.code_sha256:
        metadata.append(("code sha256", run.code_sha256[:16]))
    metadata += _session_pairs(run.session)
    lines += ["", "metadata", *(_pairs(metadata) if metadata else ["  (none)"])]
    if run.error:
        lines += ["", "error", *_indented(run.error)]
        if run.traceback:
            lines += ["", "traceback", *_indented(run.traceback)]
    artefacts = [
        (artifact.name, human_size(artifact.size) + (f" ({artifact.kind})" if artifact.kind else ""))
        for artifact in run.artifacts
    ]
    lines += ["", "artefacts", *(_pairs(artefacts) if artefacts else ["  (none)"])]
    if len(attempts) > 1:
        lines += ["", f"attempts (continued {len(attempts) - 1} times)", *_attempt_table(attempts)]
    for note in run.notes:
        lines += ["", f"note ({utc_time(note.at)} UTC)", *_indented(note.text)]
    return lines


def _attempt_table(attempts: Sequence[Attempt]) -> list[str]:
    # The reason before the session: a narrow terminal drops columns from the right.
    columns = [Column("#", right=True), Column("status"), Column("started (UTC)"), Column("took", right=True),
               Column("reason", shrink="end"), Column("session")]  # fmt: skip
    rows = [
        [
            str(number),
            attempt.status,
            utc_time(attempt.started_at),
            duration_text(None if attempt.finished_at is None else attempt.finished_at - attempt.started_at),
            attempt.reason or "-",
            attempt.session_id,
        ]
        for number, attempt in enumerate(attempts, 1)
    ]
    return ["  " + line for line in text_table(columns, rows, tables.terminal_width() - 2)]


def show_command(args: argparse.Namespace) -> int:
    """``show RUN``: everything recorded about one run."""
    with opened_store(args) as store:
        try:
            run = store.run(args.run)
        except KeyError:
            run = store.run(find_run(store, args.run))
        series = {name: store.metric_series(run.run_id, name) for name in run.metrics}
        attempts = store.attempts(run.run_id)
    print_lines(describe_run(run, series, attempts))
    return 0
