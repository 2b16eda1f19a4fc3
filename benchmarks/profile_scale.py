"""Benchmark: DP profiling of 1,000,000 rows x 20 mixed columns (target <= 60 s on 2 cores).

    python benchmarks/profile_scale.py [--rows 1000000] [--epsilon 1.0] [--out results/profile_scale.json]

The table is synthetic (generated here, no real data needed): 6 numerical (3 with declared bounds), 6
categorical (3 with declared domains, one with 5,000 distinct values), 3 datetime, 3 boolean, 2 short text.
The non-private exact profile of the same rows is timed in the same run as the reference (ratio printed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from _common import measure, peak_rss_mb, print_table, write_json

from privsynth.data.corpus import Corpus
from privsynth.data.schema import schema_from_dict
from privsynth.privacy.randomness import Streams
from privsynth.profile.profiler import exact_profile, plan_queries, profile_corpus


def build(rows: int, seed: int) -> Corpus:
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {"id": np.arange(rows).astype(str)}
    columns: dict[str, dict[str, object]] = {"id": {"kind": "key"}}
    for i in range(6):
        values = rng.lognormal(3 + i, 0.7, rows)
        values[rng.random(rows) < 0.03] = np.nan
        data[f"num{i}"] = np.round(values) if i % 2 else values
        columns[f"num{i}"] = {"kind": "numerical", "integer": bool(i % 2)}
        if i < 3:
            columns[f"num{i}"]["bounds"] = [0, float(np.exp(3 + i) * 40)]
    for i in range(6):
        k = 5000 if i == 5 else 8 * (i + 1)
        labels = np.array([f"c{i}_{j}" for j in range(k)], dtype=object)
        probs = 1.0 / np.arange(1, k + 1)
        data[f"cat{i}"] = labels[rng.choice(k, size=rows, p=probs / probs.sum())]
        columns[f"cat{i}"] = {"kind": "categorical"}
        if i < 3:
            columns[f"cat{i}"]["domain"] = list(labels)
    for i in range(3):
        days = rng.integers(0, 3650, rows).astype("timedelta64[D]")
        data[f"date{i}"] = (np.datetime64("2015-01-01") + days).astype("datetime64[ns]")
        columns[f"date{i}"] = {"kind": "datetime"}
    for i in range(3):
        data[f"flag{i}"] = pd.array(rng.random(rows) < 0.2 + 0.2 * i, dtype="boolean")
        columns[f"flag{i}"] = {"kind": "boolean"}
    words = np.array(["fever", "cough", "stable", "pain", "review", "normal", "follow-up", "rest"], dtype=object)
    for i in range(2):
        picks = words[rng.integers(0, len(words), size=(rows, 3))]
        data[f"text{i}"] = pd.Series([" ".join(p) for p in picks], dtype=object)
        columns[f"text{i}"] = {"kind": "text"}
    schema = schema_from_dict({"key": "id", "columns": columns}, source="benchmark")
    frame = pd.DataFrame(data)
    for name, spec in columns.items():
        if spec["kind"] == "categorical":
            frame[name] = frame[name].astype(object)
    return Corpus(records=frame, schema=schema, root=Path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    corpus = build(args.rows, args.seed)
    columns = len(corpus.schema.columns) - 1
    print(f"{args.rows} rows x {columns} columns, {plan_queries(corpus.schema).queries} DP queries")
    with measure() as dp:
        profile = profile_corpus(corpus, epsilon=args.epsilon, delta=1e-7, streams=Streams.private())
    with measure() as exact:
        exact_profile(corpus)
    rows = [
        {
            "method": "privsynth DP profile",
            "seconds": dp.seconds,
            "peak_traced_mb": dp.peak_traced_mb,
            "epsilon": profile.ledger["epsilon"] if profile.ledger else None,
        },
        {
            "method": "exact profile (no privacy, reference)",
            "seconds": exact.seconds,
            "peak_traced_mb": exact.peak_traced_mb,
            "epsilon": None,
        },
    ]
    print_table(rows, ["method", "seconds", "peak_traced_mb", "epsilon"])
    print(
        f"DP / exact time ratio: {dp.seconds / exact.seconds:.2f}; target: DP <= 60 s "
        f"({'met' if dp.seconds <= 60 else 'MISSED'}); process peak RSS {peak_rss_mb():.0f} MB"
    )
    write_json(
        "profile_scale",
        {
            "rows": args.rows,
            "columns": columns,
            "results": rows,
            "peak_rss_mb": peak_rss_mb(),
            "target_seconds": 60,
            "met": dp.seconds <= 60,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
