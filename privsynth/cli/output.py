"""Console output, logging set-up and exit codes for the CLI (the only place logging is configured)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any

from rich.console import Console
from rich.logging import RichHandler


class ExitCode(IntEnum):
    """Documented exit codes of every ``privsynth`` command."""

    OK = 0
    INTERNAL = 1  # a bug in privsynth or an environment failure; re-run with --verbose for a traceback
    BAD_INPUT = 2  # bad input or usage: the message says what to fix; nothing was written
    REFUSED = 3  # the release gate refused the release
    INTEGRITY = 4  # 'privsynth verify' found a changed, missing or extra file


def stdout_console() -> Console:
    """Console for results (stdout). Created per call so tests capturing stdout see the output."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    """Console for errors, warnings and progress (stderr)."""
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def print_json(payload: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def setup_logging(*, verbose: bool, quiet: bool) -> None:
    """Configure the ``privsynth`` logger. Log lines carry counts, keys and column names, never record values."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logger = logging.getLogger("privsynth")
    logger.handlers.clear()
    handler = RichHandler(console=stderr_console(), show_path=False, show_time=verbose, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Hold back privsynth's warnings (they would print above the progress bars) and hand them over at the end."""
    collected: list[str] = []

    class _Collect(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.levelno >= logging.WARNING and record.levelno < logging.ERROR:
                message = record.getMessage()
                if message not in collected:
                    collected.append(message)
                return False
            return True

    logger = logging.getLogger("privsynth")
    keep = _Collect()
    handlers = list(logger.handlers)
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield collected
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


class PlainProgress:
    """Progress for logs and pipes (no terminal): timestamped lines at each quarter of a stage, with its ETA."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.started: dict[str, float] = {}
        self.shown: dict[str, int] = {}

    def line(self, message: str) -> None:
        """One timestamped line on stderr."""
        stamp = time.strftime("%H:%M:%S")
        stderr_console().print(f"{stamp} privsynth {self.command}: {message}", markup=False, highlight=False)

    def step(self, stage: str, done: int, total: int) -> None:
        """A training step: printed at 0 %, 25 %, 50 %, 75 % and 100 % of the stage, with elapsed time and ETA."""
        now = time.monotonic()
        start = self.started.setdefault(stage, now)
        quarter = 4 * done // max(total, 1)
        if self.shown.get(stage) == quarter:
            return
        self.shown[stage] = quarter
        elapsed = now - start
        eta = elapsed / done * (total - done) if done else None
        self.line(
            f"{training_label(stage)}, {progress_count(stage, done, total)}, {elapsed:.0f} s"
            + (f", about {eta:.0f} s left" if eta is not None and done < total else "")
        )


#: Stages that train nothing under noise: public data (no noise), the frozen backbone's pass, sampling.
NOT_DP_SGD = ("public ", "backbone states ", "text embeddings ", "sampling ")
#: Passes over private records that report tenths, not counts (their number of records is exact, and private).
IN_TENTHS = ("backbone states ", "text embeddings ")


def training_label(stage: str) -> str:
    """What a progress line calls a stage: DP-SGD, unless it trains on public data or trains nothing.

    >>> training_label("text 'note'"), training_label("sampling text 'note'")
    ("DP-SGD text 'note'", "sampling text 'note'")
    """
    return stage if stage.startswith(NOT_DP_SGD) else f"DP-SGD {stage}"


def progress_count(stage: str, done: int, total: int) -> str:
    """``step 3/40`` for training, ``120/1,000 records`` for sampling, ``40 %`` for a pass over private texts.

    The backbone's frozen pass and the DP classifier's embeddings report tenths: their count of training texts is
    exact, and private.
    """
    if stage.startswith("sampling "):
        return f"{done:,}/{total:,} records"
    if stage.startswith(IN_TENTHS):
        return f"{done} %"
    return f"step {done}/{total}"
