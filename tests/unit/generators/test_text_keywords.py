"""The keyword prior is steps of the text stage's own mechanism: bounded per person, noised once, counted once."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
from privsynth.generators.text.keywords import (
    candidate_order,
    category_indices,
    keyword_sets,
    log_ratios,
    noisy_keyword_sums,
)
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.randomness import Streams


def _trainer(groups: Groups, *, sigma: float, rate: float = 1.0, steps: int = 10, clip: float = 1.0) -> DPSGDTrainer:
    return DPSGDTrainer(
        nn.Sequential(nn.Linear(2, 1)),
        loss=lambda module, rows: torch.zeros(len(rows)),
        groups=groups,
        mechanism=Mechanism(noise_multiplier=sigma, sample_rate=rate, steps=steps),
        config=OptimConfig(max_sample_rate=1.0, max_grad_norm=clip),
        streams=Streams.private(),
        stream=("text", "note"),
        units=groups.count,
    )


def _without_noise(trainer: DPSGDTrainer, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The exact sums each query would noise (the noise itself replaced by nothing), in order."""
    seen: list[torch.Tensor] = []

    def exact(total: torch.Tensor) -> torch.Tensor:
        seen.append(total.clone())
        return total

    monkeypatch.setattr(trainer, "noised", exact)
    return seen


def test_each_text_adds_its_rarest_distinct_tokens_and_never_a_special_or_placeholder() -> None:
    sets = keyword_sets([[3, 3, 50, 7, 99, 120, 2], [1]], cells=100, width=3, excluded=[99, 1])
    # 120 is a placeholder (at or above the vocabulary), 99 and 1 are special: none counted
    assert [s.tolist() for s in sets] == [[50, 7, 3], []]


def test_one_person_moves_the_summed_counts_by_at_most_the_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    # the neighbouring-dataset invariant: adding or removing one unit (here person 0, two records with the same
    # tokens, the worst case) changes a query's sum by at most C in L2, whatever the other records hold
    people = Groups.from_labels(np.array([0, 0, 1, 2]), 4)
    trainer = _trainer(people, sigma=1.0, clip=2.5)
    seen = _without_noise(trainer, monkeypatch)
    sets = [np.array([9, 8, 7, 6]), np.array([9, 8, 7, 6]), np.array([9]), np.array([])]
    categories = np.array([0, 0, 1, 0])
    noisy_keyword_sums(trainer, categories, sets, classes=2, cells=10, width=4, queries=1)
    with_person = seen[-1]
    alone = _trainer(Groups.from_labels(np.array([1, 2]), 2), sigma=1.0, clip=2.5)
    seen_alone = _without_noise(alone, monkeypatch)
    noisy_keyword_sums(alone, categories[2:], sets[2:], classes=2, cells=10, width=4, queries=1)
    difference = float((with_person - seen_alone[-1]).norm())
    assert difference == pytest.approx(2.5, rel=1e-6)  # k records of C / k, 4 tokens each: exactly C
    assert difference <= 2.5
    # a text with fewer tokens than L spends less than its clip: no record is scaled up
    assert float(seen_alone[-1].norm()) == pytest.approx(2.5 / math.sqrt(4), rel=1e-6)


def test_the_queries_are_counted_as_steps_and_each_carries_the_mechanisms_noise() -> None:
    n = 400
    trainer = _trainer(Groups.from_labels(None, n), sigma=2.0, rate=0.5, clip=1.5)
    sets = [np.array([5])] * n
    sums = noisy_keyword_sums(trainer, np.zeros(n, dtype=np.int64), sets, classes=2, cells=4000, width=1, queries=3)
    assert trainer.step == 3  # three steps of the planned mechanism; DP-SGD runs the rest
    # category 1 holds no text: its 4,000 cells are noise alone, N(0, 3 (sigma C)^2) after three noised queries
    assert float(sums[1].std()) == pytest.approx(2.0 * 1.5 * math.sqrt(3), rel=0.06)
    # q x n x queries x C, within six deviations of the Poisson batches' sizes and the noise
    spread = math.sqrt(3 * n * 0.5 * 0.5 * 1.5**2 + 3 * (2.0 * 1.5) ** 2)
    assert float(sums[0, 5]) == pytest.approx(0.5 * n * 3 * 1.5, abs=6 * spread)


