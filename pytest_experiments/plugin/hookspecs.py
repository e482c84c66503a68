"""Hooks (callbacks) of pytest-experiments.

Implement them in a ``conftest.py`` or in any plugin. Run hooks are called in the
process that runs the experiment (an xdist worker under ``-n``), through the item's
``ihook``, so a ``conftest.py`` hook applies to the experiments of its own directory
only. Session hooks are called once, in the controlling process.

Example (``conftest.py``)::

    def pytest_experiments_run_end(run):
        run.metadata["gpu"] = "none"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_experiments.run import ExperimentSession, Run, SessionSummary


@pytest.hookspec
def pytest_experiments_run_start(run: Run) -> None:
    """Called before an experiment's body runs (after the run is written as ``running``).

    ``run`` exposes ``id``, ``node_id``, ``experiment``, ``params``, ``dir`` (created on
    first use) and a mutable ``metadata`` dict, which is stored when the run ends. An
    exception raised here makes the run an ``error``.
    """


@pytest.hookspec
def pytest_experiments_run_end(run: Run) -> None:
    """Called once the run's outcome is known, before the run is stored.

    ``run.status``, ``run.metrics``, ``run.result`` and the captured ``run.stdout`` /
    ``run.stderr`` are set; changes made to ``run.metadata`` (and files written to
    ``run.dir``) are kept with the run.
    """


@pytest.hookspec
def pytest_experiments_run_interrupt(run: Run) -> None:
    """Called when Ctrl-C (SIGINT) or SIGTERM (what a scheduler sends at a time limit) stops a
    running experiment, before the run is stored as ``interrupted``: write a checkpoint here.

    Called in the process that runs the experiment (under xdist: the worker; SIGTERM to the
    process group, or Ctrl-C at the terminal, reaches every worker), while the body is cut short
    at whatever line it was. ``run.dir`` is the run's folder; ``run.metrics``, ``run.params`` and
    ``run.metadata`` are as the body left them; ``run.pause_reason`` is None. Keep it short: a
    scheduler sends SIGKILL a grace period after SIGTERM (SLURM's ``KillWait``, 30 s by default).
    Then ``pytest_experiments_run_end`` is called and the run stored. An exception raised here is
    kept in ``run.metadata["interrupt_hook_error"]``; the run is stored all the same.

    With ``@pytest.mark.experiment(continue_runs=True)``, ``--xp-resume`` continues such a run
    (the same run and folder, ``xp.continued`` one more), so the body can load the checkpoint::

        # conftest.py
        def pytest_experiments_run_interrupt(run):
            run.metadata["stopped_at_step"] = run.metadata.get("step")
            (run.dir / "interrupted.txt").write_text("stopped by a signal")
    """


@pytest.hookspec
def pytest_experiments_session_start(session: ExperimentSession) -> None:
    """Called once per pytest invocation, in the controlling process, before any experiment runs.

    Without xdist it is called once collection has selected experiments to run; under xdist
    once the first worker reports an experiment (the metadata is then added to the session
    the workers are recording into), or at session start with ``--xp-resume`` /
    ``--xp-retry-failed`` / a comparison. A session that runs no experiment (a plain suite,
    ``--collect-only``, ``--xp-status``, nothing left to resume) never calls it (nor
    ``session_finish``), so it costs such sessions nothing.

    Add what is the same for every run of the session to ``session.metadata`` (it is
    collected once, not per run): the built-in collectors store git state, host,
    package versions and the command line there.
    """


@pytest.hookspec
def pytest_experiments_session_finish(session: ExperimentSession, summary: SessionSummary) -> None:
    """Called once at the end of the invocation, in the controlling process, when
    ``session_start`` was called: after every other plugin's ``pytest_sessionfinish``
    and the terminal summary, also when a second Ctrl-C cut xdist's shutdown short.

    ``summary.counts`` holds the number of runs the session recorded, by status, and
    ``summary.exitstatus`` the exit status pytest returns.
    """
