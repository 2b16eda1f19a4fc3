from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privsynth.audit.attacks import (
    attribute_inference,
    epsilon_lower_bound,
    linkability,
    membership_inference,
    one_run_audit,
    risk,
    singling_out,
    wilson,
)


@settings(max_examples=60, deadline=None)
@given(trials=st.integers(1, 500), data=st.data())
def test_wilson_interval_contains_the_rate(trials: int, data) -> None:
    successes = data.draw(st.integers(0, trials))
    rate = wilson(successes, trials)
    assert 0.0 <= rate.low <= rate.value <= rate.high <= 1.0


def test_risk_is_zero_when_attack_equals_control() -> None:
    r = risk(wilson(20, 100), wilson(20, 100))
    assert r.risk == pytest.approx(0.0) and r.low == 0.0


def test_epsilon_lower_bound_is_monotone_and_zero_at_chance() -> None:
    assert epsilon_lower_bound(100, 50) == 0.0
    bounds = [epsilon_lower_bound(200, c) for c in (120, 150, 180, 200)]
    assert bounds == sorted(bounds) and bounds[-1] > 2.5


def test_one_run_audit_detects_a_memorising_model() -> None:
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    leaky = one_run_audit(np.where(included, 5.0, 0.0) + rng.normal(0, 0.1, 1000), included)
    blind = one_run_audit(rng.normal(0, 1, 1000), included)
    assert leaky.epsilon_lower_bound > 2.0
    assert blind.epsilon_lower_bound < 0.5


def test_membership_inference_separates_copies_from_unseen(rng: np.random.Generator) -> None:
    members = rng.random((400, 5)).astype(np.float32)
    non_members = rng.random((400, 5)).astype(np.float32)
    leaked = membership_inference(members, non_members, members.copy(), bootstrap=50)
    fresh = membership_inference(members, non_members, rng.random((400, 5)).astype(np.float32), bootstrap=50)
    assert leaked.auc > 0.95 and leaked.tpr_at_1pct > 0.9
    assert 0.4 < fresh.auc < 0.6


def test_anonymeter_style_attacks_find_copied_tables(rng: np.random.Generator) -> None:
    train = rng.integers(0, 6, size=(600, 10))
    control = rng.integers(0, 6, size=(600, 10))
    copied = train.copy()
    fresh = rng.integers(0, 6, size=(600, 10))
    assert linkability(train, control, copied).risk > 0.5
    assert linkability(train, control, fresh).risk < 0.1
    assert attribute_inference(train, control, copied, 0).risk > 0.5
    assert attribute_inference(train, control, fresh, 0).risk < 0.15
    assert singling_out(train, control, copied) is None  # 36 value pairs over 600 rows: none looks unique


def test_singling_out_finds_unique_rows_of_a_copied_table_and_says_n_a_when_it_cannot_try(
    rng: np.random.Generator,
) -> None:
    # Before: with no predicate to try the attack reported risk 0 ("ok"); it is "n/a" now, and on data where it
    # can run, a copied table is singled out far more than a fresh one.
    train = rng.integers(0, 40, size=(600, 6))
    control = rng.integers(0, 40, size=(600, 6))
    copied = singling_out(train, control, train.copy())
    fresh = singling_out(train, control, rng.integers(0, 40, size=(600, 6)))
    assert copied is not None and fresh is not None
    assert copied.risk > 0.5 and fresh.risk < 0.1
    low = rng.integers(0, 2, size=(300, 4))
    assert singling_out(low, low.copy(), low.copy()) is None
