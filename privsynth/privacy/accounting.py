"""Pure accounting maths: the (epsilon, delta) of composed subsampled Gaussian mechanisms.

Every mechanism privsynth runs is a (Poisson-subsampled) Gaussian mechanism, described by three numbers, the
same triple Opacus' accountants keep in their history:

- ``noise_multiplier``: noise standard deviation divided by the L2 sensitivity;
- ``sample_rate``: Poisson sampling probability (1.0 for a query over the whole corpus);
- ``steps``: how many times it runs.

A DP-SGD run is ``(sigma, batch/n, steps)``; a profiling query over the whole corpus is ``(sigma, 1.0, 1)``.
Neighbouring datasets differ by adding or removing one unit of privacy (a record, or a person with all of
their records), which is what Poisson subsampling analyses assume.

Nothing here holds state; :class:`privsynth.privacy.ledger.PrivacyLedger` is the only object that does.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from privsynth.errors import ConfigError

# Orders for RDP: Opacus' defaults plus large orders, which weakly-composed Gaussians (profiling queries with
# sample rate 1 and large noise) need for a tight conversion.
RDP_ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *range(12, 64),
    *(64, 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 2048, 4096),
)


PRV_MIN_NOISE = 0.4

#: Above this sample rate, only these fractional orders are evaluated (besides every integer one). Opacus' series
#: for a fractional order converges slowly when q is large (about 12 ms per order at q = 0.5 and noise 25, against
#: microseconds at q = 0.01), and a calibration visits hundreds of noise levels; integer orders have a fast closed
#: form. Skipping an order is always sound (the RDP bound at the orders kept still holds; it can only be a little
#: looser, about 1 % at q = 0.5; PRV results do not change).
DENSE_ORDERS_MAX_RATE = 0.1
SUBSAMPLED_FRACTIONAL_ORDERS = frozenset({1.5})


class AccountantKind(StrEnum):
    """Which accountant composes mechanisms. PRV is tighter; RDP is kept for cross-checks."""

    PRV = "prv"
    RDP = "rdp"


class Mechanism(BaseModel):
    """A (subsampled) Gaussian mechanism run ``steps`` times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    noise_multiplier: float = Field(gt=0, description="Noise std / L2 sensitivity.")
    sample_rate: float = Field(gt=0, le=1, description="Poisson sampling probability.")
    steps: int = Field(ge=0, description="Number of runs.")

    def as_tuple(self) -> tuple[float, float, int]:
        """The (sigma, q, steps) triple Opacus' accountants use."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


def merge(mechanisms: Iterable[Mechanism]) -> list[Mechanism]:
    """Canonical form: equal (sigma, q) pairs merged, zero-step runs dropped, sorted.

    Composition does not depend on order, and a canonical form makes every accountant call with the same
    mechanisms return the same number, whatever order they were spent in.

    >>> merge([Mechanism(noise_multiplier=1, sample_rate=0.1, steps=5), Mechanism(noise_multiplier=1,
    ...        sample_rate=0.1, steps=7), Mechanism(noise_multiplier=2, sample_rate=1, steps=0)])
    [Mechanism(noise_multiplier=1.0, sample_rate=0.1, steps=12)]
    """
    steps: dict[tuple[float, float], int] = {}
    for m in mechanisms:
        if m.steps > 0:
            key = (m.noise_multiplier, m.sample_rate)
            steps[key] = steps.get(key, 0) + m.steps
    return [Mechanism(noise_multiplier=s, sample_rate=q, steps=t) for (s, q), t in sorted(steps.items())]


@functools.lru_cache(maxsize=8192)
def _rdp_one_step(sample_rate: float, noise_multiplier: float) -> np.ndarray:
    """RDP of one run at every order (cached: bisections revisit the same noise levels)."""
    orders = np.asarray(RDP_ORDERS)
    if sample_rate == 1.0:
        return orders / (2 * noise_multiplier**2)  # the Gaussian mechanism's closed form
    from opacus.accountants.analysis import rdp

    dense = sample_rate <= DENSE_ORDERS_MAX_RATE
    kept = np.array(
        [dense or float(o).is_integer() or round(float(o), 2) in SUBSAMPLED_FRACTIONAL_ORDERS for o in orders]
    )
    out = np.full(len(orders), np.inf)  # an order not evaluated bounds nothing: the minimum over orders skips it
    out[kept] = rdp.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=[float(o) for o in orders[kept]]
    )
    return out


def _rdp_epsilon(mechanisms: Sequence[Mechanism], delta: float) -> float:
    from opacus.accountants.analysis import rdp

    total = np.zeros(len(RDP_ORDERS))
    for m in mechanisms:
        total += m.steps * _rdp_one_step(m.sample_rate, m.noise_multiplier)
    with warnings.catch_warnings():
        # Opacus warns when the best order is an end of the list; ours reaches 4096, far past useful orders.
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        eps, _ = rdp.get_privacy_spent(orders=list(RDP_ORDERS), rdp=total, delta=delta)
    return float(eps)


def _safe_domain_size(mechanisms: Sequence[Mechanism], *, eps_error: float, delta_error: float) -> float:
    """Half-width of the PRV discretisation domain (Gopi et al. 2021, remark 5.6, as Opacus computes it).

    Opacus bounds the privacy loss's tails with its own RDP accountant, whose fractional orders are slow at large
    sample rates; this uses :func:`_rdp_epsilon` (cached, fewer fractional orders). Any valid RDP bound is a valid
    tail bound, so the domain stays safe.
    """
    total = sum(m.steps for m in mechanisms)
    size = _rdp_epsilon(mechanisms, delta_error / 4)
    for m in mechanisms:
        one = Mechanism(noise_multiplier=m.noise_multiplier, sample_rate=m.sample_rate, steps=1)
        size = max(size, _rdp_epsilon([one], delta_error / (8 * total)))
    return max(size, eps_error) + 3


def _prv_epsilon(mechanisms: Sequence[Mechanism], delta: float) -> float:
    from opacus.accountants import PRVAccountant
    from opacus.accountants.analysis.prv import Domain

    class Accountant(PRVAccountant):  # type: ignore[misc]
        def _get_domain(self, prvs, num_self_compositions, eps_error, delta_error):  # type: ignore[no-untyped-def]
            size = _safe_domain_size(mechanisms, eps_error=eps_error, delta_error=delta_error)
            total = sum(num_self_compositions)
            mesh = eps_error / np.sqrt(total * np.log(12 / delta_error) / 2)  # Opacus' mesh, unchanged
            return Domain.create_aligned(-size, size, mesh)

    accountant = Accountant()
    accountant.history = [m.as_tuple() for m in mechanisms]
    # Opacus' PRV takes log(1 - q), which is -inf for q = 1 (a full-corpus query); the -inf is handled
    # correctly downstream, only numpy's warning is noise. The tail bound's "largest alpha" warning only means
    # the domain is larger than needed (safe, slightly slower).
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        return float(accountant.get_epsilon(delta=delta, eps_error=0.01))


def composed_epsilon(
    mechanisms: Iterable[Mechanism], *, delta: float, accountant: AccountantKind = AccountantKind.PRV
) -> float:
    """Epsilon at ``delta`` of all ``mechanisms`` composed (an upper bound: PRV's upper estimate).

    >>> round(composed_epsilon([Mechanism(noise_multiplier=1.0, sample_rate=256 / 60000, steps=2343)],
    ...                        delta=1e-5, accountant=AccountantKind.RDP), 2)
    1.35
    >>> composed_epsilon([], delta=1e-5)
    0.0
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    canonical = merge(mechanisms)
    if not canonical:
        return 0.0
    if accountant is AccountantKind.RDP or min(m.noise_multiplier for m in canonical) < PRV_MIN_NOISE:
        # Below ~0.4 noise, PRV's discretised domain grows without bound (memory); RDP is an equally valid
        # (looser) bound there, and such epsilons are far beyond any meaningful guarantee anyway.
        return _rdp_epsilon(canonical, delta)
    eps = _prv_epsilon(canonical, delta)
    if not math.isfinite(eps):
        # PRV's discretisation overflows for very large epsilons; RDP is an equally valid (looser) bound.
        return _rdp_epsilon(canonical, delta)
    return eps


def gaussian_epsilon(noise_multiplier: float, *, delta: float, queries: int = 1) -> float:
    """Exact epsilon of ``queries`` Gaussian queries with this noise multiplier (Balle & Wang 2018).

    ``queries`` Gaussian queries of sensitivity 1 with noise ``sigma`` compose to one Gaussian query with noise
    ``sigma / sqrt(queries)``; the analytic Gaussian mechanism gives its exact (epsilon, delta) curve.

    >>> round(gaussian_epsilon(1.0, delta=1e-5), 3)
    4.377
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    mu = math.sqrt(queries) / noise_multiplier

    def delta_at(eps: float) -> float:
        # exp(eps) * Phi(x) computed in log space: eps can be large enough to overflow exp alone
        return float(norm.cdf(-eps / mu + mu / 2) - math.exp(eps + norm.logcdf(-eps / mu - mu / 2)))

    if delta_at(0.0) <= delta:
        return 0.0
    high = 1.0
    while delta_at(high) > delta:
        high *= 2
    return float(brentq(lambda e: delta_at(e) - delta, 0.0, high, xtol=1e-10))


def noise_for_epsilon(
    epsilon: float,
    *,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: AccountantKind = AccountantKind.RDP,
    rtol: float = 1e-3,
) -> float:
    """Smallest noise multiplier whose ``steps`` runs at ``sample_rate`` stay within ``epsilon`` at ``delta``.

    Bisection in log-space; monotone because more noise never costs more epsilon.

    >>> sigma = noise_for_epsilon(1.0, delta=1e-5, sample_rate=0.01, steps=3000)
    >>> round(sigma, 2)
    2.36
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")

    def eps(sigma: float) -> float:
        return composed_epsilon(
            [Mechanism(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps)],
            delta=delta,
            accountant=accountant,
        )

    low, high = 0.05, 1.0
    while eps(high) > epsilon:
        low, high = high, high * 2
        if high > 1e6:
            raise ConfigError(
                f"epsilon {epsilon:.3g} is too small to calibrate: no noise multiplier below 1e6 reaches it over "
                f"{steps} step(s) at sample rate {sample_rate:.3g}; raise epsilon (or train fewer steps)"
            )
    if eps(low) <= epsilon:
        return low
    while high / low > 1 + rtol:
        mid = math.sqrt(low * high)
        if eps(mid) > epsilon:
            low = mid
        else:
            high = mid
    return high
