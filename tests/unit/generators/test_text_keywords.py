"""The keyword prior is steps of the text stage's own mechanism: bounded per person, noised once, counted once."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
from privsynth.generators.text.keywords import category_indices, keyword_sets, log_ratios, noisy_keyword_sums
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.randomness import Streams


def _trainer(groups: Groups, *, sigma: float, rate: float = 1.0, steps: int = 10) -> DPSGDTrainer:
    return DPSGDTrainer(
        nn.Sequential(nn.Linear(2, 1)),
        loss=lambda module, rows: torch.zeros(len(rows)),
        groups=groups,
        mechanism=Mechanism(noise_multiplier=sigma, sample_rate=rate, steps=steps),
        config=OptimConfig(max_sample_rate=1.0),
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
    trainer = _trainer(people, sigma=1.0)
    seen = _without_noise(trainer, monkeypatch)
    sets = [np.array([9, 8, 7, 6]), np.array([9, 8, 7, 6]), np.array([9]), np.array([])]
    categories = np.array([0, 0, 1, 0])
    noisy_keyword_sums(trainer, categories, sets, classes=2, cells=10, width=4, queries=1)
    with_person = seen[-1]
    alone = _trainer(Groups.from_labels(np.array([1, 2]), 2), sigma=1.0)
    seen_alone = _without_noise(alone, monkeypatch)
    noisy_keyword_sums(alone, categories[2:], sets[2:], classes=2, cells=10, width=4, queries=1)
    difference = float((with_person - seen_alone[-1]).norm())
    assert difference == pytest.approx(trainer.config.max_grad_norm, rel=1e-6)  # k records of C / k, 4 tokens
    assert difference <= trainer.config.max_grad_norm
    # a text with fewer tokens than L spends less than its clip: no record is scaled up
    assert float(seen_alone[-1].norm()) == pytest.approx(1.0 / math.sqrt(4), rel=1e-6)


def test_the_queries_are_counted_as_steps_and_carry_the_mechanisms_noise() -> None:
    n = 400
    trainer = _trainer(Groups.from_labels(None, n), sigma=2.0, rate=0.5)
    sets = [np.array([5])] * n
    sums = noisy_keyword_sums(trainer, np.zeros(n, dtype=np.int64), sets, classes=2, cells=8, width=1, queries=3)
    assert trainer.step == 3  # three steps of the planned mechanism; DP-SGD runs the rest
    # category 1 holds no text: its cells are noise alone, N(0, 3 (sigma C)^2) after three queries
    assert float(sums[1].abs().max()) > 0.0
    assert float(sums[1].std()) == pytest.approx(2.0 * math.sqrt(3), rel=0.8)
    assert float(sums[0, 5]) == pytest.approx(0.5 * n * 3, abs=6 * 2.0 * math.sqrt(3))  # q x n x queries x C


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


def test_a_text_with_more_tokens_than_its_bound_is_refused() -> None:
    trainer = _trainer(Groups.from_labels(None, 2), sigma=1.0)
    with pytest.raises(ValueError, match="at most 1 distinct tokens"):
        noisy_keyword_sums(
            trainer, np.zeros(2, dtype=np.int64), [np.array([1, 2])] * 2, classes=1, cells=4, width=1, queries=1
        )
    assert trainer.step == 0  # refused before any noise was drawn


def test_the_log_ratios_favour_each_categorys_own_tokens_and_leave_noise_alone() -> None:
    sums = torch.tensor([[400.0, 100.0, 3.0], [100.0, 400.0, 0.0]])
    ratios = log_ratios(sums, noise=10.0, unit=1.0)
    assert float(ratios[0, 0]) > 0 > float(ratios[1, 0]) and float(ratios[1, 1]) > 0 > float(ratios[0, 1])
    assert ratios[:, 2].tolist() == [0.0, 0.0]  # a total within the noise: no push either way


def test_categories_are_the_schemas_domain_compared_as_text() -> None:
    assert category_indices(["flu", "cold", None, float("nan"), "other"], ["cold", "flu"]).tolist() == [
        1,
        0,
        -1,
        -1,
        -1,
    ]
