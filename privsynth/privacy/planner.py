"""Budget planning: turn a total (epsilon, delta) and a split across stages into noise multipliers.

The user gives one total and a split (``profile: 0.1, tabular: 0.9``). Each stage has a *shape* fixed before
any noise: a profiling query count, or a DP-SGD sample rate and step count. The planner calibrates every stage's
noise jointly so that the composed epsilon lands in ``[0.97, 1.0] x target``: no budget wasted, none exceeded.

Method: a scale ``c`` sets each stage's stand-alone epsilon to ``c * share * target`` (noise found by RDP
inversion, which is fast); the composed epsilon under the ledger's accountant is increasing in ``c``, so a
bisection on ``c`` hits the window. Composition is sub-additive, so ``c`` usually ends above 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from privsynth.errors import DeltaTooLargeError
from privsynth.privacy.accounting import AccountantKind, Mechanism, composed_epsilon, noise_for_epsilon
from privsynth.privacy.ledger import StageName

log = logging.getLogger(__name__)

LOW, HIGH = 0.97, 1.0
_AIM_LOW, _AIM_HIGH = 0.975, 0.995  # inside [LOW, HIGH] with room for accountant round-off


class StageShape(BaseModel):
    """What a stage will run, before its noise is known."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: StageName
    sample_rate: float = Field(gt=0, le=1)
    steps: int = Field(gt=0)


class PlannedStage(BaseModel):
    """A stage with its share of the budget and its calibrated mechanism."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: StageName
    share: float
    mechanism: Mechanism


class BudgetPlan(BaseModel):
    """Calibrated noise for every stage; ``composed_epsilon`` is within [0.97, 1.0] x ``target_epsilon``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_epsilon: float
    delta: float
    extra_delta: float
    accountant: AccountantKind
    stages: tuple[PlannedStage, ...]
    composed_epsilon: float

    def mechanism(self, stage: str) -> Mechanism:
        """The planned mechanism of one stage."""
        for planned in self.stages:
            if planned.stage == stage:
                return planned.mechanism
        raise KeyError(f"stage '{stage}' is not in this plan")


#: The largest default delta; a fit opens its ledger here and lowers it once its DP count of units is known.
MAX_DEFAULT_DELTA = 1e-5


