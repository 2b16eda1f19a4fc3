from __future__ import annotations

import pytest

from privsynth.errors import DeltaTooLargeError
from privsynth.privacy.accounting import AccountantKind, Mechanism, composed_epsilon
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.planner import StageShape, check_delta, default_delta, plan_budget

PROFILE = StageShape(stage=Stage.PROFILE, sample_rate=1.0, steps=15)
TABULAR = StageShape(stage=Stage.TABULAR, sample_rate=0.02, steps=1500)
TEXT = StageShape(stage=Stage.TEXT, sample_rate=0.05, steps=600)
IMAGE = StageShape(stage=Stage.IMAGE, sample_rate=0.01, steps=4000)

SPLITS = [
    ([PROFILE, TABULAR], {Stage.PROFILE: 0.1, Stage.TABULAR: 0.9}),
    ([PROFILE, TABULAR, TEXT, IMAGE], {Stage.PROFILE: 0.1, Stage.TABULAR: 0.4, Stage.TEXT: 0.25, Stage.IMAGE: 0.25}),
    ([TABULAR], {Stage.TABULAR: 1.0}),
]


def spend_plan(plan_epsilon: float, shapes: list[StageShape], shares: dict[Stage, float], acc: AccountantKind) -> None:
    plan = plan_budget(epsilon=plan_epsilon, delta=1e-5, shapes=shapes, shares=shares, accountant=acc, extra_delta=1e-6)
    assert 0.97 * plan_epsilon <= plan.composed_epsilon <= plan_epsilon
    # spending exactly the plan in a ledger reproduces the planned number and never refuses
    ledger = PrivacyLedger(epsilon=plan_epsilon, delta=1e-5, accountant=acc)
    for planned in plan.stages:
        ledger.spend(planned.stage, planned.mechanism, extra_delta=1e-6 if planned.stage == Stage.PROFILE else 0.0)
    assert 0.97 * plan_epsilon <= ledger.epsilon <= plan_epsilon
    assert abs(sum(p.share for p in plan.stages) - 1.0) < 1e-9
    # the split is honoured: giving the first stage a larger share gives it less noise, the others more
    # (checked once per split, with the fast RDP accountant; the planner's logic is the same for both)
    if len(shapes) > 1 and acc is AccountantKind.RDP and plan_epsilon == 3.0:
        first = shapes[0].stage
        bigger = {s: (w * 4 if s == first else w) for s, w in shares.items()}
        replanned = plan_budget(
            epsilon=plan_epsilon, delta=1e-5, shapes=shapes, shares=bigger, accountant=acc, extra_delta=1e-6
        )
        assert replanned.mechanism(first).noise_multiplier < plan.mechanism(first).noise_multiplier
        for other in shapes[1:]:
            assert replanned.mechanism(other.stage).noise_multiplier >= plan.mechanism(other.stage).noise_multiplier


@pytest.mark.parametrize("epsilon", [0.3, 3.0, 12.0])
@pytest.mark.parametrize(("shapes", "shares"), SPLITS)
def test_planner_lands_in_window_rdp(epsilon: float, shapes: list[StageShape], shares: dict[Stage, float]) -> None:
    spend_plan(epsilon, shapes, shares, AccountantKind.RDP)


@pytest.mark.parametrize(("epsilon", "split"), [(1.0, 0), (8.0, 1)])
def test_planner_lands_in_window_prv(epsilon: float, split: int) -> None:
    shapes, shares = SPLITS[split]
    spend_plan(epsilon, shapes, shares, AccountantKind.PRV)


@pytest.mark.slow
@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0])
@pytest.mark.parametrize(("shapes", "shares"), SPLITS)
def test_planner_lands_in_window_prv_grid(epsilon: float, shapes: list[StageShape], shares: dict[Stage, float]) -> None:
    spend_plan(epsilon, shapes, shares, AccountantKind.PRV)


