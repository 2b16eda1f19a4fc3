"""Exact nearest-neighbour search over a 10-million-row reference on a local Ray cluster (issue 21).

The memorization audit's heavy part is an exact search of every synthetic row among the training rows. Here the
reference is ``--reference`` rows (default 10,000,000) in the audit's own encoding of UCI Adult (128 numbers a
row: ECDF-scaled numbers, one-hot categories), resampled from Adult's 45,222 rows with a little noise so rows
are distinct; the queries are ``--queries`` rows drawn the same way. ``RayEngine.nearest`` cuts the reference
into one shard per worker, each held by an actor, and sends the queries in chunks of 65,536.

Reported: wall time, pairs compared per second per worker, the peak RSS of each Ray worker (psutil, every 0.5 s)
and of this driver, and whether the first ``--check`` queries' neighbours and distances equal a single-process
search of the whole reference. From the measured per-worker throughput, the time of a full 10M x 10M audit
(three searches: synthetic and holdout rows among the training rows, synthetic among holdout) on 32 workers is
projected, assuming the 2-worker efficiency holds; it is a projection, not a measurement.

    python benchmarks/search_scale.py [--reference 10000000] [--queries 4000] [--workers 2] [--check 200]

Prints one table and writes benchmarks/results/search_scale.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import WorkerMemory, peak_rss_mb, print_table, write_json
from adult_data import load_adult, schema_dict

from privsynth.audit.memorization import RowEncoder
from privsynth.data.schema import schema_from_dict
from privsynth.engine.base import flat_search

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 500_000


def encoded_adult(data_dir: Path) -> np.ndarray:
    frame = load_adult(data_dir).drop(columns=["fnlwgt"], errors="ignore")
    schema = schema_from_dict(schema_dict(), source="adult codebook")
    return RowEncoder().fit(frame, schema).transform(frame).astype(np.float32)


def resample(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows drawn from ``base`` with small Gaussian noise, built chunk by chunk (float32 throughout)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        out[start:stop] = base[rng.integers(0, len(base), stop - start)]
        out[start:stop] += rng.normal(0.0, 0.01, (stop - start, base.shape[1])).astype(np.float32)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "adult")
    parser.add_argument("--reference", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=4_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=int, default=2, help="Neighbours per query (the audit's NNDR takes 2).")
    parser.add_argument("--check", type=int, default=200, help="Queries checked against a single-process search.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from privsynth.engine.ray_engine import RayEngine

    base = encoded_adult(args.data)
    start = time.perf_counter()
    reference = resample(base, args.reference, seed=1)
    queries = resample(base, args.queries, seed=2)
    built = time.perf_counter() - start
    print(f"reference {reference.shape} ({reference.nbytes / 2**30:.2f} GiB), queries {queries.shape}; {built:.0f} s")
    engine = RayEngine(workers=args.workers)
    try:
        with WorkerMemory() as memory:
            start = time.perf_counter()
            distances, indices = engine.nearest(reference, queries, k=args.k)
            seconds = time.perf_counter() - start
    finally:
        engine.close()
    start = time.perf_counter()
    local_d, local_i = flat_search(reference, queries[: args.check], args.k)
    local_seconds = time.perf_counter() - start
    same_neighbours = bool(np.array_equal(local_i, indices[: args.check]))
    same_distances = bool(np.array_equal(local_d, distances[: args.check]))
    pairs = args.reference * args.queries
    per_worker = pairs / seconds / args.workers
    full_pairs = 3 * 10_000_000 * 10_000_000
    projected_32 = full_pairs / (per_worker * 32)
    row: dict[str, Any] = {
        "reference_rows": args.reference,
        "queries": args.queries,
        "workers": args.workers,
        "seconds": seconds,
        "pairs_per_second_per_worker": per_worker,
        "worker_peak_rss_mb": sorted((round(v) for v in memory.peaks.values()), reverse=True)[: args.workers],
        "driver_peak_rss_mb": round(peak_rss_mb()),
        "checked_queries": args.check,
        "same_neighbours": same_neighbours,
        "same_distances": same_distances,
        "local_pairs_per_second": args.reference * args.check / local_seconds,
        "projected_full_audit_32_workers_hours": projected_32 / 3600,
    }
    print_table([row], list(row))
    write_json("search_scale", {"args": {k: str(v) for k, v in vars(args).items()}, "rows": [row]}, args.out)


if __name__ == "__main__":
    main()
