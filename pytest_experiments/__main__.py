"""``python -m pytest_experiments``: the ``pytest-experiments`` command line."""

from pytest_experiments.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
