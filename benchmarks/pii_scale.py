"""A PII scan of 1 million notes on a local Ray cluster (issue 21): time, memory per worker, equality.

The notes are the demo corpus' clinical notes (invented people): ``--distinct`` different notes, repeated to
``--notes`` in total (the scan's cost is per note, repeats included). ``scan_texts`` runs every recognizer
(Presidio patterns, the HIPAA additions, the name dictionary) through Ray Data ``map_batches`` with one Presidio
per worker, exactly as the audit does.

Reported: wall time, notes per second (in all and per worker), the peak RSS of each Ray worker (psutil, every
0.5 s) and of this driver, and whether every note's detections equal a single-process scan of the distinct
notes. The time on 32 workers is projected from the per-worker rate; a projection, not a measurement.

    python benchmarks/pii_scale.py [--notes 1000000] [--distinct 20000] [--workers 2]

Prints one table and writes benchmarks/results/pii_scale.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from _common import WorkerMemory, peak_rss_mb, print_table, write_json

from privsynth.audit.pii import scan_texts
from privsynth.data.demo import build_demo_records
from privsynth.pii.engine import PiiScanner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from privsynth.engine.ray_engine import RayEngine

    records, _ = build_demo_records(args.distinct, seed=3)
    distinct = records["note"].dropna().astype(str).tolist()
    notes = [distinct[i % len(distinct)] for i in range(args.notes)]
    print(f"{len(notes):,} notes ({len(distinct):,} distinct), {sum(map(len, notes)) / 1e6:.0f} M characters")
    scanner = PiiScanner()
    start = time.perf_counter()
    local = scan_texts(scanner, distinct)
    local_seconds = time.perf_counter() - start
    print(f"local scan of the distinct notes: {local_seconds:.0f} s", flush=True)
    engine = RayEngine(workers=args.workers)
    try:
        with WorkerMemory() as memory:
            start = time.perf_counter()
            found = scan_texts(scanner, notes, engine)
            seconds = time.perf_counter() - start
    finally:
        engine.close()
    equal = all(found[i] == local[i % len(distinct)] for i in range(len(notes)))
    per_worker = len(notes) / seconds / args.workers
    row: dict[str, Any] = {
        "notes": len(notes),
        "workers": args.workers,
        "seconds": seconds,
        "notes_per_second": len(notes) / seconds,
        "notes_per_second_per_worker": per_worker,
        "local_notes_per_second": len(distinct) / local_seconds,
        "worker_peak_rss_mb": sorted((round(v) for v in memory.peaks.values()), reverse=True)[: args.workers],
        "driver_peak_rss_mb": round(peak_rss_mb()),
        "detections": sum(len(f) for f in found),
        "equal_to_local": equal,
        "projected_32_workers_minutes": len(notes) / (per_worker * 32) / 60,
    }
    print_table([row], list(row))
    write_json("pii_scale", {"args": {k: str(v) for k, v in vars(args).items()}, "rows": [row]}, args.out)


if __name__ == "__main__":
    main()
