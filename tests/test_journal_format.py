"""The journal's lines: what a process's runs share is written once, values as the store keeps
them, a function's source with its first run only; lines of older journals still read."""

from __future__ import annotations

import json
import os
from pathlib import Path

from backends import Backend
from test_store_contract import HOST, run_end, run_start, session_start

from pytest_experiments.model import Artifact, RunEnd, RunStart
from pytest_experiments.store.journal import JournalWriter, read_batch
from pytest_experiments.store.liveness import Process, pid_namespace, process_start

SOURCE = 'def test_x(point):\n    return {"é": point}\n'
SHA = "c0de" * 16


def this_process() -> Process:
    pid = os.getpid()
    return Process(HOST, pid, pid_namespace(), process_start(pid))


def decoded(end: RunEnd) -> RunEnd:
    """``end`` as read from a journal, its JSON values (kept as text for the store) decoded."""
    values = ("result", "metrics", "logged_params", "metadata")
    return end._replace(**{name: json.loads(getattr(end, name)) for name in values})


def test_what_the_runs_of_a_process_share_is_written_once(tmp_path: Path) -> None:
    session = session_start("shared")
    writer = JournalWriter(tmp_path, this_process(), session.session_id, "gw3")
    starts = [
        run_start(session, "a\tb é", params={"name": "é\t\n", "nested": {"x": [1, None]}})._replace(worker="gw3"),
        run_start(session, 2)._replace(worker="gw3"),
    ]
    ends = [
        run_end(
            starts[0].run_id, result={"text": "ü\t", "n": float("nan")}, metrics={"m": 0.5},
            logged_params={"lr": 0.1}, metadata={"timing": {"call": 1e-05}}, code_sha256=SHA, code_source=SOURCE,
            error_type="E", error_message="ö", tags={"k": "v"}, artifacts=(Artifact("a.txt", 3, "text/plain", "file"),),
        ),
        run_end(starts[1].run_id, result=None, code_sha256=SHA, code_source=SOURCE),
    ]  # fmt: skip
    for start, end in zip(starts, ends, strict=True):
        writer.start(start)
        writer.end(end)
    writer.close()

    text = writer.path.read_bytes().decode("utf-8")
    lines = text.split("\n")
    assert len(lines) == 6  # a header, two lines a run (tabs and newlines in values escaped), and ""
    for line in lines[1:-1:2]:
        kind, own, _params = line.split("\t")
        assert kind == "S"
        assert len(json.loads(own)) == 7  # session, worker and process in the header only
    assert text.count("return {") == 1  # the source, with its first run only
    batch = read_batch(writer.path, 0)
    assert [start._replace(params=json.loads(start.params)) for start in batch.starts] == starts
    first, second = (decoded(end) for end in batch.ends)
    assert first._replace(result=None) == ends[0]._replace(result=None)
    assert json.dumps(first.result) == json.dumps(ends[0].result)  # NaN kept (and unequal to itself)
    assert second == ends[1]._replace(code_source=None)  # named by its hash


def test_metrics_that_are_the_result_are_written_once(tmp_path: Path) -> None:
    # (result, metrics, whether the metrics field is "="): only the very same text is left out.
    cases = [
        ({"loss": 0.5, "acc": 0.25}, {"loss": 0.5, "acc": 0.25}, True),
        ({}, {}, True),
        ({"steps": 3, "loss": 0.5}, {"steps": 3.0, "loss": 0.5}, False),  # an int prints as 3, a metric as 3.0
        ({"loss": 0.5, "acc": 0.25}, {"acc": 0.25, "loss": 0.5}, False),  # another order
        ({"loss": -0.0}, {"loss": 0.0}, False),  # equal, printed apart
        ({"loss": 0.5}, {"loss": 0.5, "logged": 1.5}, False),
        ({"n": float("nan")}, {"n": float("nan")}, False),
        (0.5, {"result": 0.5}, False),
    ]
    session = session_start("same")
    writer = JournalWriter(tmp_path, this_process(), session.session_id)
    starts = [run_start(session, index) for index in range(len(cases))]
    for start, (result, metrics, _) in zip(starts, cases, strict=True):
        writer.start(start)
        writer.end(run_end(start.run_id, result=result, metrics=metrics))
    writer.close()
    fields = [line.split("\t") for line in writer.path.read_text().splitlines() if line.startswith("E\t")]
    assert [fields_of_line[3] == "=" for fields_of_line in fields] == [left_out for *_, left_out in cases]
    for end, (result, metrics, _) in zip(read_batch(writer.path, 0).ends, cases, strict=True):
        assert json.dumps(json.loads(end.metrics)) == json.dumps(metrics)
        assert json.dumps(json.loads(end.result)) == json.dumps(result)


