"""Noise for Gaussian mechanisms, and the thresholds of sparse histograms (pure functions).

Noise comes from a :class:`NoiseSource`: numpy's PCG64 seeded by the caller (reproducible, for tests and
benchmarks) or, with ``secure=True``, standard normals built from the operating system's CSPRNG. Which one was
used is written into the ledger.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm


@dataclass
class NoiseSource:
    """Draws standard normal noise; ``secure=True`` uses ``os.urandom`` (Box-Muller on 53-bit uniforms)."""

    seed: int | None = None
    secure: bool = False
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def standard_normal(self, size: int) -> np.ndarray:
        """``size`` independent N(0, 1) draws."""
        if not self.secure:
            return self._rng.standard_normal(size)
        pairs = (size + 1) // 2
        raw = np.frombuffer(os.urandom(16 * pairs), dtype=np.uint64).reshape(pairs, 2)
        u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)  # in (0, 1)
        radius = np.sqrt(-2.0 * np.log(u[:, 0]))
        z = np.concatenate([radius * np.cos(2 * np.pi * u[:, 1]), radius * np.sin(2 * np.pi * u[:, 1])])
        return z[:size]


def gaussian(values: np.ndarray, *, noise_std: float, noise: NoiseSource) -> np.ndarray:
    """``values`` plus independent N(0, noise_std^2) noise."""
    return np.asarray(values, dtype=np.float64) + noise_std * noise.standard_normal(int(np.size(values))).reshape(
        np.shape(values)
    )


def sparse_threshold(*, noise_std: float, max_contribution: int, delta: float) -> float:
    """Release threshold for a histogram whose keys come from the data (Gaussian thresholding).

    One person adds at most ``max_contribution`` records, so at most that many new keys, each with a true count
    of at most ``max_contribution``. A new key is published only if its noisy count reaches the threshold; with
    ``tau = m + std * z`` where ``P[N(0,1) > z] = delta / m``, that happens with probability at most ``delta``
    in total, which is the extra delta this mechanism adds to the Gaussian's own.

    >>> round(sparse_threshold(noise_std=10.0, max_contribution=1, delta=1e-6), 2)
    48.53
    """
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    z = float(norm.isf(delta / max_contribution))
    return max_contribution + noise_std * z


def noise_floor_threshold(*, noise_std: float, bins: int, false_bins: float = 0.01) -> float:
    """A count below which a noisy bin is treated as empty: on average ``false_bins`` empty bins survive.

    Post-processing of a Gaussian histogram over a public grid; it costs no budget.

    >>> round(noise_floor_threshold(noise_std=1.0, bins=100), 2)
    3.72
    """
    return noise_std * float(norm.isf(false_bins / max(bins, 1)))


def required_std(noise_multiplier: float, sensitivity: int) -> float:
    """Noise standard deviation for an L2 sensitivity (one person moves counts by at most ``sensitivity``)."""
    return noise_multiplier * float(sensitivity)


__all__ = ["NoiseSource", "gaussian", "noise_floor_threshold", "required_std", "sparse_threshold"]
