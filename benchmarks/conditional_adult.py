"""Benchmark: conditional sampling (``--where``) on Adult, by the tabular model's share of random column orders.

    python benchmarks/conditional_adult.py --n 2000 --epsilon 1 --variants default "ro0:random_order_share=0"

The tabular network is trained on the canonical column order and, for ``random_order_share`` of the records, on
random orders; conditional sampling puts the fixed columns first, which only random orders teach. Fewer random
orders leave more of the DP-SGD signal for the canonical order (what unconditional samples use) and less for
``--where``. For each variant and fit this prints, on a 2,000-row i.i.d. Adult training sample (codebook
declared, as in ``tabular_adult.py --n``):

- ``tstr_auc``: unconditional fidelity (HistGradientBoosting on synthetic rows, income AUC on the holdout);
- ``cond_tvd``: for each condition (income >50K, sex Female, age >= 60, marital status Never-married), the mean
  1-way TVD of every other column between ``sample(conditions=...)`` and the real training rows that meet the
  condition, averaged over conditions;
- ``filter_tvd``: the same for the unconditional sample's own rows that meet the condition (rejection sampling:
  needs no random orders) -- the anchor ``cond_tvd`` is compared with (``ratio`` = cond / filter). A condition
  the model cannot meet (``--where`` refuses it) scores 1.0 and is listed under ``failed``.

JSON goes to benchmarks/results/conditional_adult.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
import argparse

import numpy as np
import pandas as pd
from _common import print_table, write_json
from adult_data import load_adult, schema_dict, split
from tabular_adult import Evaluator, to_corpus

from privsynth.audit.discretize import Discretizer
from privsynth.conditions import parse_conditions
from privsynth.config import FitConfig
from privsynth.data.schema import schema_from_dict
from privsynth.errors import ConfigError
from privsynth.synthesizer import Synthesizer

CONDITIONS = ["income=>50K", "sex=Female", "age>=60", "marital_status=Never-married"]


def _mask(frame: pd.DataFrame, condition: str) -> pd.Series:
    if ">=" in condition:
        name, value = condition.split(">=")
        return frame[name].astype(float) >= float(value)
    name, value = condition.split("=", 1)
    return frame[name] == value


def one_way_tvd(real: pd.DataFrame, synthetic: pd.DataFrame, disc: Discretizer, skip: str) -> float:
    """Mean 1-way TVD over the coded columns other than ``skip``."""
    a, b = disc.transform(real), disc.transform(synthetic)
    scores = []
    for column in disc.columns:
        if column == skip:
            continue
        size = disc.cardinality(column)
        p = np.bincount(a[column].to_numpy(), minlength=size) / max(len(a), 1)
        q = np.bincount(b[column].to_numpy(), minlength=size) / max(len(b), 1)
        scores.append(0.5 * float(np.abs(p - q).sum()))
    return float(np.mean(scores))


def variant_config(spec: str) -> tuple[str, FitConfig]:
    """``name:key=value,key=value`` on the tabular section (``default``: privsynth's defaults)."""
    name, _, assignments = spec.partition(":")
    tabular: dict[str, object] = {}
    for item in filter(None, assignments.split(",")):
        key, value = item.split("=")
        tabular[key] = float(value) if "." in value or value.isdigit() else value
    return name, FitConfig.model_validate({"tabular": tabular} if tabular else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=_HERE.parent.parent / "shared" / "data" / "adult")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    train, holdout, _ = split(load_adult(args.data), args.seed)
    train = train.sample(n=args.n, random_state=args.seed).reset_index(drop=True)
    schema = schema_from_dict(schema_dict(), source="adult codebook")
    evaluate = Evaluator(train, holdout, schema)
    disc = Discretizer().fit(train, schema)
    runs: list[dict[str, object]] = []
    for spec in args.variants:
        name, config = variant_config(spec)
        for repeat in range(args.repeats):
            print(f"{name}: fit {repeat + 1} of {args.repeats}...", flush=True)
            synth = Synthesizer(config).fit(to_corpus(train, schema), epsilon=args.epsilon, delta=1e-5)
            free = synth.sample(args.n, seed=repeat).drop(columns=["id"])
            cond, filt, failed = [], [], []
            for condition in CONDITIONS:
                column = condition.split(">=")[0].split("=")[0]
                real = train[_mask(train, condition)]
                try:
                    fixed = synth.sample(args.n, conditions=parse_conditions([condition]), seed=repeat + 1)
                except ConfigError as exc:  # the model (almost) never draws it: the worst score, and say so
                    print(f"  {condition}: {exc}", flush=True)
                    failed.append(condition)
                    cond.append(1.0)
                else:
                    cond.append(one_way_tvd(real, fixed.drop(columns=["id"]), disc, column))
                kept = free[_mask(free, condition)]
                filt.append(one_way_tvd(real, kept, disc, column) if len(kept) else 1.0)
            runs.append(
                {
                    "variant": name,
                    "repeat": repeat,
                    "tstr_auc": evaluate.tstr_auc(free),
                    "cond_tvd": float(np.mean(cond)),
                    "filter_tvd": float(np.mean(filt)),
                    "failed": failed,
                }
            )
            print(runs[-1], flush=True)
    rows = []
    for spec in args.variants:
        name = spec.partition(":")[0]
        mine = pd.DataFrame([r for r in runs if r["variant"] == name])
        means = mine[["tstr_auc", "cond_tvd", "filter_tvd"]].mean()
        rows.append(
            {
                "variant": name,
                "fits": len(mine),
                **means.to_dict(),
                "ratio": means["cond_tvd"] / means["filter_tvd"],
                "auc_sd": float(mine["tstr_auc"].std()),
            }
        )
    print_table(rows, ["variant", "fits", "tstr_auc", "auc_sd", "cond_tvd", "filter_tvd", "ratio"])
    path = write_json(
        "conditional_adult",
        {"n": args.n, "epsilon": args.epsilon, "conditions": CONDITIONS, "runs": runs, "rows": rows},
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
