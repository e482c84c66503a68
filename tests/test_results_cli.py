"""Reading more than the latest values: load_series, tags and metadata in load(), and the
``summary``, ``tag``, ``note`` and ``delete`` commands, on stores written by real sessions.

Values are checked against numbers computed by hand from what the experiments logged.
"""

from __future__ import annotations

import json
import math

# Imported before any in-process session: pytester drops the modules a test imported, and
# numpy (under pandas) cannot be imported twice in one process.
import pandas as pd
import pytest
from cli_helpers import cli, user_error
from processes import Processes, store_of

from pytest_experiments import Store, load, load_series

SWEEP = """
    import pytest

    ACC = {(0.1, 0): 0.80, (0.1, 1): 0.84, (0.1, 2): 0.82, (0.2, 0): 0.70, (0.2, 1): 0.73, (0.2, 2): 0.71}

    @pytest.mark.grid(lr=[0.1, 0.2], seed=[0, 1, 2])
    def test_fit(xp, lr, seed):
        for step in range(3):
            xp.log_metric("loss", lr * seed + step, step=step)
        xp.log_metric("grad", -1.0)  # one point without a step
        xp.tags["optimizer"] = "sgd" if lr < 0.15 else "adam"
        with xp.time_block("fit"):
            pass
        return {"acc": ACC[(lr, seed)]}
"""


@pytest.fixture
def sweep(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_fit=SWEEP)
    pytester.runpytest().assert_outcomes(passed=6)
    monkeypatch.chdir(pytester.path)
    return pytester


def test_load_series_has_one_row_per_logged_point(sweep: pytest.Pytester) -> None:
    series = load_series()
    assert isinstance(series, pd.DataFrame)
    assert list(series.columns) == [
        "run_id",
        "node_id",
        "experiment",
        "params.lr",
        "params.seed",
        "metric",
        "step",
        "value",
    ]
    assert len(series) == 6 * 4
    loss = series[series["metric"] == "loss"]
    for row in loss.itertuples(index=False):
        assert row.value == pytest.approx(row[3] * row[4] + row.step)
    grad = series[series["metric"] == "grad"]
    assert grad["step"].isna().all()
    assert (grad["value"] == -1.0).all()
    only_loss = load_series(metric="loss", experiment="test_fit")
    assert set(only_loss["metric"]) == {"loss"}
    assert len(only_loss) == 18
    # The pivot people make for a plot: one column per step, one row per run.
    table = only_loss.pivot_table(index="params.seed", columns="step", values="value", aggfunc="mean")
    assert table.loc[2].tolist() == pytest.approx([0.3, 1.3, 2.3])
    assert load_series(metric="unknown").empty


def test_load_has_tags_and_on_request_metadata(sweep: pytest.Pytester) -> None:
    frame = load()
    assert sorted(frame["tags.optimizer"]) == ["adam"] * 3 + ["sgd"] * 3
    assert not [name for name in frame.columns if name.startswith("metadata.")]
    wide = load(metadata=True)
    assert (wide["metadata.attempt"] == 1).all()
    assert (wide["metadata.timing.fit"] >= 0).all()
    assert (wide["metadata.timing.call"] > 0).all()


