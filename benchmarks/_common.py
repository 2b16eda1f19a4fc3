"""Helpers shared by benchmark scripts: timing, peak memory, result tables and JSON output."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
RESULTS = Path(__file__).parent / "results"


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_traced_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def measure() -> Iterator[Measurement]:
    """Wall time and peak Python/numpy allocations (tracemalloc) of the block."""
    m = Measurement()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        m.peak_traced_mb = peak / 2**20


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout
    except OSError:
        commit = ""
    import os

    return {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "commit": commit.strip(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_json(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    target = out if out is not None else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"environment": environment(), **payload}, indent=2, default=str))
    print(f"\nwrote {target}")
    return target


class WorkerMemory:
    """Peak RSS of every Ray worker process seen while running (``ray::`` processes)."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil  # installed with Ray

        while not self._stop.is_set():
            for proc in psutil.process_iter(["pid", "name", "cmdline"]):
                try:
                    line = " ".join(proc.info["cmdline"] or [])
                    if proc.info["name"].startswith("ray::") or line.startswith("ray::"):
                        rss = proc.memory_info().rss / 2**20
                        self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0.0), rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied, TypeError):
                    continue
            self._stop.wait(0.5)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