def test_a_run_of_another_process_is_written_whole(tmp_path: Path) -> None:
    session = session_start("other")
    writer = JournalWriter(tmp_path, this_process(), session.session_id)
    other = run_start(session, 1, pid=1, pid_started="1:1")  # the writer's process is not its
    writer.start(other)
    writer.close()
    [start] = read_batch(writer.path, 0).starts
    assert start._replace(params=json.loads(start.params)) == other


def test_lines_of_older_journals_still_read(tmp_path: Path) -> None:
    # As journals were written before their lines left out what a process's runs share.
    path = tmp_path / "old.journal"
    header = {"session_id": "s1", "host": "h", "pid": 7, "pid_namespace": "4026531836", "started": "b:1"}
    start = ["r1", "s1", "t.py::t[0]", "t.py", "t", "hash", '{"i":0}', 1.5, "gw1", "h", 7, "runs/t/r1", "ns", "b:1"]
    end = [
        "r1", "passed", 2.5, 1.0, '{"loss":1.0}', '{"loss":1.0}', "{}", '{"attempt":1}', SHA, SOURCE,
        None, None, None, {"k": "v"}, [["a.txt", 3, "text/plain", "file"]],
    ]  # fmt: skip
    lines = [f"H\t{json.dumps(header)}", f"S\t{json.dumps(start)}", f"E\t{json.dumps(end)}"]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="ascii")
    batch = read_batch(path, 0)
    assert batch.writer == Process("h", 7, "4026531836", "b:1")
    [read_start] = batch.starts
    assert read_start == RunStart("r1", "s1", "t.py::t[0]", "t.py", "t", "hash", '{"i":0}', 1.5, "gw1", "h", 7,
                                  "runs/t/r1", "ns", "b:1")  # fmt: skip
    [read_end] = batch.ends
    assert decoded(read_end) == RunEnd(
        "r1", "passed", 2.5, 1.0, {"loss": 1.0}, {"loss": 1.0}, [], {}, {"attempt": 1}, SHA, SOURCE,
        tags={"k": "v"}, artifacts=(Artifact("a.txt", 3, "text/plain", "file"),),
    )  # fmt: skip


def test_every_run_shows_its_code_before_and_after_the_fold(backend: Backend) -> None:
    """A run whose journal wrote its function's source with an earlier run: a reader finds it in
    the journal (not folded yet) or in the store (folded), on both backends."""
    session = session_start("code")
    with backend.open(create=True) as store:
        store.record_session(session)
        root = store.root
    writer = JournalWriter(root, this_process(), session.session_id)
    starts = [run_start(session, point) for point in range(3)]

    def write(start: RunStart) -> None:
        writer.start(start)
        writer.end(run_end(start.run_id, code_sha256=SHA, code_source=SOURCE))

    write(starts[0])
    write(starts[1])
    with backend.open(readonly=True) as reader:  # nothing folded: both from the journal
        assert [reader.run(start.run_id).code_source for start in starts[:2]] == [SOURCE, SOURCE]
    with backend.open() as folder:
        folder.fold_journals()
        assert [folder.run(start.run_id).code_source for start in starts[:2]] == [SOURCE, SOURCE]
    write(starts[2])  # its source is in the store only now
    writer.close()
    with backend.open(readonly=True) as reader:
        record = reader.run(starts[2].run_id)
        assert (record.status, record.code_sha256, record.code_source) == ("passed", SHA, SOURCE)
        assert reader.code_source(SHA) == SOURCE
    with backend.open() as folder:
        folder.fold_journals()
        assert folder.run(starts[2].run_id).code_source == SOURCE
        assert folder.code_source("unknown") is None
