from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privsynth.errors import BudgetExceededError
from privsynth.privacy.accounting import AccountantKind, Mechanism, composed_epsilon
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.randomness import RngMode

SGD = Mechanism(noise_multiplier=1.0, sample_rate=0.01, steps=1000)


def test_spend_composes_and_records() -> None:
    ledger = PrivacyLedger(epsilon=5.0, delta=1e-5)
    ledger.spend(Stage.PROFILE, Mechanism(noise_multiplier=10.0, sample_rate=1.0, steps=10), extra_delta=1e-6)
    ledger.spend(Stage.TABULAR, SGD)
    expected = composed_epsilon(ledger.mechanisms(), delta=1e-5 - 1e-6)
    assert ledger.epsilon == expected
    assert ledger.extra_delta == 1e-6
    assert [e.stage for e in ledger.entries] == [Stage.PROFILE, Stage.TABULAR]
    assert set(ledger.stage_epsilons()) == {"profile", "tabular"}


def test_refuses_before_overspending_and_records_nothing() -> None:
    ledger = PrivacyLedger(epsilon=2.0, delta=1e-5)
    ledger.spend(Stage.TABULAR, SGD)
    before = ledger.state_dict()
    with pytest.raises(BudgetExceededError, match="above the target"):
        ledger.spend(Stage.TEXT, Mechanism(noise_multiplier=0.5, sample_rate=0.1, steps=1000))
    assert ledger.state_dict() == before


def test_threshold_deltas_cannot_eat_the_whole_delta() -> None:
    ledger = PrivacyLedger(epsilon=10.0, delta=1e-5)
    with pytest.raises(BudgetExceededError, match="reserve"):
        ledger.spend(Stage.PROFILE, SGD, extra_delta=1e-5)


def test_sink_failure_cancels_the_spend() -> None:
    ledger = PrivacyLedger(epsilon=10.0, delta=1e-5)

    def refuse(*_: object) -> None:
        raise BudgetExceededError("cap")

    ledger.attach(refuse)
    with pytest.raises(BudgetExceededError):
        ledger.spend(Stage.TABULAR, SGD)
    assert ledger.entries == ()


def test_rng_is_recorded_not_hidden() -> None:
    state = PrivacyLedger(epsilon=1.0, delta=1e-5).state_dict()
    assert state["rng"] == "os-entropy" and "operating system" in state["rng_note"]
    unsafe = PrivacyLedger(epsilon=1.0, delta=1e-5, rng=RngMode.UNSAFE_REPRODUCIBLE).state_dict()
    assert unsafe["rng"] == "unsafe-reproducible" and "does not hold" in unsafe["rng_note"]
    assert PrivacyLedger.from_state_dict(unsafe).rng is RngMode.UNSAFE_REPRODUCIBLE


def test_a_version_1_ledger_loads_as_seeded_noise() -> None:
    # privsynth <= this change seeded DP noise from the user's seed: whatever v1 ledgers claimed, it can be replayed
    state = PrivacyLedger(epsilon=1.0, delta=1e-5).state_dict()
    old = {k: v for k, v in state.items() if k not in ("rng", "rng_note")} | {"version": 1, "secure_rng": False}
    assert PrivacyLedger.from_state_dict(old).rng is RngMode.SEEDED


def test_delta_can_only_be_tightened_and_refuses_when_the_spend_no_longer_fits() -> None:
    ledger = PrivacyLedger(epsilon=1.0, delta=1e-5)
    ledger.spend(Stage.PROFILE, Mechanism(noise_multiplier=8.0, sample_rate=1.0, steps=1))
    before = ledger.epsilon
    ledger.tighten_delta(1e-7)
    assert ledger.target_delta == 1e-7
    assert ledger.projected_epsilon([]) > before  # the same spend costs more at a smaller delta
    with pytest.raises(ValueError, match="only be lowered"):
        ledger.tighten_delta(1e-5)
    tight = PrivacyLedger(epsilon=1.0, delta=1e-5, accountant=AccountantKind.RDP)
    tight.spend(Stage.PROFILE, Mechanism(noise_multiplier=6.0, sample_rate=1.0, steps=1))  # 0.65 at 1e-5
    with pytest.raises(BudgetExceededError):
        tight.tighten_delta(1e-12)  # 1.14 at 1e-12: no longer fits
    assert tight.target_delta == 1e-5


@settings(max_examples=30, deadline=None)
@given(
    spends=st.lists(
        st.tuples(
            st.sampled_from(list(Stage)),
            st.floats(min_value=0.8, max_value=30.0),
            st.sampled_from([0.01, 0.1, 1.0]),
            st.integers(min_value=1, max_value=300),
            st.sampled_from([0.0, 1e-7]),
        ),
        max_size=6,
    )
)
def test_round_trip_is_exact_and_epsilon_never_decreases(spends: list[tuple[Stage, float, float, int, float]]) -> None:
    ledger = PrivacyLedger(epsilon=50.0, delta=1e-5, accountant=AccountantKind.RDP, unit_of_privacy="record")
    last = 0.0
    for stage, sigma, q, steps, extra in spends:
        try:
            ledger.spend(stage, Mechanism(noise_multiplier=sigma, sample_rate=q, steps=steps), extra_delta=extra)
        except BudgetExceededError:
            continue
        assert ledger.epsilon >= last
        last = ledger.epsilon
    state = json.loads(json.dumps(ledger.state_dict()))
    restored = PrivacyLedger.from_state_dict(state)
    assert restored.state_dict() == ledger.state_dict()
    assert restored.epsilon == ledger.epsilon
    assert restored.entries == ledger.entries


def test_unknown_version_is_refused() -> None:
    state = PrivacyLedger(epsilon=1.0, delta=1e-5).state_dict() | {"version": 99}
    with pytest.raises(ValueError, match="version"):
        PrivacyLedger.from_state_dict(state)
