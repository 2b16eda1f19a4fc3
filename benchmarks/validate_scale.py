"""Peak memory of `privsynth validate` on a large partitioned corpus (issue 21: <= 2 GiB at 10M rows).

Builds a tabular corpus of invented values (no real data) as a folder of Parquet parts of 500,000 rows: a key,
a person id (up to 3 records each), an integer age with declared bounds, a lab value, two categories (one
declared), a date and a flag. Then, each in a child process so that its peak RSS is its own:

- importing privsynth's CLI with no data (the baseline both paths pay: torch and the generators load);
- `privsynth validate` (batch by batch: privsynth.data.stream), at every --rows;
- the anchor, reading the whole table then summarising it (`read_corpus` + `summarize`, the path `validate` took
  before), at the rows listed in --whole-rows (it needs the whole table in memory).

    python benchmarks/validate_scale.py [--rows 1000000,10000000] [--whole-rows 1000000]

Prints one table and writes benchmarks/results/validate_scale.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _common import print_table, write_json

PART_ROWS = 500_000
SCHEMA = """table: records.parquet
key: record_id
entity: patient_id
max_records_per_entity: 3
columns:
  record_id: {kind: key}
  patient_id: {kind: key}
  age: {kind: numerical, integer: true, bounds: [18, 95]}
  wbc: {kind: numerical}
  diagnosis: {kind: categorical, domain: [pneumonia, fracture, diabetes, asthma, healthy]}
  insurance: {kind: categorical}
  admitted: {kind: datetime}
  smoker: {kind: boolean}
"""


def build(folder: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (folder / "records.parquet").mkdir(parents=True)
    (folder / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    for part, start in enumerate(range(0, rows, PART_ROWS)):
        n = min(PART_ROWS, rows - start)
        ids = np.arange(start, start + n)
        table = pa.table(
            {
                "record_id": [f"R{i:09d}" for i in ids],
                "patient_id": [f"P{i // 3:09d}" for i in ids],
                "age": rng.integers(18, 96, n),
                "wbc": np.round(rng.lognormal(2.0, 0.3, n), 2),
                "diagnosis": rng.choice(["pneumonia", "fracture", "diabetes", "asthma", "healthy"], n),
                "insurance": rng.choice(["public", "private", "none"], n),
                "admitted": (np.datetime64("2020-01-01") + rng.integers(0, 1500, n).astype("timedelta64[D]")),
                "smoker": rng.random(n) < 0.2,
            }
        )
        pq.write_table(table, folder / "records.parquet" / f"part-{part:05d}.parquet")


def child(body: str) -> tuple[float, float, int]:
    """Seconds, its own peak RSS (MB) and the exit code of a Python child running ``body``."""
    code = (
        "import resource, sys\ntry:\n    " + body + "\nfinally:\n    "
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    peaks = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_KB ")]
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return seconds, (int(peaks[-1]) / 1024 if peaks else float("nan")), proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--whole-rows", default="1000000", help="Rows at which to run the whole-table anchor.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    whole_at = {int(r) for r in args.whole_rows.split(",") if r}
    table: list[dict[str, object]] = []
    for rows in [int(r) for r in args.rows.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "corpus"
            build(folder, rows)
            size = sum(p.stat().st_size for p in (folder / "records.parquet").iterdir()) / 2**20
            print(f"{rows:,} rows: {size:.0f} MB of Parquet", flush=True)
            validate = f"from privsynth.cli import main; main(['validate', '{folder}'])"
            runs = [("privsynth CLI imported, no data (baseline)", "import privsynth.cli")]
            runs.append(("privsynth validate (streaming)", validate))
            if rows in whole_at:
                runs.insert(
                    1,
                    (
                        "whole table (read_corpus + summarize)",
                        "import privsynth.cli; from privsynth.data.corpus import read_corpus; "
                        f"from privsynth.data.summary import summarize; summarize(read_corpus('{folder}'))",
                    ),
                )
            for name, code in runs:
                seconds, peak, rc = child(code)
                row = {"rows": rows, "method": name, "seconds": seconds, "peak_rss_mb": peak, "exit": rc}
                table.append(row)
                print(row, flush=True)
    print()
    print_table(table, ["rows", "method", "seconds", "peak_rss_mb", "exit"])
    write_json("validate_scale", {"rows": table, "target_peak_mb_at_10M": 2048}, args.out)


if __name__ == "__main__":
    main()
