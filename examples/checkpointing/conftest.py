"""The interrupt hook: Ctrl-C or SIGTERM (a scheduler's time limit) stops a run in flight, and its
latest state is saved into its folder before it is stored as ``interrupted``. The experiment opts
in to being continued (``continue_runs=True``), so ``--xp-resume`` picks it up from there."""

import checkpoints


def pytest_experiments_run_interrupt(run):
    state = checkpoints.LIVE.pop(run.id, None)
    if state is not None:
        checkpoints.save(run.dir, state["epoch"], state["weights"])
        run.metadata["checkpoint_epoch"] = state["epoch"]
