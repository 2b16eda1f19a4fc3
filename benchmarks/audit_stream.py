"""Peak memory of `privsynth audit` on a large partitioned synthetic corpus (issue 21: streaming reads).

A synthetic corpus of 10 million records is what `privsynth sample --n 10000000` writes; the audit compares a
uniform subsample of `max_rows` (50,000) of them against the real train and holdout. Builds, with invented values
(no real data; `validate_scale.build`): the synthetic corpus as Parquet parts of 500,000 rows at each --rows, and
a real train and holdout of --real rows each. Then, each in a child process so that its peak RSS is its own:

- importing privsynth's CLI with no data (the baseline every path pays: torch and the generators load);
- the audit's read of the synthetic side, streamed (`privsynth.audit.reading.read_for_audit`: validate,
  fingerprint and keep the pick, batch by batch), at every --rows;
- the anchor, the read the audit made before (`read_corpus` of the whole table, its fingerprint and the same
  subsample), at the rows listed in --whole-rows (it needs the whole table in memory);
- the whole `privsynth audit --synthetic ... --train ... --holdout ...` (memorization, attacks, fidelity; no text
  or image columns here), at the rows listed in --audit-rows.

    python benchmarks/audit_stream.py [--rows 1000000,10000000] [--whole-rows 1000000] [--audit-rows 10000000]
    python benchmarks/audit_stream.py --rows 10000000 --whole-rows "" --audit-rows 10000000 --real 5000000 \
        --engine ray --workers 2

With ``--engine ray`` the whole audit runs on a local Ray cluster of ``--workers`` workers (``privsynth audit
--engine ray``), and the peak RSS of each Ray worker process is reported too (psutil, every 0.5 s).

Prints one table and writes benchmarks/results/audit_stream.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import WorkerMemory, print_table, write_json
from validate_scale import build, child

MAX_ROWS = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="Synthetic records, comma-separated.")
    parser.add_argument("--whole-rows", default="1000000", help="Rows at which to run the whole-table anchor.")
    parser.add_argument("--audit-rows", default="", help="Rows at which to run the whole `privsynth audit`.")
    parser.add_argument("--real", type=int, default=50_000, help="Real train and holdout records, each.")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="Where the whole audit runs.")
    parser.add_argument("--workers", type=int, default=2, help="With --engine ray: the local cluster's workers.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    engine = ["--engine", "ray", "--workers", str(args.workers)] if args.engine == "ray" else []
    whole_at = {int(r) for r in args.whole_rows.split(",") if r}
    audit_at = {int(r) for r in args.audit_rows.split(",") if r}
    table: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp) / "real"
        build(real / "train", args.real, seed=1)
        build(real / "holdout", args.real, seed=2)
        for rows in [int(r) for r in args.rows.split(",")]:
            folder = Path(tmp) / f"synthetic-{rows}"
            build(folder, rows, seed=3)
            size = sum(p.stat().st_size for p in (folder / "records.parquet").iterdir()) / 2**20
            print(f"{rows:,} synthetic rows: {size:.0f} MB of Parquet", flush=True)
            streamed = (
                "import privsynth.cli; from privsynth.audit.reading import read_for_audit; "
                f"r = read_for_audit('{folder}', rows={MAX_ROWS}, seed=2); print(r.total, len(r.corpus), r.fingerprint)"
            )
            runs = [
                ("privsynth CLI imported, no data (baseline)", "import privsynth.cli"),
                ("synthetic side, streamed (read_for_audit)", streamed),
            ]
            if rows in whole_at:
                whole = (
                    "import privsynth.cli; from privsynth.data.corpus import read_corpus; "
                    "from privsynth.data.fingerprint import corpus_fingerprint; "
                    "from privsynth.audit.run import _subsample; "
                    f"c = read_corpus('{folder}'); s = _subsample(c.records, {MAX_ROWS}, 2); "
                    "print(len(c), len(s), corpus_fingerprint(c))"
                )
                runs.append(("synthetic side, whole table (the read before)", whole))
            if rows in audit_at:
                audit = (
                    "from privsynth.cli import main; main(['audit', '--synthetic', "
                    f"'{folder}', '--train', '{real / 'train'}', '--holdout', '{real / 'holdout'}', "
                    f"'--out', '{Path(tmp) / ('audit-' + str(rows))}', *{engine!r}])"
                )
                where = f" on Ray, {args.workers} workers" if engine else ""
                runs.append((f"privsynth audit (whole run, every corpus streamed){where}", audit))
            for name, code in runs:
                with WorkerMemory() as memory:  # Ray's worker processes, if any
                    seconds, peak, rc = child(code)
                row = {"rows": rows, "method": name, "seconds": seconds, "peak_rss_mb": peak, "exit": rc}
                if memory.peaks:
                    row["worker_peak_rss_mb"] = sorted((round(v) for v in memory.peaks.values()), reverse=True)
                table.append(row)
                print(row, flush=True)
    print()
    print_table(table, ["rows", "method", "seconds", "peak_rss_mb", "worker_peak_rss_mb", "exit"])
    payload = {"rows": table, "max_rows": MAX_ROWS, "real_rows_each": args.real, "engine": args.engine}
    write_json("audit_stream", {**payload, **({"workers": args.workers} if engine else {})}, args.out)


if __name__ == "__main__":
    main()