def test_the_noise_is_the_trainers_own_stream() -> None:
    # replaying the trainer's noise generator (never stored outside the owner-only work folder) replays the sums;
    # a draw from any other generator would not
    trainer = _trainer(Groups.from_labels(None, 30), sigma=1.0)
    args = (np.zeros(30, dtype=np.int64), [np.array([1, 2])] * 30)
    state = trainer.noise.get_state()
    first = noisy_keyword_sums(trainer, *args, classes=1, cells=64, width=2, queries=1)
    trainer.noise.set_state(state)
    torch.manual_seed(99)  # the global generator moved: it must not matter
    assert torch.equal(noisy_keyword_sums(trainer, *args, classes=1, cells=64, width=2, queries=1), first)


def test_the_noise_is_fresh_for_every_fit_even_with_the_same_seed_and_records() -> None:
    # DESIGN section 2: DP noise comes from the fit's secret root, never from a user seed, and cannot be replayed
    n = 50
    sets = [np.array([1, 2])] * n
    draws = [
        noisy_keyword_sums(
            _trainer(Groups.from_labels(None, n), sigma=1.0),
            np.zeros(n, dtype=np.int64),
            sets,
            classes=1,
            cells=4,
            width=2,
            queries=1,
        )
        for _ in range(2)
    ]
    assert not torch.equal(draws[0], draws[1])


def test_a_text_with_more_tokens_than_its_bound_or_outside_the_table_is_refused() -> None:
    trainer = _trainer(Groups.from_labels(None, 2), sigma=1.0)
    zeros = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match="at most 1 distinct tokens"):
        noisy_keyword_sums(trainer, zeros, [np.array([1, 2])] * 2, classes=1, cells=4, width=1, queries=1)
    with pytest.raises(ValueError, match="outside the counted vocabulary"):
        noisy_keyword_sums(trainer, zeros, [np.array([7])] * 2, classes=1, cells=4, width=1, queries=1)
    with pytest.raises(ValueError, match="outside the prior's categories"):
        noisy_keyword_sums(trainer, zeros + 1, [np.array([1])] * 2, classes=1, cells=4, width=1, queries=1)
    assert trainer.step == 0  # refused before any noise was drawn


def test_the_log_ratios_favour_each_categorys_own_tokens_and_leave_noise_alone() -> None:
    sums = torch.tensor([[400.0, 100.0, 3.0], [100.0, 400.0, 0.0]])
    ratios = log_ratios(sums, noise=10.0, unit=1.0)
    assert float(ratios[0, 0]) > 0 > float(ratios[1, 0]) and float(ratios[1, 1]) > 0 > float(ratios[0, 1])
    assert ratios[:, 2].tolist() == [0.0, 0.0]  # a total within the noise: no push either way


def test_pure_noise_clears_the_threshold_almost_never_even_with_many_categories() -> None:
    # the threshold reads the total before negative cells are set to 0: with 100 categories a clamped total would
    # let about half of a pure-noise vocabulary through
    noise = torch.randn(100, 5000, generator=torch.Generator().manual_seed(0)) * 3.0
    assert int((log_ratios(noise, noise=3.0, unit=1.0) != 0).any(dim=0).sum()) <= 2


def test_categories_are_the_schemas_domain_compared_as_text() -> None:
    assert category_indices(["flu", "cold", None, float("nan"), "other"], ["cold", "flu"]).tolist() == [
        1,
        0,
        -1,
        -1,
        -1,
    ]


def test_a_resumed_fit_reuses_its_checkpointed_counts_and_refuses_to_draw_them_again_mid_run() -> None:
    from privsynth.errors import IntegrityError
    from privsynth.generators.text.finetune import _keyword_prior
    from privsynth.generators.text.keywords import OUTPUT

    n, cells = 40, 32
    bodies = [[3, 9, 20]] * n
    values = np.array(["flu", "cold"] * 20, dtype=object)
    kwargs: dict[str, Any] = {"cells": cells, "width": 2, "excluded": [0], "queries": 3}
    fresh = _trainer(Groups.from_labels(None, n), sigma=1.0)  # 10 steps: DP-SGD's 7, then the 3 queries
    fresh.step = 7
    ratios = _keyword_prior(fresh, values, ["flu", "cold"], bodies, **kwargs)
    assert fresh.step == 10 and OUTPUT in fresh.outputs  # counted, and kept for the checkpoint
    resumed = _trainer(Groups.from_labels(None, n), sigma=1.0)
    resumed.load_state_dict(fresh.state_dict())  # as load_checkpoint does
    again = _keyword_prior(resumed, values, ["flu", "cold"], bodies, **kwargs)
    assert resumed.step == 10 and torch.equal(again, ratios)  # the same draw, no new query
    lost = _trainer(Groups.from_labels(None, n), sigma=1.0)
    lost.step = 9  # a checkpoint amid the queries, or past them, that lacks their counts
    with pytest.raises(IntegrityError, match="without its keyword counts"):
        _keyword_prior(lost, values, ["flu", "cold"], bodies, **kwargs)
    assert lost.step == 9