def test_planner_accounts_for_earlier_spends() -> None:
    spent = [Mechanism(noise_multiplier=5.0, sample_rate=1.0, steps=10)]
    plan = plan_budget(
        epsilon=4.0,
        delta=1e-5,
        shapes=[TABULAR],
        shares={Stage.TABULAR: 1.0},
        accountant=AccountantKind.RDP,
        spent=spent,
    )
    total = composed_epsilon([*spent, plan.mechanism(Stage.TABULAR)], delta=1e-5, accountant=AccountantKind.RDP)
    assert 0.97 * 4.0 <= total <= 4.0


def test_bigger_share_means_less_noise() -> None:
    a = plan_budget(
        epsilon=2.0,
        delta=1e-5,
        shapes=[PROFILE, TABULAR],
        shares={Stage.PROFILE: 0.1, Stage.TABULAR: 0.9},
        accountant=AccountantKind.RDP,
    )
    b = plan_budget(
        epsilon=2.0,
        delta=1e-5,
        shapes=[PROFILE, TABULAR],
        shares={Stage.PROFILE: 0.5, Stage.TABULAR: 0.5},
        accountant=AccountantKind.RDP,
    )
    assert a.mechanism(Stage.PROFILE).noise_multiplier > b.mechanism(Stage.PROFILE).noise_multiplier
    assert a.mechanism(Stage.TABULAR).noise_multiplier < b.mechanism(Stage.TABULAR).noise_multiplier


def test_split_must_cover_every_stage() -> None:
    with pytest.raises(ValueError, match="no positive share"):
        plan_budget(epsilon=1.0, delta=1e-5, shapes=[PROFILE, TABULAR], shares={Stage.PROFILE: 1.0})


@pytest.mark.parametrize(("n", "expected"), [(10, 1e-5), (10_000, 1e-5), (100_000, 1e-6), (10**7, 1e-8)])
def test_default_delta(n: int, expected: float) -> None:
    assert default_delta(n) == pytest.approx(expected)
    check_delta(default_delta(n), n)


@pytest.mark.parametrize(("delta", "n"), [(0.01, 100), (1e-3, 1000), (0.0, 10), (1.0, 10)])
def test_large_delta_is_refused_with_advice(delta: float, n: int) -> None:
    with pytest.raises(DeltaTooLargeError, match="delta"):
        check_delta(delta, n)


def test_a_refusal_on_the_exact_count_does_not_print_it() -> None:
    # The fit checks delta against the corpus' exact number of people before the DP count exists; the message is
    # a log, so it must not carry that number (nor 0.1/n, from which it follows).
    with pytest.raises(DeltaTooLargeError, match="1/n for this corpus") as refused:
        check_delta(0.004, 1234, exact=True)
    assert "1234" not in str(refused.value) and "8.1" not in str(refused.value)
    with pytest.raises(DeltaTooLargeError, match="1/1234"):  # an estimate or a DP count may be shown
        check_delta(0.004, 1234)


def test_the_stand_alone_profile_refuses_a_large_delta_without_printing_the_exact_count() -> None:
    """``privsynth profile`` checks delta against the bounded corpus' exact number of people (review finding)."""
    from pathlib import Path

    import pandas as pd

    from privsynth.data.corpus import Corpus
    from privsynth.data.schema import schema_from_dict
    from privsynth.privacy.randomness import Streams
    from privsynth.profile.profiler import profile_corpus

    frame = pd.DataFrame({"id": [f"r{i}" for i in range(1234)], "x": [1.0] * 1234})
    schema = schema_from_dict({"key": "id", "columns": {"id": {"kind": "key"}, "x": {"kind": "numerical"}}}, source="t")
    corpus = Corpus(records=frame, schema=schema, root=Path("."))
    with pytest.raises(DeltaTooLargeError, match="1/n for this corpus") as refused:
        profile_corpus(corpus, epsilon=1.0, delta=0.004, streams=Streams.private())
    assert "1234" not in str(refused.value) and "8.1" not in str(refused.value)
