"""`privsynth sample --engine ray` of 10 million records (issue 21): identical for 1 and 2 workers, memory, time.

Fits a tabular model on UCI Adult's training rows (``configs/adult-benchmark.yaml`` with ``--epochs`` passes: the
model's quality does not matter here), saves it, then runs the real command in a child process for each engine:

    privsynth sample MODEL --n ROWS -o OUT --seed 7                      # local: shards one after the other
    privsynth sample MODEL --n ROWS -o OUT --seed 7 --engine ray --workers N

Reported per run: wall time, records per second, the command's peak RSS (the driver), the peak RSS of each Ray
worker process (sampled every 0.5 s with psutil), the number of part files, and whether every part equals the
local run's part (Arrow tables compared column by column) and the registry parts too.

    python benchmarks/sample_scale.py [--rows 10000000] [--workers 1 2] [--epochs 2]

Prints one table and writes benchmarks/results/sample_scale.json.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from _common import WorkerMemory, print_table, write_json
from adult_data import load_adult, schema_dict, split
from tabular_adult import to_corpus

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "privsynth"


def run_sample(model: Path, out: Path, rows: int, workers: int | None) -> dict[str, Any]:
    command = [str(CLI), "sample", str(model), "--n", str(rows), "-o", str(out), "--seed", "7"]
    if workers is not None:
        command += ["--engine", "ray", "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    with WorkerMemory() as memory:
        subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peaks = sorted(memory.peaks.values(), reverse=True)
    return {
        "seconds": seconds,
        "records_per_second": rows / seconds,
        # RUSAGE_CHILDREN is the largest child so far: only meaningful when it grew (runs go smallest first)
        "driver_peak_rss_mb": after / 1024 if after > before else None,
        "worker_peak_rss_mb": [round(p) for p in peaks[: workers or 0]],
    }


def same_parts(a: Path, b: Path, sub: str) -> bool:
    left, right = sorted((a / sub).glob("*.parquet")), sorted((b / sub).glob("*.parquet"))
    if [p.name for p in left] != [p.name for p in right]:
        return False
    return all(pq.read_table(x).equals(pq.read_table(y)) for x, y in zip(left, right, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "adult")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--skip-local", action="store_true", help="Compare the Ray runs with each other only.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from privsynth.config import load_config
    from privsynth.data.schema import schema_from_dict
    from privsynth.privacy.store import LedgerStore
    from privsynth.synthesizer import Synthesizer

    train, _, _ = split(load_adult(args.data), 0)
    schema = schema_from_dict(schema_dict(), source="adult codebook")
    config = load_config(ROOT / "configs" / "adult-benchmark.yaml")
    optim = config.tabular.optim.model_copy(update={"epochs": args.epochs})
    config = config.model_copy(update={"tabular": config.tabular.model_copy(update={"optim": optim})})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        synth = Synthesizer(config).fit(
            to_corpus(train, schema), epsilon=8.0, delta=1e-5, store=LedgerStore(folder / "ledger.sqlite")
        )
        model = synth.save(folder / "model")
        del synth
        runs: list[tuple[str, int | None]] = [] if args.skip_local else [("local", None)]
        runs += [(f"ray {w}", w) for w in args.workers]
        reference: Path | None = None
        for name, workers in runs:
            out = folder / name.replace(" ", "")
            info = run_sample(model, out, args.rows, workers)
            parts = len(list((out / "records.parquet").glob("*.parquet")))
            if reference is None:
                reference, equal = out, None
            else:
                equal = same_parts(reference, out, "records.parquet") and same_parts(
                    reference, out, "internal/surrogates.parquet"
                )
            rows.append({"engine": name, "rows": args.rows, "parts": parts, **info, "equal_to_first": equal})
            print_table(rows[-1:], list(rows[-1]))
            if reference != out:
                import shutil

                shutil.rmtree(out)
    print()
    print_table(rows, list(rows[0]))
    write_json("sample_scale", {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
