"""Mean, spread and 95% interval of each metric over a group of runs (``pytest-experiments summary``).

Runs group by experiment and by every parameter except the ``over`` ones (``seed``): the runs
of a group differ only in those, so their spread is the noise. The interval is Student's t
(``mean ± t(0.975, n - 1) · s / √n``), the usual one for a handful of seeds. Its quantile comes
from a table for n - 1 ≤ 30 and a Cornish-Fisher expansion beyond (within 1e-4 of the exact
value), so no scipy is needed. NaN values are left out of a group (its ``n`` counts the others).
No pytest, no pandas.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from pytest_experiments.model import RunRecord
from pytest_experiments.values import canonical_json

# t(0.975, df) for df = 1..30.
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959963984540054


def t_quantile(df: int) -> float:
    """Student's t quantile at 0.975 for ``df`` degrees of freedom (at least 1)."""
    if df < 1:
        raise ValueError("a t quantile needs at least 1 degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Summary:
    """One metric of one group of runs."""

    module: str
    experiment: str
    #: The group's parameters (every parameter but the ``over`` ones).
    group: dict[str, Any]
    metric: str
    count: int
    mean: float
    #: Sample standard deviation (n - 1); None for a single value.
    std: float | None
    #: The 95% interval of the mean; None for a single value.
    low: float | None
    high: float | None


def summarise(
    records: Iterable[RunRecord], over: Collection[str], metrics: Collection[str] | None = None
) -> list[Summary]:
    """Per experiment, group of parameters (all but ``over``) and metric: count, mean, std and
    95% interval; in the order groups and metrics first appear in ``records``."""
    groups: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, list[float]]]] = {}
    for record in records:
        group = {name: value for name, value in record.params.items() if name not in over}
        key = (record.module, record.experiment, canonical_json(group))
        _, values = groups.setdefault(key, (group, {}))
        for metric, value in record.metrics.items():
            if metrics is None or metric in metrics:
                values.setdefault(metric, []).append(value)
    return [
        _summary(module, experiment, group, metric, [value for value in found if not math.isnan(value)])
        for (module, experiment, _), (group, values) in groups.items()
        for metric, found in values.items()
    ]


def _summary(module: str, experiment: str, group: dict[str, Any], metric: str, values: list[float]) -> Summary:
    count = len(values)
    if count == 0:
        return Summary(module, experiment, group, metric, 0, math.nan, None, None, None)
    mean = math.fsum(values) / count
    if count == 1:
        return Summary(module, experiment, group, metric, 1, mean, None, None, None)
    if any(math.isinf(value) for value in values):
        return Summary(module, experiment, group, metric, count, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (count - 1))
    half = t_quantile(count - 1) * std / math.sqrt(count)
    return Summary(module, experiment, group, metric, count, mean, std, mean - half, mean + half)
