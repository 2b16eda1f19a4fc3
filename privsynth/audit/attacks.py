"""Privacy attacks against a synthetic table, each measured against a control of real-unseen records.

- **Membership inference** (distance-based): a record is guessed a member when a synthetic row lies close to
  it. Members are training records, non-members holdout records. AUC and TPR at 1 % and 0.1 % FPR, with
  bootstrap CIs.
- **Singling out, linkability, attribute inference** in the style of anonymeter (Giomi et al. 2023): an attack
  run on training records is compared with the same attack on holdout records (the control), and
  ``risk = (attack - control) / (1 - control)``, with Wilson confidence intervals on both rates.
- **One-run audit** (Steinke, Nasr, Jagielski 2023): with canaries planted at fit time (each included with
  probability 1/2), the number of correct membership guesses among the most confident ones gives an empirical
  lower bound on epsilon. A lower bound above the claimed epsilon means a bug.

All attacks read real records (outside the DP guarantee); their results are aggregates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from privsynth.engine import Engine, LocalEngine


@dataclass(frozen=True)
class Rate:
    """A success rate with its 95 % Wilson interval."""

    value: float
    low: float
    high: float
    trials: int


def wilson(successes: int, trials: int, z: float = 1.959964) -> Rate:
    """Wilson score interval.

    >>> r = wilson(8, 10); (round(r.value, 2), round(r.low, 3), round(r.high, 3))
    (0.8, 0.49, 0.943)
    """
    if trials == 0:
        return Rate(0.0, 0.0, 1.0, 0)
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return Rate(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)), trials)


@dataclass(frozen=True)
class Risk:
    """Anonymeter-style risk: how much better the attack does on training records than on unseen ones."""

    attack: Rate
    control: Rate
    risk: float
    low: float
    high: float


def risk(attack: Rate, control: Rate) -> Risk:
    """``(attack - control) / (1 - control)``, with bounds from the Wilson intervals (clipped to [0, 1]).

    >>> round(risk(wilson(30, 100), wilson(10, 100)).risk, 3)
    0.222
    """

    def r(a: float, c: float) -> float:
        return (a - c) / (1 - c) if c < 1 else 0.0

    value = r(attack.value, control.value)
    return Risk(attack, control, value, max(0.0, r(attack.low, control.high)), min(1.0, r(attack.high, control.low)))


# ----- membership inference --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MembershipInference:
    """Distance-based MIA: AUC and TPR at low FPR, with bootstrap CIs."""

    auc: float
    auc_low: float
    auc_high: float
    tpr_at_1pct: float
    tpr_at_01pct: float
    members: int
    non_members: int


def _auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    scores = np.concatenate([scores_pos, scores_neg])
    ranks = _average_ranks(scores)
    n_pos, n_neg = len(scores_pos), len(scores_neg)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def _tpr_at(scores_pos: np.ndarray, scores_neg: np.ndarray, fpr: float) -> float:
    threshold = np.quantile(scores_neg, 1 - fpr)
    return float((scores_pos > threshold).mean())


def membership_inference(
    members: np.ndarray,
    non_members: np.ndarray,
    synthetic: np.ndarray,
    *,
    seed: int = 0,
    bootstrap: int = 200,
    engine: Engine | None = None,
) -> MembershipInference:
    """Score = -distance to the nearest synthetic row; members are train rows, non-members holdout rows."""
    search = (engine or LocalEngine()).nearest
    rng = np.random.default_rng(seed)
    size = min(len(members), len(non_members))
    members = members[rng.choice(len(members), size=size, replace=False)]
    non_members = non_members[rng.choice(len(non_members), size=size, replace=False)]
    pos = -search(synthetic, members, 1)[0][:, 0]
    neg = -search(synthetic, non_members, 1)[0][:, 0]
    boots = []
    for _ in range(bootstrap):
        i, j = rng.integers(0, size, size), rng.integers(0, size, size)
        boots.append(_auc(pos[i], neg[j]))
    return MembershipInference(
        auc=_auc(pos, neg),
        auc_low=float(np.quantile(boots, 0.025)),
        auc_high=float(np.quantile(boots, 0.975)),
        tpr_at_1pct=_tpr_at(pos, neg, 0.01),
        tpr_at_01pct=_tpr_at(pos, neg, 0.001),
        members=size,
        non_members=size,
    )


# ----- anonymeter-style attacks on coded tables -----------------------------------------------------------------


def singling_out(
    train: np.ndarray, control: np.ndarray, synthetic: np.ndarray, *, attacks: int = 500, seed: int = 0
) -> Risk | None:
    """Predicates built from synthetic rows (rare value pairs) that match exactly one target record.

    Rows are integer-coded tables (same coding for all three). A predicate fixes two columns to the values of
    a synthetic row whose pair is rare in the synthetic data; it succeeds on a table if exactly one record
    matches. Train and control are compared at equal size. ``None`` when the attacker found no predicate to
    try (every value pair is common, as in low-cardinality tables): the attack could not run, which is "n/a",
    not a measured risk of 0.
    """
    rng = np.random.default_rng(seed)
    size = min(len(train), len(control))
    train = train[rng.choice(len(train), size=size, replace=False)]
    control = control[rng.choice(len(control), size=size, replace=False)]
    columns = synthetic.shape[1]
    wins_t = wins_c = made = 0
    for _ in range(attacks * 3):
        if made >= attacks or columns < 2:
            break
        a, b = rng.choice(columns, size=2, replace=False)
        row = synthetic[rng.integers(len(synthetic))]
        in_synth = int(((synthetic[:, a] == row[a]) & (synthetic[:, b] == row[b])).sum())
        if in_synth > 2:  # the attacker only tries predicates that look unique in the synthetic data
            continue
        made += 1
        wins_t += int(((train[:, a] == row[a]) & (train[:, b] == row[b])).sum() == 1)
        wins_c += int(((control[:, a] == row[a]) & (control[:, b] == row[b])).sum() == 1)
    if made == 0:
        return None
    return risk(wilson(wins_t, made), wilson(wins_c, made))


def linkability(
    train: np.ndarray,
    control: np.ndarray,
    synthetic: np.ndarray,
    *,
    targets: int = 500,
    seed: int = 0,
    neighbours: int = 1,
    engine: Engine | None = None,
) -> Risk:
    """Link two halves of a target's columns through the synthetic data (nearest synthetic row on each half)."""
    search = (engine or LocalEngine()).nearest
    rng = np.random.default_rng(seed)
    columns = synthetic.shape[1]
    if columns < 2:
        return risk(wilson(0, 0), wilson(0, 0))
    order = rng.permutation(columns)
    left, right = order[: columns // 2], order[columns // 2 :]

    def rate(table: np.ndarray) -> Rate:
        pick = table[rng.choice(len(table), size=min(targets, len(table)), replace=False)].astype(np.float32)
        syn = synthetic.astype(np.float32)
        _, a = search(np.ascontiguousarray(syn[:, left]), np.ascontiguousarray(pick[:, left]), neighbours)
        _, b = search(np.ascontiguousarray(syn[:, right]), np.ascontiguousarray(pick[:, right]), neighbours)
        hits = sum(bool(set(x) & set(y)) for x, y in zip(a, b, strict=True))
        return wilson(hits, len(pick))

    return risk(rate(train), rate(control))


def attribute_inference(
    train: np.ndarray,
    control: np.ndarray,
    synthetic: np.ndarray,
    secret: int,
    *,
    targets: int = 500,
    seed: int = 0,
    engine: Engine | None = None,
) -> Risk:
    """Guess a target's ``secret`` column from the nearest synthetic row on all other columns."""
    search = (engine or LocalEngine()).nearest
    rng = np.random.default_rng(seed)
    aux = [c for c in range(synthetic.shape[1]) if c != secret]
    syn = np.ascontiguousarray(synthetic[:, aux].astype(np.float32))

    def rate(table: np.ndarray) -> Rate:
        pick = table[rng.choice(len(table), size=min(targets, len(table)), replace=False)]
        _, idx = search(syn, np.ascontiguousarray(pick[:, aux].astype(np.float32)), 1)
        guesses = synthetic[idx[:, 0], secret]
        return wilson(int((guesses == pick[:, secret]).sum()), len(pick))

    return risk(rate(train), rate(control))


# ----- one-run audit with canaries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OneRunAudit:
    """Empirical epsilon lower bound from canary guesses (Steinke, Nasr, Jagielski 2023), at the claimed delta."""

    canaries: int
    guesses: int
    correct: int
    delta: float
    epsilon_lower_bound: float
    confidence: float


def one_run_p_value(*, canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """P[at least ``correct`` of ``guesses`` right] for any (epsilon, delta)-DP mechanism (one-run audit).

    Steinke, Nasr and Jagielski (2023), Theorem 5.2: with ``m`` canaries each included with probability 1/2,
    the number of right guesses is dominated by a Binomial(r, e^eps / (1 + e^eps)) up to a delta term,
    ``beta + alpha * delta * 2m`` with ``beta`` the binomial tail at ``correct`` and
    ``alpha = max_i P[correct - i <= Binomial < correct] / i``.

    >>> round(one_run_p_value(canaries=1000, guesses=100, correct=80, epsilon=1.0, delta=0.0), 4)
    0.0716
    >>> round(one_run_p_value(canaries=1000, guesses=100, correct=80, epsilon=1.0, delta=1e-3), 4)
    0.2168
    """
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError("need 0 <= correct <= guesses <= canaries")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(binom.sf(correct - 1, guesses, q))
    alpha, window = 0.0, 0.0
    for i in range(1, correct + 1):
        window += float(binom.pmf(correct - i, guesses, q))  # P[correct - i <= Binomial < correct]
        alpha = max(alpha, window / i)
    return min(1.0, beta + alpha * delta * 2 * canaries)


def epsilon_lower_bound(
    guesses: int, correct: int, *, canaries: int | None = None, delta: float = 0.0, confidence: float = 0.95
) -> float:
    """Largest epsilon that an (epsilon, delta)-DP mechanism needs to explain ``correct`` of ``guesses``.

    The bound is the largest epsilon rejected at ``confidence`` by :func:`one_run_p_value` (delta = 0 gives the
    pure-DP bound). An honest mechanism's bound stays below its claimed epsilon with probability ``confidence``.

    >>> epsilon_lower_bound(100, 50), round(epsilon_lower_bound(100, 95), 2)
    (0.0, 2.17)
    """
    m = canaries if canaries is not None else guesses
    if guesses == 0 or correct <= guesses / 2:
        return 0.0
    alpha = 1 - confidence

    def p_value(eps: float) -> float:
        return one_run_p_value(canaries=m, guesses=guesses, correct=correct, epsilon=eps, delta=delta)

    low, high = 0.0, 50.0
    if p_value(low) > alpha:
        return 0.0
    for _ in range(80):
        mid = (low + high) / 2
        if p_value(mid) <= alpha:
            low = mid
        else:
            high = mid
    return low


def one_run_audit(
    scores: np.ndarray, included: np.ndarray, *, delta: float = 0.0, guess_share: float = 0.2
) -> OneRunAudit:
    """Guess 'included' for the highest-scoring canaries and 'excluded' for the lowest, abstain on the rest."""
    m = len(scores)
    k = max(1, int(guess_share * m / 2))
    order = np.argsort(scores)
    correct = int((~included[order[:k]]).sum() + included[order[-k:]].sum())
    guesses = 2 * k
    return OneRunAudit(
        canaries=m,
        guesses=guesses,
        correct=correct,
        delta=delta,
        epsilon_lower_bound=epsilon_lower_bound(guesses, correct, canaries=m, delta=delta),
        confidence=0.95,
    )


__all__ = [
    "MembershipInference",
    "OneRunAudit",
    "Rate",
    "Risk",
    "attribute_inference",
    "epsilon_lower_bound",
    "linkability",
    "membership_inference",
    "one_run_audit",
    "one_run_p_value",
    "risk",
    "singling_out",
    "wilson",
]