def test_each_text_adds_the_tokens_the_given_rank_puts_first_and_none_it_rules_out() -> None:
    rank = np.full(10, np.inf)
    rank[[2, 3, 7]] = [5.0, 1.0, 1.0]  # 3 and 7 tie: the larger id first
    assert [s.tolist() for s in keyword_sets([[2, 3, 7, 8]], cells=10, width=2, excluded=[], rank=rank)] == [[7, 3]]
    with pytest.raises(ValueError, match="one number per counted token"):
        keyword_sets([[1]], cells=10, width=2, excluded=[], rank=np.zeros(9))


def test_a_keyword_prior_needs_two_steps_and_says_so_before_anything_is_fitted() -> None:
    from privsynth.errors import ConfigError
    from privsynth.generators.text.generator import TextConfig, TextGenerator

    config = TextConfig(backbone="smollm2", keyword_column="dx")
    one = config.model_copy(update={"optim": config.optim.model_copy(update={"epochs": 0.01})})  # one step
    with pytest.raises(ConfigError, match="at least 2 steps"):
        TextGenerator(one).plan(1000)
    assert TextGenerator(config.model_copy(update={"keyword_column": None, "optim": one.optim})).plan(1000).steps == 1


def test_checkpointed_counts_of_another_table_are_refused() -> None:
    from privsynth.errors import IntegrityError
    from privsynth.generators.text.finetune import _keyword_prior
    from privsynth.generators.text.keywords import OUTPUT

    trainer = _trainer(Groups.from_labels(None, 4), sigma=1.0)
    trainer.step = 10
    trainer.outputs[OUTPUT] = torch.zeros(3, 32)  # three categories; this fit's domain has two
    with pytest.raises(IntegrityError, match="do not match this fit's categories and vocabulary"):
        _keyword_prior(
            trainer, np.array(["flu"] * 4), ["flu", "cold"], [[1]] * 4, cells=32, width=2, excluded=[], queries=3
        )


def test_the_uneven_order_puts_one_categorys_words_before_shared_and_single_ones() -> None:
    # 50 candidate texts per category: a sentiment word most of one category's texts hold, one both hold as
    # often, one a single text holds, one many of both hold but one category more often
    texts = np.array([50, 50])
    held = np.array([[30, 40, 1, 45, 0], [3, 40, 0, 25, 0]])
    order = candidate_order(held, texts, "uneven")
    assert [int(i) for i in np.argsort(order)[:4]] == [0, 3, 2, 1] and np.isinf(order[4])
    assert candidate_order(held, texts, "fewest").tolist() == [33, 80, 1, 70, math.inf]
    # one category: nothing to compare, so the tokens fewer texts hold come first, as with 'fewest'
    alone = candidate_order(held[:1], texts[:1], "uneven")
    assert np.argsort(alone)[:4].tolist() == np.argsort(candidate_order(held[:1], texts[:1], "fewest"))[:4].tolist()


@pytest.mark.parametrize(
    ("held", "texts", "order"),
    [
        (np.zeros((2, 3)), np.array([5]), "uneven"),  # one count per category
        (np.array([[6, 0]]), np.array([5]), "uneven"),  # more texts hold it than there are
        (np.zeros((1, 3)), np.array([5]), "rarest"),  # not an order
    ],
)
def test_candidate_counts_that_cannot_be_are_refused(held: np.ndarray, texts: np.ndarray, order: str) -> None:
    with pytest.raises(ValueError, match=r"texts|order"):
        candidate_order(held, texts, order)
