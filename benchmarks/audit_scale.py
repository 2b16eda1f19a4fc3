"""Audit at scale (issue 5): memorization of 100k synthetic vs 100k train + 100k holdout rows, and PII throughput.

Rows: UCI Adult (`../shared/data/adult/`, 45k people, 14 columns), resampled to 300,000 rows with numbers
jittered inside their public ranges, split into train / holdout / "synthetic" of 100,000 each (the timing does
not depend on where the rows come from). Measured in one run:

- privsynth's memorization audit (ECDF/one-hot encoding, exact FAISS search, DCR share with 200 bootstrap
  resamples, identical matches, NNDR, near-copies): seconds (target <= 60 s on 2 cores) and peak memory;
- SDMetrics' DCROverfittingProtection on the same rows, the named anchor: seconds and the ratio, or its failure
  mode (it is run in a child process with a time limit);
- PII scan throughput over demo clinical notes with every recognizer (Presidio patterns, the HIPAA additions,
  the name dictionary): records/s (target >= 500).

    python benchmarks/audit_scale.py [--data ../shared/data/adult] [--rows 100000] [--sdmetrics-limit 900]
    python benchmarks/audit_scale.py --engine ray --workers 1,2 [--rows 100000] [--notes 3000] [--stages pii_scan]
        [--local-threads 1]

With ``--engine ray`` (issue 21) the same stages also run on a local Ray cluster for each worker count: the
memorization audit (sharded exact search), the PII scan (Ray Data map_batches, one Presidio per worker) and the
MiniLM embedding of the notes. Each stage's result is compared with the local one (equal, or the largest
difference) and its time is reported next to the local time (ratio ray / local; on one worker the ratio is the
engine's overhead). Cluster start-up is reported apart. ``--calls N`` runs the Ray stages N times in a row on
the same cluster (rows "stage (call 2)"...): a worker process imports and builds Presidio and MiniLM on its first
call only, as an audit's several scans and embeddings do. ``--cold`` times the local PII scan and MiniLM
embedding in a fresh child process from its first import (Presidio's or MiniLM's import and build included), which is
what a local audit pays and what a Ray worker's first call pays too: the like-for-like anchor of that first call
(without it the local stages reuse a scanner and an embedder built outside the timing).

Prints one table and writes benchmarks/results/audit_scale.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import measure, peak_rss_mb, print_table, write_json
from adult_data import RANGES, load_adult, schema_dict

from privsynth.audit.memorization import RowEncoder, distance_audit
from privsynth.data.demo import build_demo_records
from privsynth.data.schema import schema_from_dict
from privsynth.pii.engine import PiiScanner

ROOT = Path(__file__).resolve().parents[1]


def rows(data: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frame = data.drop(columns=["fnlwgt"], errors="ignore").sample(3 * n, replace=True, random_state=seed)
    frame = frame.reset_index(drop=True)
    for name, (low, high) in RANGES.items():
        if name in frame:
            jitter = rng.integers(-2, 3, len(frame))
            frame[name] = np.clip(frame[name].astype(int) + jitter, low, high)
    return frame.iloc[:n], frame.iloc[n : 2 * n], frame.iloc[2 * n :]


def _sdmetrics(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, out: Any) -> None:
    from sdmetrics.single_table import DCROverfittingProtection

    columns = {name: {"sdtype": "numerical" if name in RANGES else "categorical"} for name in train.columns}
    metadata = {"tables": {"adult": {"columns": columns}}}
    start = time.perf_counter()
    try:
        score = DCROverfittingProtection.compute_breakdown(
            real_training_data=train,
            synthetic_data=synthetic,
            real_validation_data=holdout,
            metadata=metadata,
            table_name="adult",
        )
        out.put({"seconds": time.perf_counter() - start, "score": score})
    except Exception as exc:  # noqa: BLE001 -- the anchor's failure mode is a result, reported as such
        out.put({"seconds": time.perf_counter() - start, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})


def sdmetrics_run(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, limit: float) -> dict:
    queue: Any = mp.get_context("fork").Queue()
    process = mp.get_context("fork").Process(target=_sdmetrics, args=(train, synthetic, holdout, queue))
    start = time.perf_counter()
    process.start()
    process.join(limit)
    if process.is_alive():
        process.kill()
        process.join()
        return {"seconds": time.perf_counter() - start, "error": f"did not finish within {limit:.0f} s (killed)"}
    return queue.get() if not queue.empty() else {"error": f"exited with code {process.exitcode} (out of memory?)"}


_COLD = """
import json, pickle, sys, time
notes = json.load(open(sys.argv[2]))
start = time.perf_counter()
from privsynth.engine import LocalEngine
if sys.argv[1] == "pii_scan":
    from privsynth.audit.pii import scan_texts
    from privsynth.pii.engine import PiiScanner
    result = scan_texts(PiiScanner(), notes, LocalEngine())
