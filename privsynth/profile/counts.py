"""Exact partial counts of one column over row shards, summed (the profile's only contact with the records).

The profiler asks for counts (a histogram over fixed edges, category counts, the missing count); each is computed
per shard of rows on an :class:`~privsynth.engine.Engine` and the partial counts are summed on the driver, where
the noise is then added once (:mod:`privsynth.profile.profiler`). Sums of whole numbers are exact, so the result
is the same for any engine and number of shards. No noise, ledger or random stream ever reaches a worker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from privsynth.engine import Engine
from privsynth.engine.base import shard_bounds
from privsynth.profile.grids import bin_index


@dataclass(frozen=True)
class _Histogram:
    """Counts of the non-missing values per bin of ``edges`` (values clipped to ``clip`` first, if given)."""

    edges: np.ndarray
    clip: tuple[float, float] | None = None

    def __call__(self, piece: np.ndarray) -> np.ndarray:
        present = piece[~np.isnan(piece)]
        if self.clip is not None:
            present = np.clip(present, *self.clip)
        return np.bincount(bin_index(present, self.edges), minlength=len(self.edges) - 1).astype(np.float64)


def _missing(piece: pd.Series) -> int:
    return int(piece.isna().sum())


def _nan_count(piece: np.ndarray) -> int:
    return int(np.isnan(piece).sum())


def _categories(piece: pd.Series) -> dict[Any, int]:
    return {k: int(v) for k, v in piece.dropna().value_counts().items()}


def _add(a: Any, b: Any) -> Any:
    """Sum of two partial counts: arrays, numbers, or dicts (every key kept, zeros included)."""
    if isinstance(a, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = out.get(key, 0) + value
        return out
    return a + b


@dataclass(frozen=True)
class _LengthHistogram:
    """Counts of text lengths (at most ``cap``) per bin of ``edges``."""

    edges: np.ndarray
    cap: float

    def __call__(self, piece: pd.Series) -> np.ndarray:
        lengths = piece.dropna().map(len).to_numpy(dtype=np.float64)
        counts = np.bincount(bin_index(np.minimum(lengths, self.cap), self.edges), minlength=len(self.edges) - 1)
        return counts.astype(np.float64)


@dataclass(frozen=True)
class ColumnCounts:
    """One column's values, cut into row shards on ``engine``; every method is an exact count, summed."""

    values: pd.Series
    engine: Engine

    def _pieces(self, values: pd.Series | np.ndarray) -> list[Any]:
        bounds = shard_bounds(len(values), self.engine.workers) or [(0, 0)]
        return [values[a:b] for a, b in bounds]

    def _sum(self, fn: Callable[[Any], Any], values: pd.Series | np.ndarray) -> Any:
        parts = self.engine.map(fn, self._pieces(values))
        return functools.reduce(_add, parts[1:], parts[0])

    def __len__(self) -> int:
        return len(self.values)

    def missing(self) -> float:
        """Records with no value."""
        return float(self._sum(_missing, self.values.reset_index(drop=True)))

    def missing_numbers(self, numbers: np.ndarray) -> float:
        """Entries of ``numbers`` (this column as numbers) that are NaN: missing values."""
        return float(self._sum(_nan_count, numbers))

    def categories(self) -> list[tuple[Any, int]]:
        """``(value, count)`` for every value present, most frequent first, ties by value (shard-independent)."""
        counts = self._sum(_categories, self.values.reset_index(drop=True))
        return sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))

    def histogram(self, numbers: np.ndarray, edges: np.ndarray, clip: tuple[float, float] | None = None) -> np.ndarray:
        """Counts of ``numbers`` (this column as numbers, NaN for missing) per bin of ``edges``."""
        return np.asarray(self._sum(_Histogram(np.asarray(edges), clip), numbers), dtype=np.float64)

    def length_histogram(self, edges: np.ndarray, cap: float) -> np.ndarray:
        """Counts of text lengths (longer texts count as ``cap``) per bin of ``edges``."""
        counts = self._sum(_LengthHistogram(np.asarray(edges), cap), self.values.reset_index(drop=True))
        return np.asarray(counts, dtype=np.float64)