def test_summary_gives_mean_std_and_t_interval_over_seeds(
    sweep: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "summary", "--metric", "acc", "--format", "json")
    assert code == 0
    rows = {row["params.lr"]: row for row in json.loads(out)}
    assert set(rows) == {0.1, 0.2}
    for lr, values in ((0.1, [0.80, 0.84, 0.82]), (0.2, [0.70, 0.73, 0.71])):
        mean = sum(values) / 3
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
        half = 4.302652729911275 * std / math.sqrt(3)  # scipy.stats.t.ppf(0.975, 2)
        row = rows[lr]
        assert (row["experiment"], row["metric"], row["n"]) == ("test_fit", "acc", 3)
        assert row["mean"] == pytest.approx(mean)
        assert row["std"] == pytest.approx(std)
        assert row["ci95_low"] == pytest.approx(mean - half, abs=1e-5)
        assert row["ci95_high"] == pytest.approx(mean + half, abs=1e-5)
    # Over the learning rate instead: groups by seed, two values each.
    code, out, _ = cli(capsys, "summary", "--over", "lr", "--metric", "acc", "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "experiment,params.seed,metric,n,mean,std,ci95_low,ci95_high"
    assert lines[1].startswith("test_fit,0,acc,2,0.75,")
    code, out, _ = cli(capsys, "summary", "--format", "markdown")
    assert code == 0
    assert out.splitlines()[0] == "| experiment | params.lr | metric | n | mean | std | ci95_low | ci95_high |"
    assert {line.split(" | ")[2] for line in out.splitlines()[2:]} == {"loss", "grad", "acc"}
    assert "no metric 'acc_' in the selected runs" in user_error(capsys, "summary", "--metric", "acc_")


def test_tag_and_note_annotate_a_run_afterwards(sweep: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    node = "test_fit.py::test_fit[lr=0.1-seed=0]"
    code, out, _ = cli(capsys, "tag", node, "reviewed=yes", "optimizer=sgd-momentum")
    assert code == 0
    assert out.endswith("tags: optimizer=sgd-momentum, reviewed=yes\n")
    code, out, _ = cli(capsys, "tag", node, "reviewed=")
    assert out.endswith("tags: optimizer=sgd-momentum\n")
    code, out, _ = cli(capsys, "note", node, 'diverged <b>"late"</b>')
    assert (code, out.endswith("note 1 added\n")) == (0, True)
    with Store.open(store_of(sweep), readonly=True) as store:
        [run] = [run for run in store.runs() if run.node_id == node]
    assert run.tags == {"optimizer": "sgd-momentum"}
    assert [note.text for note in run.notes] == ['diverged <b>"late"</b>']
    code, out, _ = cli(capsys, "show", node)
    assert "tags\n  optimizer  sgd-momentum" in out
    assert 'diverged <b>"late"</b>' in out
    assert "no run with id or node id 'nope'" in user_error(capsys, "tag", "nope", "a=b")
    assert "no run with id or node id 'nope'" in user_error(capsys, "note", "nope", "text")
    code, _, err = cli(capsys, "tag", node, "no-equals")
    assert code == 2
    assert "'no-equals' is not KEY=VALUE" in err


def test_delete_by_id_status_and_query_with_a_dry_run_first(
    sweep: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(store_of(sweep), readonly=True) as store:
        runs = store.runs()
    first = runs[0]
    code, out, _ = cli(capsys, "delete", first.run_id, "--dry-run")
    assert code == 0
    assert out.startswith("would delete 1 run of 6")
    assert len(load()) == 6
    code, out, _ = cli(capsys, "delete", "--where", "params.lr > 0.15 and metrics.acc < 0.72")
    assert out.startswith("deleted 2 runs of 6")
    assert sorted(load()["metrics.acc"]) == [0.73, 0.80, 0.82, 0.84]
    code, out, _ = cli(capsys, "delete", first.run_id)
    assert out.startswith("deleted 1 run of 4")
    assert not first.dir.exists()
    assert "say what to delete" in user_error(capsys, "delete")
    assert "no session 'nope'" in user_error(capsys, "delete", "--session", "nope")


BLOCKING = """
    import os
    import time
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent

    @pytest.mark.grid(i=[0, 1])
    def test_point(xp, i):
        (xp.dir / "alive.txt").write_text("yes")
        if i == 1:
            (HERE / "in-flight.tmp").write_text(xp.run_id)
            os.replace(HERE / "in-flight.tmp", HERE / "in-flight")
            deadline = time.monotonic() + 60
            while not (HERE / "release").exists():
                assert time.monotonic() < deadline, "never released"
                time.sleep(0.01)
        return i
"""


def test_delete_never_touches_a_run_in_flight(
    pytester: pytest.Pytester, procs: Processes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_block=BLOCKING)
    monkeypatch.chdir(pytester.path)
    running = procs.start("-p", "no:randomly")
    in_flight = procs.wait_for(pytester.path / "in-flight", running)
    with Store.open(store_of(pytester), readonly=True) as store:
        [done] = [run for run in store.runs() if run.run_id != in_flight]
        session = done.session_id
    code, out, _ = cli(capsys, "delete", "--session", session)
    assert code == 0
    assert out.startswith("left alone: 1 run in flight")
    assert "deleted 1 run of 2" in out
    code, out, _ = cli(capsys, "delete", in_flight)
    assert out.startswith("left alone: 1 run in flight")
    assert "nothing to delete" in out
    (pytester.path / "release").write_text("")
    code, output = procs.finish(running)
    assert code == 0, output
    with Store.open(store_of(pytester), readonly=True) as store:
        [run] = store.runs()
    assert (run.run_id, run.status) == (in_flight, "passed")
    assert (run.dir / "alive.txt").read_text() == "yes"
