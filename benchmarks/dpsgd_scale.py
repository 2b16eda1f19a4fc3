"""DP-SGD across workers (issue 21): the tabular fit on UCI Adult, in this process and on a local Ray cluster.

One run fits privsynth's tabular model on Adult's 22,611 training rows (``configs/adult-benchmark.yaml``, with
``--epochs`` passes to keep the run short) at epsilon ``--epsilon``:

- ``local``: the plain single-process DP-SGD (the anchor);
- ``ray N``: the same fit with ``engine=RayEngine(workers=N)`` for each N in ``--workers``: every step's Poisson
  batch is split over N actors that return clipped gradient sums; the driver adds the noise once.

Reported per engine: the DP-SGD stage's time (first to last step, from the fit's progress reports), steps per
second (the first step, which starts the workers, is not counted there), the whole fit's time (with the
profile, the workers' start and the calibration), the ratios to local, whether the ledger equals the local
one, and the synthetic rows' 2-way TVD and TSTR AUC (the quality must not move: same mechanism, same noise).

The runs use the UNSAFE, test-only reproducible noise so every engine draws the same noise and the ledgers can
be compared entry by entry; the models are thrown away (never release a model fitted this way).

    python benchmarks/dpsgd_scale.py [--data ../shared/data/adult] [--workers 1 2] [--epochs 4] [--epsilon 8]

Prints one table and writes benchmarks/results/dpsgd_scale.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from _common import print_table, write_json
from adult_data import load_adult, schema_dict, split
from tabular_adult import Evaluator, to_corpus

from privsynth.config import load_config
from privsynth.data.schema import schema_from_dict
from privsynth.privacy.randomness import UNSAFE_ENV
from privsynth.privacy.store import LedgerStore
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]


class StageClock:
    """Times one progress label from its first report to its last."""

    def __init__(self, label: str) -> None:
        self.label, self.first, self.last, self.steps = label, 0.0, 0.0, 0

    def __call__(self, label: str, done: int, total: int) -> None:
        """A progress report: the first of this label starts the clock, each one moves its end."""
        if label != self.label:
            return
        now = time.perf_counter()
        if self.steps == 0:
            self.first = now
        self.last, self.steps = now, done

    @property
    def seconds(self) -> float:
        """From the first report to the last."""
        return self.last - self.first


def fit(config: Any, corpus: Any, epsilon: float, engine: Any, store: Path) -> tuple[Any, dict[str, float]]:
    clock = StageClock("tabular")
    start = time.perf_counter()
    synth = Synthesizer(config).fit(
        corpus, epsilon=epsilon, delta=1e-5, store=LedgerStore(store), source="adult", progress=clock, engine=engine
    )
    total = time.perf_counter() - start
    return synth, {
        "fit_seconds": total,
        "dpsgd_seconds": clock.seconds,
        "steps": clock.steps,
        "steps_per_second": (clock.steps - 1) / clock.seconds if clock.seconds > 0 else float("nan"),
    }


def ledger_state(synth: Any) -> dict[str, Any]:
    state = synth.ledger_.state_dict()
    for entry in state["entries"]:
        entry.pop("at", None)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "adult")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=float, default=4.0, help="Passes over the data (the config has 40).")
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ[UNSAFE_ENV] = "20261129"  # the same noise for every engine; these models are thrown away

    data = load_adult(args.data)
    train, holdout, _ = split(data, 0)
    schema = schema_from_dict(schema_dict(), source="adult codebook")
    corpus = to_corpus(train, schema)
    config = load_config(ROOT / "configs" / "adult-benchmark.yaml")
    optim = config.tabular.optim.model_copy(update={"epochs": args.epochs})
    config = config.model_copy(update={"tabular": config.tabular.model_copy(update={"optim": optim})})
    evaluate = Evaluator(train, holdout, schema)
    print(f"Adult: {len(train)} training rows, {args.epochs:g} epochs at epsilon {args.epsilon:g}")

    import tempfile

    from privsynth.engine.ray_engine import RayEngine

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        synth, info = fit(config, corpus, args.epsilon, None, Path(tmp) / "local.sqlite")
        reference = ledger_state(synth)
        quality = evaluate(synth.sample(len(train), seed=1).drop(columns=["id"]))
        local = {"engine": "local", **info, "tvd2": quality["tvd2"], "tstr_auc": quality["tstr_auc"]}
        rows.append(local | {"ratio": 1.0, "fit_ratio": 1.0, "ledger_equal": True})
        print_table(rows, list(rows[0]))
        for workers in args.workers:
            start = time.perf_counter()
            engine = RayEngine(workers=workers)
            started = time.perf_counter() - start
            try:
                synth, info = fit(config, corpus, args.epsilon, engine, Path(tmp) / f"ray{workers}.sqlite")
            finally:
                engine.close()
            quality = evaluate(synth.sample(len(train), seed=1).drop(columns=["id"]))
            rows.append(
                {
                    "engine": f"ray {workers}",
                    **info,
                    "tvd2": quality["tvd2"],
                    "tstr_auc": quality["tstr_auc"],
                    "ratio": info["dpsgd_seconds"] / local["dpsgd_seconds"],
                    "fit_ratio": info["fit_seconds"] / local["fit_seconds"],
                    "ledger_equal": ledger_state(synth) == reference,
                    "cluster_start_seconds": started,
                }
            )
            print_table(rows[-1:], list(rows[-1]))
    columns = ["engine", "dpsgd_seconds", "steps", "steps_per_second", "ratio", "fit_seconds", "fit_ratio"]
    print()
    print_table(rows, [*columns, "ledger_equal", "tvd2", "tstr_auc"])
    write_json("dpsgd_scale", {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
