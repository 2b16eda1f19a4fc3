"""Known answers against Opacus' own accountants, and properties of composition."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant, RDPAccountant

from privsynth.privacy.accounting import (
    AccountantKind,
    Mechanism,
    composed_epsilon,
    gaussian_epsilon,
    merge,
    noise_for_epsilon,
)

DPSGD = Mechanism(noise_multiplier=1.0, sample_rate=256 / 60000, steps=10 * 60000 // 256)
PROFILE = Mechanism(noise_multiplier=8.0, sample_rate=1.0, steps=20)
TEXT = Mechanism(noise_multiplier=0.9, sample_rate=0.02, steps=800)


def test_published_values_from_the_design_notes() -> None:
    # sigma 1, q 256/60000, 10 epochs, delta 1e-5: RDP 1.35, PRV 1.11 (measured with Opacus, DESIGN.md)
    assert composed_epsilon([DPSGD], delta=1e-5, accountant=AccountantKind.RDP) == pytest.approx(1.35, abs=0.01)
    assert composed_epsilon([DPSGD], delta=1e-5, accountant=AccountantKind.PRV) == pytest.approx(1.11, abs=0.01)


@pytest.mark.parametrize("mechanisms", [[DPSGD], [DPSGD, TEXT], [PROFILE, DPSGD, TEXT]])
def test_matches_opacus_accountants_exactly(mechanisms: list[Mechanism]) -> None:
    delta = 1e-5
    rdp = RDPAccountant()
    rdp.history = [m.as_tuple() for m in mechanisms]
    ours_rdp = composed_epsilon(mechanisms, delta=delta, accountant=AccountantKind.RDP)
    # our order list is a superset of Opacus' defaults, so we can only be tighter, and not by much
    theirs_rdp = rdp.get_epsilon(delta)
    assert ours_rdp <= theirs_rdp + 1e-9
    assert ours_rdp == pytest.approx(theirs_rdp, rel=0.02)
    prv = PRVAccountant()
    prv.history = [m.as_tuple() for m in merge(mechanisms)]
    with np.errstate(divide="ignore", invalid="ignore"):
        theirs_prv = prv.get_epsilon(delta, eps_error=0.01)
    assert composed_epsilon(mechanisms, delta=delta) == pytest.approx(theirs_prv, abs=1e-9)
    assert composed_epsilon(mechanisms, delta=delta) <= ours_rdp


def test_full_corpus_gaussian_matches_the_analytic_curve() -> None:
    exact = gaussian_epsilon(8.0, delta=1e-5, queries=20)
    prv = composed_epsilon([PROFILE], delta=1e-5)
    assert exact <= prv <= exact + 0.02  # PRV reports an upper bound within its 0.01 error


def test_order_and_splitting_do_not_matter() -> None:
    whole = Mechanism(noise_multiplier=1.0, sample_rate=256 / 60000, steps=2000)
    halves = [Mechanism(noise_multiplier=1.0, sample_rate=256 / 60000, steps=1000)] * 2
    assert composed_epsilon(halves, delta=1e-5) == composed_epsilon([whole], delta=1e-5)
    assert composed_epsilon([TEXT, DPSGD], delta=1e-5) == composed_epsilon([DPSGD, TEXT], delta=1e-5)


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="delta"):
        composed_epsilon([DPSGD], delta=0.0)
    with pytest.raises(ValueError):
        Mechanism(noise_multiplier=0.0, sample_rate=0.1, steps=1)
    with pytest.raises(ValueError):
        Mechanism(noise_multiplier=1.0, sample_rate=1.5, steps=1)
    with pytest.raises(ValueError, match="epsilon"):
        noise_for_epsilon(0.0, delta=1e-5, sample_rate=0.1, steps=10)


mechanisms = st.builds(
    Mechanism,
    noise_multiplier=st.floats(min_value=0.6, max_value=50.0),
    sample_rate=st.sampled_from([0.001, 0.01, 0.1, 1.0]),
    steps=st.integers(min_value=1, max_value=500),
)


@settings(max_examples=40, deadline=None)
@given(base=st.lists(mechanisms, max_size=3), extra=mechanisms)
def test_adding_a_mechanism_never_lowers_epsilon(base: list[Mechanism], extra: Mechanism) -> None:
    before = composed_epsilon(base, delta=1e-5, accountant=AccountantKind.RDP)
    after = composed_epsilon([*base, extra], delta=1e-5, accountant=AccountantKind.RDP)
    assert after >= before


@settings(max_examples=25, deadline=None)
@given(
    eps=st.floats(min_value=0.05, max_value=20.0),
    q=st.sampled_from([0.005, 0.05, 1.0]),
    steps=st.integers(min_value=1, max_value=2000),
)
def test_noise_for_epsilon_is_the_smallest_safe_noise(eps: float, q: float, steps: int) -> None:
    sigma = noise_for_epsilon(eps, delta=1e-5, sample_rate=q, steps=steps)
    at = composed_epsilon(
        [Mechanism(noise_multiplier=sigma, sample_rate=q, steps=steps)], delta=1e-5, accountant=AccountantKind.RDP
    )
    assert at <= eps
    if sigma > 0.05:
        less = composed_epsilon(
            [Mechanism(noise_multiplier=sigma / 1.01, sample_rate=q, steps=steps)],
            delta=1e-5,
            accountant=AccountantKind.RDP,
        )
        assert less > eps * 0.999


def test_large_sample_rates_keep_opacus_prv_and_a_sound_slightly_looser_rdp() -> None:
    # small cohorts train on half the people per step; their accounting must stay exact where it is PRV and
    # sound (never tighter than Opacus' own orders allow) where it is RDP
    mechanisms = [Mechanism(noise_multiplier=25.0, sample_rate=0.5, steps=160), PROFILE]
    prv = PRVAccountant()
    prv.history = [m.as_tuple() for m in merge(mechanisms)]
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' tail bound reaches its largest order (a larger domain: safe)
        theirs_prv = prv.get_epsilon(1e-5, eps_error=0.01)
    assert composed_epsilon(mechanisms, delta=1e-5) == pytest.approx(theirs_prv, abs=1e-9)
    rdp = RDPAccountant()
    rdp.history = [m.as_tuple() for m in mechanisms]
    ours = composed_epsilon(mechanisms, delta=1e-5, accountant=AccountantKind.RDP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' orders stop at 63 here: its bound is the looser one
        theirs = rdp.get_epsilon(1e-5)
    assert theirs_prv <= ours <= theirs * 1.02  # a valid RDP bound: above the exact PRV, near Opacus' own
