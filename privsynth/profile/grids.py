"""Public, data-independent grids that DP histograms are computed over.

A histogram over a grid fixed before looking at the data costs only its Gaussian noise; the grid itself leaks
nothing. Bounds learned from a coarse grid (under DP) then define a finer grid for quantiles.
"""

from __future__ import annotations

import numpy as np

_DAY_NS = 86_400 * 10**9


def magnitude_edges(per_decade: int = 8, low_exp: int = -6, high_exp: int = 12) -> np.ndarray:
    """Sign-symmetric geometric edges: 0, then +/- 10^(j/per_decade) from 10^low_exp to 10^high_exp.

    Values beyond the outermost edges are clipped into the outermost bins.

    >>> e = magnitude_edges(per_decade=1, low_exp=0, high_exp=2)
    >>> e.tolist()
    [-100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0]
    """
    positive = 10.0 ** (np.arange(low_exp * per_decade, high_exp * per_decade + 1) / per_decade)
    return np.concatenate([-positive[::-1], [0.0], positive])


def month_edges(first_year: int = 1900, last_year: int = 2100) -> np.ndarray:
    """Edges at the first day of every month, in days since 1970-01-01."""
    months = np.arange(f"{first_year}-01", f"{last_year + 1}-01", dtype="datetime64[M]")
    return months.astype("datetime64[D]").astype(np.int64).astype(np.float64)


def linear_edges(low: float, high: float, bins: int, *, integer: bool) -> np.ndarray:
    """``bins`` equal-width bins on [low, high]; for integers, one bin per value when the range allows.

    >>> linear_edges(0, 3, 256, integer=True).tolist()
    [-0.5, 0.5, 1.5, 2.5, 3.5]
    """
    if integer:
        low, high = float(np.floor(low)), float(np.ceil(high))
        if high - low + 1 <= bins:
            return np.arange(low - 0.5, high + 1.0, 1.0)
        return np.linspace(low - 0.5, high + 0.5, bins + 1)
    if high <= low:
        high = low + 1.0
    return np.linspace(low, high, bins + 1)


def fine_edges(low: float, high: float, bins: int, *, integer: bool) -> np.ndarray:
    """Fine grid inside [low, high] for DP histograms, resolving both dense heads and long tails.

    Linear bins alone cannot resolve a column that is mostly zero with a tail to 100,000 (capital gains): when
    the range spans two orders of magnitude above zero, half the bins are geometric, and whole numbers near the
    bottom get unit bins. Depends only on the (public or DP) bounds and the bin budget.

    >>> e = fine_edges(0, 99_999, 64, integer=True)
    >>> e[:3].tolist(), float(e[-1]), len(e) <= 64 + 18
    ([-0.5, 0.5, 1.5], 99999.5, True)
    """
    if integer and np.ceil(high) - np.floor(low) + 1 <= bins:
        return linear_edges(low, high, bins, integer=True)
    if not (low >= 0 and high / max(low, 1.0) >= 100):
        edges = linear_edges(low, high, bins, integer=integer)
        if integer:  # counts pile up on the smallest values (0 days, 1 visit): give them unit bins
            base = np.floor(low)
            edges = np.unique(np.concatenate([edges, np.arange(base, min(base + 8, np.ceil(high))) + 0.5]))
        return edges
    half = max(bins // 2, 2)
    start = max(low, 1.0 if integer else high * 1e-4)
    edges = np.concatenate([np.linspace(low, high, half + 1), np.geomspace(start, high, half + 1)])
    if integer:
        edges = np.floor(edges) + 0.5
        edges = np.concatenate([edges, np.arange(np.floor(low), np.floor(low) + 16) + 0.5])
        edges = np.clip(edges, np.floor(low) - 0.5, np.ceil(high) + 0.5)
        edges = np.concatenate([edges, [np.floor(low) - 0.5, np.ceil(high) + 0.5]])
    else:
        edges = np.concatenate([edges, [low, high]])
    return np.unique(edges)


def length_edges(max_length: int) -> np.ndarray:
    """Edges for text lengths in characters: unit bins to 16, then about 12 % wider each, up to ``max_length``.

    >>> length_edges(20).tolist()[:3], length_edges(20).tolist()[-1]
    ([0.0, 1.0, 2.0], 21.0)
    """
    edges = [float(i) for i in range(17)]
    while edges[-1] < max_length:
        edges.append(float(np.ceil(edges[-1] * 1.12)))
    edges = [e for e in edges if e < max_length + 1] + [float(max_length + 1)]
    return np.asarray(sorted(set(edges)), dtype=np.float64)


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the bin of each value, clipping values outside the grid into the outermost bins."""
    idx = np.searchsorted(edges, values, side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


def to_days(values: np.ndarray) -> np.ndarray:
    """datetime64[ns] values as float days since 1970-01-01 (NaT becomes NaN)."""
    raw = values.astype("datetime64[ns]")
    out = raw.astype(np.int64).astype(np.float64) / _DAY_NS
    out[np.isnat(raw)] = np.nan
    return out
