"""Conditional grids, as PyExperimenter users write them.

``where=`` filters a grid's cartesian product, and several ``grid`` marks on one
function give the union of their grids: here a budget on network size, plus a
separate, smaller grid for the linear baseline (which has no width).

    pytest examples/conditional
"""

import pytest


def parameter_count(depth, width, inputs=16):
    if depth == 0:
        return inputs + 1
    return (inputs + 1) * width + (depth - 1) * (width + 1) * width + width + 1


@pytest.mark.grid(depth=[1, 2, 3], width=[16, 64, 256], where=lambda depth, width: depth * width <= 256)
@pytest.mark.grid(depth=[0], width=[None])
def test_network_size(depth, width):
    return {"parameters": parameter_count(depth, width)}
