"""Pre-flight: is the holdout fit to be a yardstick? A dirty holdout makes every distance metric lie.

Checks, with the numbers in every message:

- both sides share one schema (the tabular and modality columns the audit compares);
- the holdout is not much smaller or larger than train (distance metrics compare equal-size samples). The fit
  puts each person in the holdout independently (so neighbouring corpora stay neighbours), which makes the
  holdout's size vary at small n: the floor is 10 % of train, and a small holdout widens every confidence
  interval instead (the gate reads their pessimistic end);
- exact duplicates *between* train and holdout do not exceed what duplicates within the population explain.
  Records that are genuinely equal (Adult without ``fnlwgt`` has many) appear on both sides of an i.i.d. split
  at the rate they repeat within each side; a much higher overlap means the holdout leaked into training (or
  was built from it), and the audit refuses;
- the duplicate rate inside each side, reported for context.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from privsynth.data.schema import MODELLED_KINDS, Schema
from privsynth.errors import UserError


class HoldoutRefusedError(UserError):
    """The holdout cannot serve as a yardstick; the message gives the numbers and what to do."""


@dataclass(frozen=True)
class Preflight:
    """Numbers of the holdout checks, and warnings that did not refuse the audit."""

    train_records: int
    holdout_records: int
    size_ratio: float
    train_duplicate_rate: float
    holdout_duplicate_rate: float
    overlap_rate: float
    expected_overlap_rate: float
    warnings: tuple[str, ...] = field(default_factory=tuple)


def preflight_columns(schema: Schema, present: pd.Index | list[str]) -> list[str]:
    """The columns whose values make two records "the same" for the overlap check."""
    return [n for n, c in schema.columns.items() if c.kind in MODELLED_KINDS and n in present]


def row_hashes(frame: pd.DataFrame, columns: list[str], first: int = 0) -> np.ndarray:
    """One hash per record of its ``columns`` (a record's own; ``first`` numbers a batch's rows without columns)."""
    if not columns or frame.empty:
        return np.arange(first, first + len(frame), dtype=np.uint64)
    view = frame[columns].map(lambda v: hashlib.sha256(v).hexdigest() if isinstance(v, bytes) else str(v))
    return pd.util.hash_pandas_object(view, index=False).to_numpy(dtype=np.uint64)


def _duplicate_rate(hashes: np.ndarray) -> float:
    return float(pd.Series(hashes).duplicated(keep="first").mean()) if len(hashes) else 0.0


def preflight(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: Schema,
    *,
    holdout_schema: Schema | None = None,
    min_ratio: float = 0.1,
    overlap_tolerance: float = 3.0,
) -> Preflight:
    """Check train and holdout; raise :class:`HoldoutRefusedError` when the holdout would mislead."""
    check_schemas(schema, holdout_schema)
    columns = preflight_columns(schema, train.columns)
    return preflight_hashes(
        row_hashes(train, columns),
        row_hashes(holdout, columns, first=len(train)),  # without columns: every record distinct, on both sides
        min_ratio=min_ratio,
        overlap_tolerance=overlap_tolerance,
    )


def check_schemas(schema: Schema, holdout_schema: Schema | None) -> None:
    """Train and holdout must share one schema."""
    if holdout_schema is not None and dict(holdout_schema.columns) != dict(schema.columns):
        raise HoldoutRefusedError("train and holdout have different schemas; audit them with the same schema.yaml")


def preflight_hashes(
    h_train: np.ndarray, h_hold: np.ndarray, *, min_ratio: float = 0.1, overlap_tolerance: float = 3.0
) -> Preflight:
    """:func:`preflight` from every train and holdout record's :func:`row_hashes` (a table read in batches)."""
    if len(h_hold) == 0:
        raise HoldoutRefusedError(
            "the holdout is empty; fit with --holdout-fraction > 0 (default 0.2) or pass --holdout"
        )
    dup_train, dup_hold = _duplicate_rate(h_train), _duplicate_rate(h_hold)
    overlap = float(np.isin(h_hold, h_train).mean())
    # Under an i.i.d. split a holdout record equals some train record about as often as it equals another
    # record of the population: estimate that from the duplicate rate inside train, scaled to train's size.
    repeat_share = dup_train
    expected = min(1.0, repeat_share * (1.0 + len(h_hold) / max(len(h_train), 1)))
    ratio = len(h_hold) / max(len(h_train), 1)
    warnings: list[str] = []
    if overlap > max(overlap_tolerance * expected, 0.01):
        raise HoldoutRefusedError(
            f"{overlap:.1%} of holdout records also occur in train, but duplicates within train ({dup_train:.1%}) "
            f"explain only about {expected:.1%}: the holdout overlaps the training data. Use the split recorded "
            "by 'privsynth fit' (--model) or a holdout drawn before training."
        )
    if ratio < min_ratio:
        raise HoldoutRefusedError(
            f"the holdout ({len(h_hold)} records) is only {ratio:.0%} of train ({len(h_train)}); distance metrics "
            f"need comparable sizes (at least {min_ratio:.0%}). Refit with a larger --holdout-fraction."
        )
    if ratio > 2.0:
        warnings.append(f"holdout is {ratio:.2f} x train; distance metrics use a train-sized part of it")
    elif len(h_hold) < 500:
        warnings.append(
            f"the holdout has {len(h_hold)} records: distance metrics compare against sets of that size, so their "
            "intervals are wide (a DCR share of 0.52 may not show it is below 0.6); a larger holdout_fraction "
            "narrows them"
        )
    if overlap > expected * 1.5 and overlap > 0.001:
        warnings.append(
            f"train/holdout overlap {overlap:.2%} is above the {expected:.2%} that duplicates explain; check how "
            "the holdout was drawn"
        )
    return Preflight(
        train_records=len(h_train),
        holdout_records=len(h_hold),
        size_ratio=ratio,
        train_duplicate_rate=dup_train,
        holdout_duplicate_rate=dup_hold,
        overlap_rate=overlap,
        expected_overlap_rate=expected,
        warnings=tuple(warnings),
    )
