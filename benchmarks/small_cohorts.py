"""Small cohorts (issue 18): the profile's adaptive share of epsilon against the fixed split, at a few hundred people.

Builds a fake demo corpus of ``--n`` records (and a 2,000-record test corpus from another seed), keeps the tabular
columns, and fits with the default config at ``--epsilon`` under two schemas: the newcomer's (nothing declared
public, as ``privsynth init`` writes it) and the demo's declared codebook; each with the profile's share adaptive
(the default) and fixed. Measures on 2,000 sampled records: the share of ``__other__`` in sex, diagnosis and
insurance; mean and std of age, wbc and bmi against the test corpus (or "left out" for a column the model does
not generate: ``Synthesizer.skipped_``) and how many columns were left out;
TSTR accuracy of a gradient-boosted classifier predicting the diagnosis from the numbers (TRTR: the same
classifier trained on the real records).

    python benchmarks/small_cohorts.py [--n 300] [--epsilon 8]

Prints one table and writes benchmarks/results/small_cohorts.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from _common import environment, print_table, write_json
from sklearn.ensemble import HistGradientBoostingClassifier

from privsynth.config import FitConfig
from privsynth.data.corpus import read_corpus
from privsynth.data.demo import write_demo_corpus
from privsynth.privacy.store import LedgerStore
from privsynth.synthesizer import Synthesizer

FEATURES = ["age", "bmi", "systolic_bp", "glucose", "wbc", "length_of_stay"]


def tabular_copy(source: Path, target: Path, *, newcomer: bool) -> Path:
    """The corpus without its text and image columns; ``newcomer`` drops every declared domain and range."""
    shutil.copytree(source, target)
    schema = yaml.safe_load((target / "schema.yaml").read_text())
    for column in ("note", "scan"):
        schema["columns"].pop(column)
    if newcomer:
        for spec in schema["columns"].values():
            for key in ("domain", "bounds", "date_range"):
                spec.pop(key, None)
    (target / "schema.yaml").write_text(yaml.safe_dump(schema))
    table = target / schema["table"]
    pd.read_parquet(table).drop(columns=["note", "scan"]).to_parquet(table, index=False)
    shutil.rmtree(target / "images", ignore_errors=True)
    return target


def accuracy(train: pd.DataFrame, test: pd.DataFrame) -> float:
    """TSTR accuracy on the features the synthetic set has (a column the fit left out is missing for everyone)."""
    features = [f for f in FEATURES if f in train.columns]
    train, test = train.dropna(subset=features), test.dropna(subset=FEATURES)
    model = HistGradientBoostingClassifier(max_iter=100).fit(train[features].astype(float), train["diagnosis"])
    return float((model.predict(test[features].astype(float)) == test["diagnosis"].astype(str)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--epsilon", type=float, default=8.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        write_demo_corpus(tmp / "train", n=args.n, seed=5)
        write_demo_corpus(tmp / "test", n=2000, seed=6)
        test = read_corpus(tabular_copy(tmp / "test", tmp / "test-tab", newcomer=False)).records
        for newcomer in (True, False):
            data = read_corpus(tabular_copy(tmp / "train", tmp / f"train-{newcomer}", newcomer=newcomer))
            for adaptive in (False, True):
                base = FitConfig()
                config = base.model_copy(
                    update={
                        "holdout_fraction": 0.0,
                        "profile": base.profile.model_copy(update={"adaptive_share": adaptive}),
                    }
                )
                start = time.perf_counter()
                synth = Synthesizer(config).fit(data, epsilon=args.epsilon, store=LedgerStore(tmp / "ledger.sqlite"))
                seconds = time.perf_counter() - start
                sampled = synth.sample(2000, seed=1)
                assert synth.budget_ is not None
                profile_share = next(s.share for s in synth.budget_.stages if s.stage == "profile")
                row: dict[str, object] = {
                    "schema": "newcomer" if newcomer else "declared",
                    "profile share": "adaptive" if adaptive else "fixed",
                    "share": round(profile_share, 3),
                    "fit s": round(seconds),
                }
                for column in ("sex", "diagnosis", "insurance"):
                    row[f"{column} other"] = round(float((sampled[column].astype(str) == "__other__").mean()), 3)
                for column in ("age", "wbc", "bmi"):
                    left_out = column not in sampled.columns  # its DP range was never seen: not generated
                    values = None if left_out else sampled[column].astype(float)
                    row[f"{column} mean"] = "left out" if values is None else round(float(values.mean()), 3)
                    row[f"{column} std"] = "left out" if values is None else round(float(values.std()), 3)
                row["left out"] = len(synth.skipped_)
                row["tstr acc"] = round(accuracy(sampled, test), 3)
                rows.append(row)
                print(row, flush=True)
        real = {"schema": "real (test corpus)", "profile share": "", "share": None, "fit s": None}
        for column in ("age", "wbc", "bmi"):
            real[f"{column} mean"] = round(float(test[column].astype(float).mean()), 3)
            real[f"{column} std"] = round(float(test[column].astype(float).std()), 3)
        real["tstr acc"] = round(accuracy(data.records, test), 3)
        rows.append(real)
    columns = list(rows[0])
    print_table(rows, columns)
    write_json("small_cohorts", {"environment": environment(), "n": args.n, "epsilon": args.epsilon, "rows": rows})


if __name__ == "__main__":
    main()
