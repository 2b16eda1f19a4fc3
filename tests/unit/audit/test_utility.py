"""SDMetrics' column-pair trends as the audit reports them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from privsynth.audit.utility import sdmetrics_quality
from privsynth.data.schema import schema_from_dict

pytest.importorskip("sdmetrics", reason="sdmetrics (an optional extra) is not installed")

SCHEMA = schema_from_dict(
    {
        "table": "records.parquet",
        "key": "id",
        "columns": {
            "id": {"kind": "key"},
            "group": {"kind": "categorical"},
            "lab": {"kind": "numerical"},
            "dose": {"kind": "numerical"},
        },
    },
    source="test",
)


def related(rng: np.random.Generator, n: int) -> pd.DataFrame:
    group = rng.choice(["a", "b", "c"], size=n)
    lab = rng.normal(0, 1, n) + np.where(group == "a", 3.0, 0.0)
    return pd.DataFrame({"id": np.arange(n), "group": group, "lab": lab, "dose": lab * 2 + rng.normal(0, 1, n)})


def test_pair_trends_read_relations_on_the_real_bins_not_each_tables_range() -> None:
    rng = np.random.default_rng(0)
    real = related(rng, 3000)
    # the same relations, with the extreme 1 % of 'lab' pulled in (as a DP range that misses the tails does)
    narrow = related(rng, 3000)
    low, high = np.quantile(narrow["lab"], [0.005, 0.995])
    narrow["lab"] = narrow["lab"].clip(low, high)
    # the same columns with the relations cut (each column shuffled on its own)
    cut = narrow.copy()
    for name in ("group", "lab", "dose"):
        cut[name] = rng.permutation(cut[name].to_numpy())
    kept = sdmetrics_quality(real, narrow, SCHEMA)
    lost = sdmetrics_quality(real, cut, SCHEMA)
    assert kept is not None and lost is not None
    assert kept["Column Pair Trends"] > 0.9  # relations kept: the narrower range costs little
    assert kept["Column Pair Trends (own bins)"] < kept["Column Pair Trends"]  # sdmetrics 0.32's report: shifted bins
    assert lost["Column Pair Trends"] < 0.7  # relations lost: both see it
    assert lost["Column Pair Trends (own bins)"] < 0.7
    assert kept["overall"] == pytest.approx((kept["Column Shapes"] + kept["Column Pair Trends"]) / 2)
