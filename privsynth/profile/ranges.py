"""Bounds learned under DP that cannot explode: multi-scale detection on one noisy coarse histogram.

A numerical or date column without declared bounds spends one Gaussian histogram over a public grid (the
*public default range*: :func:`~privsynth.profile.grids.magnitude_edges`, 8 geometric bins per decade from
1e-6 to 1e12 of either sign, so positive skewed numbers are binned on a log scale; or
:func:`~privsynth.profile.grids.month_edges`, every month from 1900 to 2100). Everything here is
post-processing of that one noisy histogram, so it costs nothing beyond the query the ledger already holds.

Reading "the first and last bins above the noise floor" works when bins hold many people, and fails badly at
small n: when no single bin clears the floor, any choice is a draw of pure noise anywhere on a grid spanning 18
orders of magnitude (a white-cell count of 1e-6, or of 2.6e11). Instead, windows of 1, 2, 4, 8... adjacent bins
are tested at once: a window's noisy sum has noise ``std * sqrt(width)`` while its signal grows with every
person in it, so a small cohort is still seen at the width where enough of it sits together. Thresholds are set
by a union bound over every window of every width, so on a column of pure noise *any* window passes with
probability at most ``false_rate``. The bounds are the passing windows at the finest width where any passes:

- every passing window holds real records (except with probability ``false_rate``), so the bounds lie within
  ``width`` grid bins of where the data really are: at most a decade out on the magnitude grid when the data
  needed windows of 8 bins, never the far end of the grid;
- the width is reported, and the profile's findings tell the data team to declare bounds when it is coarse.

Could an attacker learn one person's record from the bounds? Only through the noisy histogram, which is one
accounted Gaussian query; a single person moves one bin by at most the contribution bound, far below any
threshold here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

#: Chance, on a column of pure noise, that any window at any width is taken for data.
FALSE_RATE = 0.01


@dataclass(frozen=True)
class DetectedRange:
    """Grid bins ``first..last`` (inclusive) holding the data, found with windows of ``width`` bins.

    ``detected`` is false when no window cleared its threshold: the bins are then the most significant window,
    a guess the caller must flag.
    """

    first: int
    last: int
    width: int
    detected: bool


def window_widths(bins: int) -> list[int]:
    """Widths tried: powers of two up to the whole grid.

    >>> window_widths(10)
    [1, 2, 4, 8, 10]
    """
    widths = [1]
    while widths[-1] * 2 < bins:
        widths.append(widths[-1] * 2)
    if widths[-1] != bins:
        widths.append(bins)
    return widths


def window_threshold(*, std: float, bins: int, width: int, false_rate: float = FALSE_RATE) -> float:
    """The noisy sum a window of ``width`` bins must reach (union bound over every window of every width).

    >>> round(window_threshold(std=1.0, bins=290, width=1), 2), round(window_threshold(std=1.0, bins=290, width=4), 2)
    (4.43, 8.86)
    """
    widths = window_widths(bins)
    windows = sum(bins - w + 1 for w in widths)
    return float(std * np.sqrt(width) * norm.isf(false_rate / windows))


def detect_range(released: np.ndarray, *, std: float, false_rate: float = FALSE_RATE) -> DetectedRange:
    """Bins holding the data in a noisy histogram over a public grid (post-processing only).

    >>> rng = np.random.default_rng(0)
    >>> counts = np.zeros(290); counts[100:106] = 50.0          # 300 people over 6 bins, noise 20 per bin
    >>> found = detect_range(counts + rng.normal(0, 20, 290), std=20.0)
    >>> found.width, found.detected, 100 - found.width < found.first, found.last < 106 + found.width
    (2, True, True, True)
    """
    values = np.asarray(released, dtype=np.float64)
    bins = values.size
    if bins == 0:
        raise ValueError("empty histogram")
    if std <= 0:
        present = np.flatnonzero(values > 0)
        if present.size == 0:
            return DetectedRange(0, bins - 1, bins, detected=False)
        return DetectedRange(int(present[0]), int(present[-1]), 1, detected=True)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    best: tuple[float, int, int] = (-np.inf, 0, bins)
    for width in window_widths(bins):
        sums = cumulative[width:] - cumulative[:-width]  # sums[i] = values[i : i + width]
        threshold = window_threshold(std=std, bins=bins, width=width, false_rate=false_rate)
        passing = np.flatnonzero(sums >= threshold)
        if passing.size:
            return DetectedRange(int(passing[0]), int(passing[-1]) + width - 1, width, detected=True)
        z = sums / (std * np.sqrt(width))
        top = int(np.argmax(z))
        if z[top] > best[0]:
            best = (float(z[top]), top, width)
    _, start, width = best
    return DetectedRange(start, start + width - 1, width, detected=False)


__all__ = ["FALSE_RATE", "DetectedRange", "detect_range", "window_threshold", "window_widths"]
