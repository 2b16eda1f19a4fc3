"""Noise for the profile's Gaussian mechanisms, and the thresholds of sparse histograms.

Profile noise is drawn by OpenDP, a vetted DP library, never by hand-written samplers: its floating-point-safe
Gaussian (``make_gaussian`` on float vectors) samples exactly on a fine lattice from the operating system's
randomness and rounds, so the released numbers are those of the Gaussian mechanism the ledger accounts. Its
zero-concentrated privacy map gives ``rho = (sensitivity / scale)^2 / 2`` for the noise multiplier
``scale / sensitivity`` that the ledger records (checked by :func:`opendp_rho` in the tests).

Only the unsafe reproducible test mode (see :mod:`privsynth.privacy.randomness`) draws profile noise from a
seeded numpy stream instead; the ledger says so and release policies refuse it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from scipy.stats import norm

from privsynth.privacy.randomness import RngMode, Streams


@functools.cache
def _opendp() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")  # OpenDP's Gaussian measurement is in its 'contrib' set
    return dp


@functools.lru_cache(maxsize=256)
def _measurement(scale: float) -> Any:
    dp = _opendp()
    domain = dp.vector_domain(dp.atom_domain(T="f64", nan=False))
    return dp.m.make_gaussian(domain, dp.l2_distance(T="f64"), scale=scale)


def opendp_rho(*, scale: float, sensitivity: float) -> float:
    """The zCDP ``rho`` OpenDP certifies for its Gaussian at ``scale`` on inputs ``sensitivity`` apart (L2).

    The ledger accounts the same mechanism as noise multiplier ``scale / sensitivity``, whose zCDP is
    ``(sensitivity / scale)^2 / 2``:

    >>> opendp_rho(scale=10.0, sensitivity=2.0)
    0.02
    """
    return float(_measurement(float(scale)).map(float(sensitivity)))


class CountNoise:
    """Adds Gaussian noise to the profile's counts: OpenDP's sampler, or a seeded stream in unsafe test mode.

    Args:
        streams: the fit's private streams; their mode decides the sampler (never a user seed).
    """

    def __init__(self, streams: Streams) -> None:
        self.streams = streams

    @property
    def sampler(self) -> str:
        """Which sampler draws the noise (recorded in the profile)."""
        if self.streams.mode is RngMode.OS_ENTROPY:
            return "opendp.make_gaussian (float, exact lattice sampling, OS randomness)"
        return f"numpy PCG64 normal ({self.streams.mode.value}: reproducible, NOT private)"

    def add(self, counts: np.ndarray, *, scale: float, column: str, purpose: str) -> np.ndarray:
        """``counts`` plus independent N(0, scale^2) noise on each coordinate (a new stream per column/purpose)."""
        values = np.asarray(counts, dtype=np.float64)
        if values.size == 0:
            return values.copy()
        if not scale > 0:
            raise ValueError(f"noise scale must be > 0, got {scale}")
        if self.streams.mode is RngMode.OS_ENTROPY:
            noisy = _measurement(float(scale))(values.reshape(-1).tolist())
            return np.asarray(noisy, dtype=np.float64).reshape(values.shape)
        rng = self.streams.numpy("profile", column, purpose)
        return values + rng.normal(0.0, scale, size=values.shape)


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


__all__ = ["CountNoise", "noise_floor_threshold", "opendp_rho", "sparse_threshold"]