else:
    import numpy as np
    from privsynth.audit.embedders import MiniLMEmbedder
    result = np.stack(LocalEngine().map_batches(MiniLMEmbedder().embed, notes, batch_size=256))
seconds = time.perf_counter() - start
pickle.dump((seconds, result), open(sys.argv[3], "wb"))
"""


def cold_local(stage: str, notes: list[str], threads: int | None) -> tuple[float, Any]:
    """``stage`` on the local engine in a fresh process, timed from before its first import; (seconds, result)."""
    env = dict(os.environ)
    if threads is not None:
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "notes.json", Path(folder) / "out.pickle"
        source.write_text(json.dumps(notes))
        subprocess.run([sys.executable, "-c", _COLD, stage, str(source), str(out)], check=True, env=env)
        with out.open("rb") as handle:
            return pickle.load(handle)  # written by the child above, in this run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "adult")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--notes", type=int, default=3000)
    parser.add_argument("--sdmetrics-limit", type=float, default=900.0)
    parser.add_argument("--skip-sdmetrics", action="store_true")
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--workers", default="1,2", help="With --engine ray: worker counts, comma-separated.")
    parser.add_argument(
        "--local-threads",
        type=int,
        default=None,
        help="With --engine ray: BLAS/OpenMP threads of the local run (1: as many cores as one Ray worker has).",
    )
    parser.add_argument(
        "--stages",
        default="memorization,pii_scan,minilm_embedding",
        help="With --engine ray: the stages to run, comma-separated (default: all three).",
    )
    parser.add_argument(
        "--calls", type=int, default=1, help="With --engine ray: run the stages this many times on each cluster."
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="With --engine ray: time the local PII scan and MiniLM embedding in a fresh process, imports included.",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.engine == "ray":
        engines(args)
        return

    schema = schema_from_dict(schema_dict(), source="adult")
    train, holdout, synthetic = rows(load_adult(args.data), args.rows, seed=0)
    print(f"rows: {len(train)} train, {len(holdout)} holdout, {len(synthetic)} synthetic", flush=True)
    with measure() as audit:
        encoder = RowEncoder().fit(train, schema)
        x_train, x_hold, x_syn = (encoder.transform(f) for f in (train, holdout, synthetic))
        result = distance_audit(x_train, x_hold, x_syn, space="tabular", seed=0, bootstrap=200)
    table: list[dict[str, object]] = [
        {
            "task": f"privsynth memorization audit ({args.rows:,} x {args.rows:,} + {args.rows:,})",
            "seconds": audit.seconds,
            "target_s": 60,
            "dcr_share": result.dcr_share,
            "peak_traced_mb": audit.peak_traced_mb,
        }
    ]
    print(table[0], flush=True)
    if not args.skip_sdmetrics:
        print("SDMetrics DCROverfittingProtection on the same rows...", flush=True)
        anchor = sdmetrics_run(train, synthetic, holdout, args.sdmetrics_limit)
        row: dict[str, object] = {
            "task": "SDMetrics DCROverfittingProtection (anchor)",
            "seconds": anchor.get("seconds"),
        }
        if "error" in anchor:
            row["note"] = anchor["error"]
        else:
            row["note"] = f"score {anchor['score'].get('score')}"
            row["ratio_anchor_over_privsynth"] = float(anchor["seconds"]) / audit.seconds
        table.append(row)
        print(row, flush=True)

    records, _ = build_demo_records(args.notes, seed=1)
    notes = records["note"].dropna().astype(str).tolist()
    scanner = PiiScanner()
    scanner.scan(notes[0])  # build the engine outside the timing
    start = time.perf_counter()
    found = scanner.scan_many(notes)
    seconds = time.perf_counter() - start
    table.append(
        {
            "task": f"PII scan, every recognizer ({len(notes)} demo notes)",
            "seconds": seconds,
            "records_per_s": len(notes) / seconds,
            "target_records_per_s": 500,
            "note": f"{sum(len(f) for f in found)} detections",
        }
    )
    print()
    print_table(
        table,
        [
            "task",
            "seconds",
            "target_s",
            "ratio_anchor_over_privsynth",
            "records_per_s",
            "target_records_per_s",
            "peak_traced_mb",
            "dcr_share",
            "note",
        ],
    )
    print(f"\npeak RSS of this process: {peak_rss_mb():.0f} MB")
    write_json("audit_scale", {"rows": table, "peak_rss_mb": peak_rss_mb()}, args.out)


def engines(args: argparse.Namespace) -> None:
    """Each stage on the local engine, then on Ray for each worker count: seconds, ratio and equality."""
    from privsynth.audit.embedders import MiniLMEmbedder
    from privsynth.audit.pii import scan_texts
    from privsynth.engine import LocalEngine
    from privsynth.engine.ray_engine import RayEngine

    schema = schema_from_dict(schema_dict(), source="adult")
    train, holdout, synthetic = rows(load_adult(args.data), args.rows, seed=0)
    encoder = RowEncoder().fit(train, schema)
    x_train, x_hold, x_syn = (encoder.transform(f) for f in (train, holdout, synthetic))
    records, _ = build_demo_records(args.notes, seed=1)
    notes = records["note"].dropna().astype(str).tolist()
    scanner, embedder = PiiScanner(), MiniLMEmbedder()

    wanted = set(args.stages.split(","))

    def stages(engine: Any) -> dict[str, tuple[float, Any]]:
        out: dict[str, tuple[float, Any]] = {}
        if "memorization" in wanted:
            start = time.perf_counter()
            audit = distance_audit(x_train, x_hold, x_syn, space="tabular", seed=0, bootstrap=200, engine=engine)
            out["memorization"] = (time.perf_counter() - start, audit)
        if "pii_scan" in wanted:
            start = time.perf_counter()
            found = scan_texts(scanner, notes, engine)
            out["pii_scan"] = (time.perf_counter() - start, found)
        if "minilm_embedding" in wanted:
            start = time.perf_counter()
            vectors = np.stack(engine.map_batches(embedder.embed, notes, batch_size=256))
            out["minilm_embedding"] = (time.perf_counter() - start, vectors)
        return out

    def same(a: Any, b: Any) -> str:
        if isinstance(a, np.ndarray):
            return "equal" if np.array_equal(a, b) else f"max |diff| {float(np.abs(a - b).max()):.2e}"
        return "equal" if a == b else "DIFFERENT"

    scanner.scan(notes[0])  # Presidio and MiniLM are built outside the local timing, as each worker builds its own
    embedder.embed(notes[:2])
    print(f"rows: {args.rows:,} per side; notes: {len(notes)}", flush=True)
    if args.local_threads is None:
        local = stages(LocalEngine())
    else:
        import faiss
        from threadpoolctl import threadpool_limits

        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(args.local_threads)
        with threadpool_limits(args.local_threads):
            local = stages(LocalEngine())
        faiss.omp_set_num_threads(before)
    table: list[dict[str, object]] = [
        {"engine": "local", "workers": 1, "stage": name, "seconds": seconds} for name, (seconds, _) in local.items()
    ]
    # the anchor of a Ray worker's first call, which imports and builds its scanner or embedder
    cold = {
        name: cold_local(name, notes, args.local_threads)
        for name in sorted(wanted)
        if args.cold and name in ("pii_scan", "minilm_embedding")
    }
    for name, (seconds, result) in cold.items():
        table.append(
            {
                "engine": "local",
                "workers": 1,
                "stage": f"{name} (fresh process)",
                "seconds": seconds,
                "result": same(result, local[name][1]),
            }
        )
    for row in table:
        print(row, flush=True)
    for workers in [int(w) for w in args.workers.split(",")]:
        start = time.perf_counter()
        engine = RayEngine(workers=workers)
        startup = time.perf_counter() - start
        table.append({"engine": "ray", "workers": workers, "stage": "cluster start", "seconds": startup})
        for name, (seconds, result), call in (
            (name, timed, call) for call in range(1, args.calls + 1) for name, timed in stages(engine).items()
        ):
            row = {
                "engine": "ray",
                "workers": workers,
                "stage": name if call == 1 else f"{name} (call {call})",
                "seconds": seconds,
                "ratio_ray_over_local": seconds / (cold if call == 1 and name in cold else local)[name][0],
                "anchor": "local, fresh process" if call == 1 and name in cold else "local",
                "result": same(result, local[name][1]),
            }
            table.append(row)
            print(row, flush=True)
        engine.close()
    print()
    print_table(table, ["engine", "workers", "stage", "seconds", "ratio_ray_over_local", "anchor", "result"])
    print(f"\npeak RSS of the driver: {peak_rss_mb():.0f} MB")
    write_json(
        "audit_scale_engines",
        {
            "rows_per_side": args.rows,
            "notes": len(notes),
            "cold_local": sorted(cold),
            "table": table,
            "peak_rss_mb_driver": peak_rss_mb(),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
