"""Benchmark: privsynth's DP tabular generator against the open DP leaders on UCI Adult.

    python benchmarks/tabular_adult.py --data ../shared/data/adult [--epsilons 1 10] [--methods ...] [--n 2000]

Adult (both files, missing rows and fnlwgt dropped) is split i.i.d.: train 50 %, holdout 25 %, oracle 25 %. The
oracle is a real sample never trained on: the floor of every metric. ``--n N`` trains on an i.i.d. sample of N
training rows (a small cohort) and compares with an oracle of N rows too; the holdout stays whole. Without
``--config``, full-size runs use ``configs/adult-benchmark.yaml`` and ``--n`` runs use privsynth's defaults
(what a newcomer gets). Every method gets the same public metadata
(the Adult codebook: category domains, integer ranges). Metrics on synthetic sets of train's size:

- mean 1-, 2-, 3-way marginal TVD (numbers in 10 train-quantile bins, top-10 categories + other);
- TSTR AUC: HistGradientBoosting trained on synthetic data predicting income, tested on the holdout;
- DCR share against the holdout (train subsampled to holdout size; ideal 0.5) and exact copies of train rows,
  beside the oracle's own rate;
- fit seconds and peak memory; and sampling 1,000,000 rows (privsynth).

Anchors (each in its own virtual environment under .bench/, created on first use): SDV GaussianCopula without
DP (utility reference), smartnoise-synth MST and AIM with all columns categorical on public bins, mostlyai-engine
TabularARGN with DP. One table is printed and JSON written to benchmarks/results/tabular_adult.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
import argparse
import json
import subprocess
import tempfile
import time
import tracemalloc

import numpy as np
import pandas as pd
from _common import print_table, write_json
from adult_data import BINS, CATEGORIES, RANGES, TARGET, load_adult, schema_dict, split
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from privsynth.audit.discretize import Discretizer
from privsynth.audit.fidelity import marginal_tvd
from privsynth.audit.memorization import RowEncoder, dcr_share
from privsynth.config import FitConfig, load_config
from privsynth.data.corpus import Corpus
from privsynth.data.schema import Schema, schema_from_dict
from privsynth.synthesizer import Synthesizer

ROOT = _HERE.parent
VENVS = {
    "smartnoise": ["torch==2.14.1", "smartnoise-synth"],
    "sdv": ["torch==2.14.1", "sdv"],
    "mostlyai": ["torch==2.13.0", "mostlyai-engine", "transformers>=5.5.3"],
}


def venv_python(name: str) -> Path:
    """Python of an anchor's venv under .bench/, created on first use."""
    folder = ROOT / ".bench" / name
    python = folder / "bin" / "python"
    if not python.exists():
        print(f"creating .bench/{name} (first run only)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *VENVS[name]], check=True)
        if name == "mostlyai":
            subprocess.run(
                [str(python), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio"], check=False
            )
    return python


def to_corpus(frame: pd.DataFrame, schema: Schema) -> Corpus:
    df = frame.copy()
    df.insert(0, "id", [str(i) for i in range(len(df))])
    for name in RANGES:
        df[name] = df[name].astype("Int64")
    for name in CATEGORIES:
        df[name] = df[name].astype(object)
    return Corpus(records=df, schema=schema, root=Path())


def encode_codes(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every column as integer codes on public bins (for MST/AIM)."""
    codes, cards = {}, {}
    for name in frame.columns:
        if name in CATEGORIES:
            index = {c: i for i, c in enumerate(CATEGORIES[name])}
            codes[name] = frame[name].map(index).astype(int)
            cards[name] = len(index)
        else:
            edges = np.asarray(BINS[name])
            codes[name] = np.clip(np.searchsorted(edges, frame[name].to_numpy(), side="right") - 1, 0, len(edges) - 2)
            cards[name] = len(edges) - 1
    return pd.DataFrame(codes), cards


def decode_codes(codes: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Codes back to values: categories by name, numbers uniformly within their public bin."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in codes.columns:
        c = codes[name].to_numpy().astype(int)
        if name in CATEGORIES:
            out[name] = np.asarray(CATEGORIES[name], dtype=object)[np.clip(c, 0, len(CATEGORIES[name]) - 1)]
        else:
            edges = np.asarray(BINS[name], dtype=float)
            c = np.clip(c, 0, len(edges) - 2)
            low, high = np.ceil(edges[c]), np.floor(edges[c + 1] - 1e-9)
            values = np.floor(low + rng.random(len(c)) * (high - low + 1))  # a whole number inside the bin
            out[name] = np.clip(values, *RANGES[name]).astype(int)
    return pd.DataFrame(out)


def anchor_args(epsilon: float, n: int, seed: int, out: Path) -> list[str]:
    """The arguments every DP anchor runner takes: budget, rows to sample, seed and output file."""
    return ["--epsilon", str(epsilon), "--delta", "1e-5", "--n", str(n), "--seed", str(seed), "--out", str(out)]


def run_anchor(venv: str, script: str, args: list[str]) -> dict[str, float]:
    python = venv_python(venv)
    proc = subprocess.run(
        [str(python), str(_HERE / "anchors" / script), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Evaluator:
    """Metrics against the real splits (computed outside any privacy guarantee: this is a benchmark)."""

    def __init__(self, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema) -> None:
        self.train, self.holdout, self.schema = train, holdout, schema
        self.disc = Discretizer().fit(train, schema)
        self.real_codes = self.disc.transform(train)
        self.rows = RowEncoder().fit(train, schema)
        self.train_x = self.rows.transform(train)
        self.holdout_x = self.rows.transform(holdout)

    def tstr_auc(self, synthetic: pd.DataFrame) -> float:
        """HistGradientBoosting trained on synthetic rows, AUC on the real holdout."""
        cats = list(CATEGORIES.keys() - {TARGET})

        def features(frame: pd.DataFrame) -> pd.DataFrame:
            x = frame.drop(columns=[TARGET]).copy()
            for c in cats:
                x[c] = pd.Categorical(x[c], categories=CATEGORIES[c])
            for c in RANGES:
                x[c] = x[c].astype(float)
            return x

        y = (synthetic[TARGET] == ">50K").astype(int)
        if y.nunique() < 2:
            return 0.5
        model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
        model.fit(features(synthetic), y)
        truth = (self.holdout[TARGET] == ">50K").astype(int)
        return float(roc_auc_score(truth, model.predict_proba(features(self.holdout))[:, 1]))

    def __call__(self, synthetic: pd.DataFrame) -> dict[str, float]:
        """Every metric of one synthetic table."""
        codes = self.disc.transform(synthetic)
        dcr = dcr_share(self.train_x, self.holdout_x, self.rows.transform(synthetic), seed=0, bootstrap=200)
        return {
            "tvd1": marginal_tvd(self.real_codes, codes, self.disc, 1),
            "tvd2": marginal_tvd(self.real_codes, codes, self.disc, 2),
            "tvd3": marginal_tvd(self.real_codes, codes, self.disc, 3),
            "tstr_auc": self.tstr_auc(synthetic),
            "dcr_share": dcr.share,
            "dcr_low": dcr.low,
            "dcr_high": dcr.high,
            "exact_train": dcr.identical_train,
            "exact_holdout": dcr.identical_holdout,
        }


def fit_privsynth(
    train: pd.DataFrame, schema: Schema, epsilon: float, seed: int, config: FitConfig, sample_million: bool
) -> tuple[pd.DataFrame, dict[str, float]]:
    tracemalloc.start()
    start = time.perf_counter()
    # the fit's noise is fresh OS entropy every run; the seed only drives sampling
    synth = Synthesizer(config).fit(to_corpus(train, schema), epsilon=epsilon, delta=1e-5)
    fit_seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sample = synth.sample(len(train), seed=seed + 1)
    info = {"fit_seconds": fit_seconds, "peak_mb": peak / 2**20, "epsilon_spent": synth.ledger_.epsilon}
    if sample_million:
        start = time.perf_counter()
        synth.sample(1_000_000, seed=seed + 2)
        info["sample_1m_seconds"] = time.perf_counter() - start
    return sample.drop(columns=["id"]), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "adult")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--methods", nargs="+", default=["privsynth", "sdv", "mst", "aim", "mostlyai"])
    parser.add_argument(
        "--config", type=Path, default=None, help="Fit config (default: adult-benchmark.yaml; defaults with --n)."
    )
    parser.add_argument("--n", type=int, default=None, help="Train on an i.i.d. sample of N training rows.")
    parser.add_argument("--repeats", type=int, default=1, help="Fits per method and epsilon (the table shows means).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-million", action="store_true", help="Skip timing 1,000,000 sampled rows.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    data = load_adult(args.data)
    train, holdout, oracle = split(data, args.seed)
    if args.n is not None:
        if not 50 <= args.n <= len(train):
            raise SystemExit(f"--n must be between 50 and {len(train)}")
        train = train.sample(n=args.n, random_state=args.seed).reset_index(drop=True)
        oracle = oracle.sample(n=args.n, random_state=args.seed + 1).reset_index(drop=True)
    if args.config is None and args.n is None:
        args.config = ROOT / "configs" / "adult-benchmark.yaml"
    schema = schema_from_dict(schema_dict(), source="adult codebook")
    evaluate = Evaluator(train, holdout, schema)
    config = load_config(args.config)
    print(f"Adult: {len(data)} rows -> train {len(train)}, holdout {len(holdout)}, oracle {len(oracle)}")
    rows: list[dict[str, object]] = [{"method": "oracle (real, unseen)", "epsilon": None, **evaluate(oracle)}]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train.to_csv(folder / "train.csv", index=False)
        codes, cards = encode_codes(train)
        codes.to_csv(folder / "codes.csv", index=False)
        (folder / "cards.json").write_text(json.dumps(cards))
        if "sdv" in args.methods:
            info = run_anchor(
                "sdv",
                "sdv_runner.py",
                [
                    "--train",
                    str(folder / "train.csv"),
                    "--n",
                    str(len(train)),
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(folder / "sdv.csv"),
                ],
            )
            synthetic = pd.read_csv(folder / "sdv.csv")
            rows.append({"method": "SDV GaussianCopula (no DP)", "epsilon": None, **evaluate(synthetic), **info})
            print(rows[-1], flush=True)
        runs: list[dict[str, object]] = []
        for epsilon, method, repeat in (
            (e, m, r) for e in args.epsilons for m in args.methods for r in range(args.repeats) if m != "sdv"
        ):
            seed = args.seed + 1000 * repeat
            print(f"running {method} at epsilon {epsilon} (repeat {repeat + 1} of {args.repeats})...", flush=True)
            if method == "privsynth":
                synthetic, info = fit_privsynth(
                    train,
                    schema,
                    epsilon,
                    seed,
                    config,
                    sample_million=not args.skip_million and epsilon == max(args.epsilons) and repeat == 0,
                )
            elif method in ("mst", "aim"):
                out = folder / f"{method}.csv"
                info = run_anchor(
                    "smartnoise",
                    "smartnoise_runner.py",
                    [
                        "--train",
                        str(folder / "codes.csv"),
                        "--cards",
                        str(folder / "cards.json"),
                        "--method",
                        method,
                        *anchor_args(epsilon, len(train), seed, out),
                    ],
                )
                synthetic = decode_codes(pd.read_csv(out), seed)
            elif method == "mostlyai":
                out = folder / "mostlyai.csv"
                info = run_anchor(
                    "mostlyai",
                    "mostlyai_runner.py",
                    ["--train", str(folder / "train.csv"), *anchor_args(epsilon, len(train), seed, out)],
                )
                synthetic = pd.read_csv(out)
            else:
                raise SystemExit(f"unknown method {method}")
            runs.append({"method": method, "epsilon": epsilon, "repeat": repeat, **evaluate(synthetic), **info})
            print(runs[-1], flush=True)
        rows.extend(mean_rows(runs))
    columns = [
        "method",
        "epsilon",
        "repeats",
        "tvd1",
        "tvd2",
        "tvd2_sd",
        "tvd3",
        "tstr_auc",
        "tstr_auc_sd",
        "dcr_share",
        "exact_train",
        "exact_holdout",
        "fit_seconds",
        "peak_mb",
        "peak_rss_mb",
        "sample_1m_seconds",
    ]
    print()
    print_table(rows, columns)
    verdicts = targets(rows, args.epsilons, small=args.n is not None)
    for line in verdicts:
        print(line)
    name = "tabular_adult" if args.n is None else f"tabular_adult_n{args.n}"
    write_json(
        name, {"rows": rows, "targets": verdicts, "n": args.n, "config": config.model_dump(mode="json")}, args.out
    )


def mean_rows(runs: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per (method, epsilon): the mean of every number over repeats, with ``repeats`` and TVD/AUC spread."""
    out: list[dict[str, object]] = []
    for key in dict.fromkeys((r["method"], r["epsilon"]) for r in runs):
        group = [r for r in runs if (r["method"], r["epsilon"]) == key]
        row: dict[str, object] = {"method": key[0], "epsilon": key[1], "repeats": len(group)}
        for name in group[0]:
            values = [r.get(name) for r in group]
            if name not in ("method", "epsilon", "repeat") and all(isinstance(v, int | float) for v in values):
                row[name] = float(np.mean(values))  # type: ignore[arg-type]
        for name in ("tvd2", "tstr_auc"):
            row[f"{name}_sd"] = float(np.std([float(r[name]) for r in group]))  # type: ignore[arg-type]
        out.append(row)
    return out


def targets(rows: list[dict[str, object]], epsilons: list[float], *, small: bool = False) -> list[str]:
    """The issues' targets, checked on this run's numbers (``small``: a ``--n`` cohort, issue 18's targets)."""
    out = []
    for eps in epsilons:
        ours = next((r for r in rows if r["method"] == "privsynth" and r["epsilon"] == eps), None)
        anchors = [r for r in rows if r["epsilon"] == eps and r["method"] in ("mst", "aim", "mostlyai")]
        if ours is None or not anchors:
            continue
        best_tvd = min(float(r["tvd2"]) for r in anchors)  # type: ignore[arg-type]
        best_auc = max(float(r["tstr_auc"]) for r in anchors)  # type: ignore[arg-type]
        ratio = float(ours["tvd2"]) / best_tvd  # type: ignore[arg-type]
        need = 0.8 if eps >= 10 and not small else 1.0
        out.append(
            f"epsilon {eps:g}: 2-way TVD ratio to best DP anchor {ratio:.2f} (target <= {need}) "
            f"{'met' if ratio <= need else 'MISSED'}"
        )
        if eps >= 10 or small:
            gap = float(ours["tstr_auc"]) - best_auc  # type: ignore[arg-type]
            out.append(
                f"epsilon {eps:g}: TSTR AUC {float(ours['tstr_auc']):.4f} vs best anchor {best_auc:.4f} "  # type: ignore[arg-type]
                f"(gap {gap:+.4f}, target >= -0.01) {'met' if gap >= -0.01 else 'MISSED'}"
            )
        share = float(ours["dcr_share"])  # type: ignore[arg-type]
        out.append(
            f"epsilon {eps:g}: DCR share {share:.3f} (target 0.47-0.53) {'met' if 0.47 <= share <= 0.53 else 'MISSED'}"
        )
        fit = ours.get("fit_seconds")
        if eps >= 10 and fit is not None and not small:
            out.append(
                f"epsilon {eps:g}: fit {float(fit):.0f} s (target <= 300) "  # type: ignore[arg-type]
                f"{'met' if float(fit) <= 300 else 'MISSED'}"
            )  # type: ignore[arg-type]
        if ours.get("sample_1m_seconds") is not None:
            s = float(ours["sample_1m_seconds"])  # type: ignore[arg-type]
            out.append(f"sampling 1,000,000 rows: {s:.1f} s (target <= 60) {'met' if s <= 60 else 'MISSED'}")
    return out


if __name__ == "__main__":
    main()
