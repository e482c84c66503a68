"""A callback, written as a hook: every example run records the numpy version it used.

Hooks in a ``conftest.py`` apply to the experiments of its directory and below.
"""

import numpy as np


def pytest_experiments_run_end(run):
    run.metadata["numpy"] = np.__version__
