"""The simplest experiment: a grid of numbers, each run returning its square.

pytest examples/quickstart
python -c "import pytest_experiments as xp; print(xp.load())"
"""

import pytest


@pytest.mark.grid(x=[0, 1, 2, 3, 4])
def test_square(x):
    # The return value is the run's result; a number becomes the metric ``result``.
    return x * x
