"""``--xp-html FILE``: the HTML report written by the controller at the end of the session.

It shows the latest run of every grid point of the experiments the session ran (so a resumed
sweep's report holds the runs of earlier sessions too), through the same builder as
``pytest-experiments report``. A report that cannot be written is one line and exit status 1;
the runs are in the store whatever happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_experiments.store import Store, StoreError


class HtmlReport:
    """Controller side: writes the report once every run of the session has ended."""

    def __init__(self, path: Path, store_path: str | Path, session_id: str, artifacts: Path | None = None) -> None:
        self._path = path
        self._store_path = store_path
        #: A server store's folder of run folders (the report shows their artefacts).
        self._artifacts = artifacts
        self._session_id = session_id
        self._line: tuple[str, bool] | None = None  # (what to say, is it an error)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # Every run has ended by now (xdist's workers are down); the terminal summary comes after.
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return  # nothing ran
        try:
            count = self._write()
        except (OSError, StoreError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._line = (f"xp: error: could not write the HTML report {self._path}: {reason}", True)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        if count is not None:
            self._line = (f"xp: HTML report of {count} run{'' if count == 1 else 's'} written to {self._path}", False)

    def _write(self) -> int | None:
        """Write the report; the number of runs in it, None when the session recorded none."""
        from pytest_experiments.report import select_runs, write_report
        from pytest_experiments.store import store_exists

        if not store_exists(self._store_path):
            return None
        with Store.open(self._store_path, readonly=True, artifacts=self._artifacts) as store:
            ran = {f"{run.module}::{run.experiment}" for run in store.runs(session_id=self._session_id, history=True)}
            if not ran:
                return None
            records = select_runs(store, experiments=sorted(ran))
            write_report(self._path, store, records, title="Experiment report")
        return len(records)

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._line is not None:
            text, error = self._line
            terminalreporter.write_line(text, red=error)
