"""What a fresh process pays before it scans its first note (issue 21: the PII scan's first call on a Ray worker).

Each measure runs in a new Python process, ``--repeats`` times, and the median is reported:

- ``privsynth --help``: wall time and peak RSS of the command-line tool doing nothing;
- ``scanner start``: importing privsynth's PII scanner, building it and scanning one note in a fresh process
  (what the local engine pays once per audit, and what every Ray worker process pays at its first scan);
- on a new local Ray cluster of one worker: the first ``map_batches`` call of a function that does nothing (Ray
  Data's own start), then a PII scan of 200 notes on the same worker, first and second call (the first includes
  the scanner's start in the worker process; the second reuses it).

``--baseline PATH`` measures a second checkout of privsynth the same way, in the same run (each repeat runs
both, one after the other), so a change can be compared with the code before it on the same machine state:

    git worktree add /tmp/before HEAD~1
    python benchmarks/worker_start.py --repeats 3 --baseline /tmp/before

Prints one table and writes benchmarks/results/worker_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]

_SCANNER = """
import json, resource, time
start = time.perf_counter()
from privsynth.pii.engine import PiiScanner
PiiScanner().scan("Seen today, MRN 40392817, stable. Accompanied by her daughter Valerie Calderon.")
print(json.dumps({"scanner start": time.perf_counter() - start,
                  "scanner start, peak RSS MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_RAY = """
import json, time
from privsynth.engine.ray_engine import RayEngine
from privsynth.pii.engine import PiiScanner

def nothing(items):
    return list(items)

notes = ["Seen today, MRN 40392817, stable. Accompanied by her daughter Valerie Calderon."] * 200
engine = RayEngine(workers=1)
out = {}
try:
    for name, fn in [("ray: first map_batches, no work", nothing),
                     ("ray: PII scan, first call", PiiScanner().scan_many),
                     ("ray: PII scan, second call", PiiScanner().scan_many)]:
        start = time.perf_counter()
        engine.map_batches(fn, notes, batch_size=200)
        out[name] = time.perf_counter() - start
finally:
    engine.close()
print(json.dumps(out))
"""

_HELP = """
import json, resource, subprocess, sys, time
from pathlib import Path
start = time.perf_counter()
subprocess.run([str(Path(sys.executable).parent / "privsynth"), "--help"], check=True, capture_output=True)
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"privsynth --help": time.perf_counter() - start, "privsynth --help, peak RSS MB": child}))
"""


def run(code: str, checkout: Path) -> dict[str, float]:
    """``code`` in a fresh interpreter that imports privsynth from ``checkout``; its last line, parsed."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=checkout, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"a measure failed in {checkout}:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="Fresh processes per measure (median reported).")
    parser.add_argument("--baseline", type=Path, default=None, help="Another privsynth checkout, measured alike.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    checkouts = {"this checkout": ROOT}
    if args.baseline is not None:
        if not (args.baseline / "privsynth" / "__init__.py").is_file():
            parser.error(f"--baseline {args.baseline}: no privsynth/ package there (a checkout's root)")
        checkouts["baseline"] = args.baseline.resolve()
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in checkouts}
    for repeat in range(1, args.repeats + 1):
        for name, checkout in checkouts.items():
            print(f"repeat {repeat}/{args.repeats}: {name}", flush=True)
            for code in (_HELP, _SCANNER, _RAY):
                for measure, value in run(code, checkout).items():
                    samples[name].setdefault(measure, []).append(value)
    rows: list[dict[str, Any]] = []
    for measure in samples["this checkout"]:
        row: dict[str, Any] = {"measure": measure}
        for name in checkouts:
            row[name] = statistics.median(samples[name][measure])
        if "baseline" in checkouts:
            row["ratio"] = row["this checkout"] / row["baseline"]
        rows.append(row)
    print_table(rows, ["measure", *checkouts, *(["ratio"] if "baseline" in checkouts else [])])
    write_json(
        "worker_start",
        {
            "checkouts": {name: str(path) for name, path in checkouts.items()},
            "repeats": args.repeats,
            "median": rows,
            "samples": samples,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