def default_delta(n: int) -> float:
    """``min(1e-5, 0.1 / n)``: small enough that publishing one record outright is not an option.

    >>> default_delta(1000)
    1e-05
    >>> f"{default_delta(1_000_000):.0e}"
    '1e-07'
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    return min(MAX_DEFAULT_DELTA, 0.1 / n)


def check_delta(delta: float, n: int, *, exact: bool = False) -> None:
    """Refuse ``delta >= 1/n``: at that level a mechanism may publish a whole record with probability delta.

    ``exact``: ``n`` is the corpus' exact number of people (not a DP count or the user's estimate), so the message
    leaves it out: an error message is a log, and the exact count is accounted nowhere. Whether the check refuses
    still depends on it (stated in the privacy officers' guide).
    """
    if not 0 < delta < 1:
        raise DeltaTooLargeError(f"--delta must be between 0 and 1, got {delta}")
    if delta >= 1.0 / n:
        bound = "1/n for this corpus (n: its number of people)" if exact else f"1/n = 1/{n}"
        advice = "Leave --delta out for" if exact else f"Use at most {default_delta(n):g},"
        raise DeltaTooLargeError(
            f"--delta {delta:g} is >= {bound}: that would allow releasing a whole record with probability delta. "
            f"{advice} the default, min(1e-5, 0.1/n)."
        )


def _normalise(shares: Mapping[str, float], stages: Sequence[str]) -> dict[str, float]:
    missing = [s for s in stages if s not in shares or not shares[s] > 0]
    if missing:
        raise ValueError(f"the budget split gives no positive share to: {', '.join(missing)}")
    total = sum(shares[s] for s in stages)
    return {s: shares[s] / total for s in stages}


def plan_budget(
    *,
    epsilon: float,
    delta: float,
    shapes: Sequence[StageShape],
    shares: Mapping[str, float],
    accountant: AccountantKind = AccountantKind.PRV,
    extra_delta: float = 0.0,
    spent: Sequence[Mechanism] = (),
) -> BudgetPlan:
    """Calibrate noise for every stage so the composed epsilon lands in [0.97, 1.0] x ``epsilon``.

    Args:
        epsilon: total target epsilon.
        delta: total delta (including ``extra_delta``).
        shapes: sample rate and steps of every stage to plan.
        shares: relative budget per stage (normalised over the planned stages).
        accountant: the ledger's accountant.
        extra_delta: delta reserved by threshold mechanisms.
        spent: mechanisms already in the ledger (composed with the plan).
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    accountant_delta = delta - extra_delta
    if not 0 < accountant_delta < 1:
        raise ValueError("extra_delta must be smaller than delta")
    stages = [s.stage for s in shapes]
    if len(set(stages)) != len(stages):
        raise ValueError("each stage may appear once in a plan")
    weights = _normalise(shares, stages)

    def mechanisms(c: float) -> list[Mechanism]:
        return [
            Mechanism(
                noise_multiplier=noise_for_epsilon(
                    c * weights[s.stage] * epsilon,
                    delta=accountant_delta,
                    sample_rate=s.sample_rate,
                    steps=s.steps,
                    accountant=AccountantKind.RDP,
                ),
                sample_rate=s.sample_rate,
                steps=s.steps,
            )
            for s in shapes
        ]

    def total(c: float) -> tuple[float, list[Mechanism]]:
        ms = mechanisms(c)
        return composed_epsilon([*spent, *ms], delta=accountant_delta, accountant=accountant), ms

    low_c, high_c = 0.0, 1.0
    eps_c, ms = total(high_c)
    while eps_c < _AIM_LOW * epsilon:  # grow until the window is bracketed
        low_c, high_c = high_c, high_c * 2
        eps_c, ms = total(high_c)
        if high_c > 1e4:
            break
    if eps_c < LOW * epsilon:
        # Even the least noise the planner uses (0.05) spends less than the target: spending less is allowed.
        log.warning("epsilon %.4g cannot be spent by this run; it will spend %.4g", epsilon, eps_c)
        return _plan(epsilon, delta, extra_delta, accountant, shapes, weights, ms, eps_c)
    best: tuple[float, list[Mechanism]] | None = (eps_c, ms) if LOW * epsilon <= eps_c <= HIGH * epsilon else None
    below: tuple[float, list[Mechanism]] | None = None  # the most spent without passing the target
    for _ in range(40):
        if best is not None and _AIM_LOW * epsilon <= best[0] <= _AIM_HIGH * epsilon:
            break
        mid = (low_c + high_c) / 2 if low_c > 0 else high_c / 2
        eps_c, ms = total(mid)
        if LOW * epsilon <= eps_c <= HIGH * epsilon and (
            best is None or abs(eps_c - 0.985 * epsilon) < abs(best[0] - 0.985 * epsilon)
        ):
            best = (eps_c, ms)
        if eps_c <= HIGH * epsilon and (below is None or eps_c > below[0]):
            below = (eps_c, ms)
        if eps_c > _AIM_HIGH * epsilon:
            high_c = mid
        else:
            low_c = mid
    if best is None and below is not None:
        # The composed epsilon can jump across the window (a stage whose noise no longer moves, accountant
        # discretisation at large epsilon and few steps): spend a little less than asked rather than fail.
        log.warning(
            "epsilon %.4g: the plan spends %.4g (the nearest below the target it could land)", epsilon, below[0]
        )
        best = below
    if best is None:
        raise RuntimeError(f"budget planner could not land in [{LOW}, {HIGH}] x epsilon {epsilon}; please report this")
    eps_final, ms_final = best
    return _plan(epsilon, delta, extra_delta, accountant, shapes, weights, ms_final, eps_final)


def _plan(
    epsilon: float,
    delta: float,
    extra_delta: float,
    accountant: AccountantKind,
    shapes: Sequence[StageShape],
    weights: Mapping[str, float],
    mechanisms: Sequence[Mechanism],
    composed: float,
) -> BudgetPlan:
    return BudgetPlan(
        target_epsilon=epsilon,
        delta=delta,
        extra_delta=extra_delta,
        accountant=accountant,
        stages=tuple(
            PlannedStage(stage=s.stage, share=weights[s.stage], mechanism=m)
            for s, m in zip(shapes, mechanisms, strict=True)
        ),
        composed_epsilon=composed,
    )


def steps_for_epochs(*, epochs: float, sample_rate: float) -> int:
    """DP-SGD steps for a number of epochs at a Poisson sample rate (at least one).

    >>> steps_for_epochs(epochs=10, sample_rate=256 / 60000)
    2344
    """
    return max(1, math.ceil(epochs / sample_rate))
