"""DP class means are steps of the image stage's own mechanism: same sampler, same noise, counted once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
from privsynth.generators.image.moments import dp_class_means
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.randomness import Streams


def _trainer(n: int, *, sigma: float, rate: float = 1.0, steps: int = 10, groups: Groups | None = None) -> DPSGDTrainer:
    model = nn.Sequential(nn.Linear(2, 1))
    return DPSGDTrainer(
        model,
        loss=lambda module, rows: torch.zeros(len(rows)),
        groups=groups if groups is not None else Groups.from_labels(None, n),
        mechanism=Mechanism(noise_multiplier=sigma, sample_rate=rate, steps=steps),
        config=OptimConfig(max_sample_rate=1.0),
        streams=Streams.private(),
        stream=("image", "scan"),
        units=groups.count if groups is not None else n,
    )


def test_a_gaussian_sum_clips_each_record_to_c_over_its_own_persons_records() -> None:
    people = Groups.from_labels(np.array([0, 0, 1]), 3)  # person 0 has two records (C / 2 each), person 1 one (C)
    trainer = _trainer(3, sigma=1e-9, groups=people)
    assert trainer.config.max_grad_norm == 1.0
    total = trainer.gaussian_sum(torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.1]]), np.array([0, 1, 2]))
    assert total.tolist() == pytest.approx([0.3 + 0.3, 0.4 + 0.4 + 0.1], abs=1e-6)
    single = trainer.gaussian_sum(torch.tensor([[6.0, 8.0]]), np.array([2]))  # a person of one record: clip C
    assert single.tolist() == pytest.approx([0.6, 0.8], abs=1e-6)
    with pytest.raises(ValueError, match="one record index per contribution"):
        trainer.gaussian_sum(torch.zeros(2, 2), np.array([0]))


def test_class_means_are_recovered_and_the_queries_are_counted_as_steps() -> None:
    rng = np.random.default_rng(0)
    labels = torch.as_tensor(rng.integers(0, 3, size=3000))
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    features = centres[labels] + 0.05 * torch.as_tensor(rng.normal(size=(3000, 2)), dtype=torch.float32)
    trainer = _trainer(3000, sigma=0.5, rate=0.5)
    means = dp_class_means(trainer, features, labels, torch.ones(3000), classes=3, queries=4, bound=2.0)
    assert trainer.step == 4  # four steps of the planned mechanism are gone; DP-SGD runs the rest
    assert torch.allclose(means, centres, atol=0.1)


def test_a_class_too_rare_to_measure_falls_back_to_the_overall_mean(reproducible_noise: int) -> None:
    # the noise passes the three-deviation test ~1 % of the time; the test-only switch fixes the draw
    labels = torch.zeros(400, dtype=torch.long)
    labels[:2] = 1  # two records: below three noise deviations
    features = torch.ones(400, 2)
    means = dp_class_means(_trainer(400, sigma=2.0), features, labels, torch.ones(400), classes=2, queries=1, bound=2.0)
    assert torch.allclose(means[1], means[0].new_tensor([1.0, 1.0]), atol=0.5)


def test_an_empty_poisson_batch_is_still_a_noisy_step() -> None:
    trainer = _trainer(10, sigma=2.0)
    noisy = trainer.gaussian_sum(
        torch.zeros(0, 3, 4), np.zeros(0, dtype=np.int64)
    )  # found by a tiny corpus whose batch drew nobody
    assert noisy.shape == (3, 4) and float(noisy.abs().sum()) > 0


def test_shrinking_noisy_class_means_lowers_their_error_most_for_small_classes() -> None:
    # Post-processing of the noisy sums with the mechanism's (public) noise level: a class of 40 records next to
    # classes of 400 had a mean dominated by noise (sampled as saturated blobs in the demo's scans).
    from privsynth.generators.image.moments import shrink

    rng = np.random.default_rng(0)
    sizes, dims, noise = np.array([400, 400, 400, 40]), 64, 30.0
    raw_error, shrunk_error = np.zeros(len(sizes)), np.zeros(len(sizes))
    for _ in range(200):
        truth = 0.2 * rng.normal(size=(len(sizes), dims))
        sums = truth * sizes[:, None] + noise * rng.normal(size=truth.shape)
        counts = sizes + noise * rng.normal(size=len(sizes))
        t_sums, t_counts = torch.as_tensor(sums, dtype=torch.float32), torch.as_tensor(counts, dtype=torch.float32)
        raw = (t_sums / t_counts[:, None]).numpy()
        shrunk = shrink(t_sums, t_counts, noise).numpy()
        raw_error += ((raw - truth) ** 2).sum(1)
        shrunk_error += ((shrunk - truth) ** 2).sum(1)
    assert shrunk_error.sum() < 0.8 * raw_error.sum()
    assert shrunk_error[3] < 0.5 * raw_error[3]  # the small class gains most
    assert (shrunk_error[:3] < 1.05 * raw_error[:3]).all()  # the large ones lose nothing


def test_measuring_offsets_from_a_dp_overall_mean_blurs_the_class_means_less(reproducible_noise: int) -> None:
    """Features far from zero that differ little between classes (like images): the same queries and noise give
    class means several times closer when each record's offset from the overall mean is clipped to a quarter of
    the bound; every query is still one counted step. Without the test-only switch the noise is drawn afresh each
    run, and one draw missed the factor 2 in a test run (none of 60 in a loop after): the switch fixes the draw."""
    rng = np.random.default_rng(1)
    labels = torch.as_tensor(rng.integers(0, 4, size=2000))
    base = torch.full((8,), 0.7)  # norm ~2: the shared part
    centres = base + 0.15 * torch.as_tensor(rng.normal(size=(4, 8)), dtype=torch.float32)
    features = centres[labels] + 0.05 * torch.as_tensor(rng.normal(size=(2000, 8)), dtype=torch.float32)
    errors = {}
    for share in (0.0, 0.25):
        trainer = _trainer(2000, sigma=4.0, rate=0.5, steps=30)
        means = dp_class_means(
            trainer, features, labels, torch.ones(2000), classes=4, queries=12, bound=4.0, offset_share=share
        )
        assert trainer.step == 12
        errors[share] = float(((means - centres) ** 2).sum(1).mean().sqrt())
    assert errors[0.25] < 0.5 * errors[0.0], errors
