"""Print the results of the store pytest uses from the current directory, one table per experiment.

python examples/show_results.py
"""

import pandas as pd

import pytest_experiments

results = pytest_experiments.load()
with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 50):
    for experiment, runs in results.groupby("experiment"):
        columns = ["status", "duration"] + [c for c in runs.columns if c.startswith(("params.", "metrics."))]
        table = runs.set_index(runs["node_id"].str.extract(r"\[(.*)\]$", expand=False).fillna(""))[columns]
        print(f"\n{experiment} ({len(runs)} runs)")
        print(table.dropna(axis="columns", how="all").sort_index().to_string())
