"""DP class means that start the mixture where the data is, paid for with steps of the image stage's own budget.

DP-SGD moves a mixture's class means from their initial value slowly (measured on the demo's 1,600 scans: after
300 steps the scan classifier ratio was 0.5-0.6 even at epsilon 1000), while the class means alone carry most of
what distinguishes the classes (exact class means give a ratio of 1.0). So the first ``queries`` steps of the
stage's planned mechanism are spent on noisy per-class sums instead of gradients:

- each step draws the same Poisson batch of units the accountant assumes (``DPSGDTrainer.poisson_batch``);
- each record contributes ``[x / FEATURE_BOUND, 1] * C / sqrt(2)`` to its class's row (norm at most ``C``; a
  unit with ``k`` records has each clipped to ``C / k``), and Gaussian noise of standard deviation ``sigma * C``
  is added to every coordinate of the class-by-feature sum (``DPSGDTrainer.gaussian_sum``);

which is exactly one step of the (sigma, q) subsampled Gaussian mechanism in the ledger: the stage's accounting
is unchanged, and the DP-SGD that follows runs the remaining steps. With ``offset_share`` (the small-cohort
rule's ``mean_offset``), the first sixth of the queries sum every record into one row (the overall mean), and the
rest sum each record's offset from that noisy mean, clipped to ``offset_share x FEATURE_BOUND`` and divided by
it: the same ``[v, 1] * C / sqrt(2)`` contribution with ``|v| <= 1``, on a bound several times tighter. The
ratio of the noisy sums estimates each class mean; a class whose noisy count is within three noise deviations
of zero falls back to the overall mean.

Class means of small classes are mostly noise (measured on the demo: the smoker classes of 50-100 scans came out
with means 2-3x the norm of the others, sampled as saturated blobs). Each class mean is therefore shrunk towards
the overall mean by how much of its spread the known noise explains (:func:`shrink`, James-Stein style): the
noise level is public (the mechanism's), so this is post-processing of the noisy sums and spends nothing.
"""

from __future__ import annotations

import math

import torch

from privsynth.generators.dpsgd import DPSGDTrainer


def dp_class_means(
    trainer: DPSGDTrainer,
    features: torch.Tensor,
    labels: torch.Tensor,
    present: torch.Tensor,
    *,
    classes: int,
    queries: int,
    bound: float,
    offset_share: float = 0.0,
) -> torch.Tensor:
    """Noisy class means ``[classes, dims]`` from ``queries`` steps of ``trainer``'s mechanism (it counts them).

    ``bound`` is a public bound on the features' L2 norm. With ``offset_share`` > 0 (and at least 2 queries),
    the first sixth of the queries measure the overall mean, and the rest each class's mean offset from it,
    every record's offset clipped to ``offset_share * bound``: images share most of their energy (the demo's
    scans: feature norms 2.0-2.2, offsets from the mean 0.14-0.55 for 90 % of them, class offsets 0.11-0.48),
    so the same noise on a bound 4 times smaller blurs the class means 4 times less.
    """
    if offset_share <= 0.0 or queries < 2:
        totals = _noisy_sums(trainer, features / bound, labels, present, classes=classes, queries=queries)
        return shrink(totals[:, :-1], totals[:, -1], _noise(trainer, queries)) * bound
    first = max(1, round(queries / 6))
    pooled = _noisy_sums(trainer, features / bound, torch.zeros_like(labels), present, classes=1, queries=first)
    overall = pooled[0, :-1] / pooled[0, -1].clamp_min(3 * _noise(trainer, first)) * bound
    limit = offset_share * bound
    offsets = features - overall
    norms = offsets.norm(dim=1, keepdim=True).clamp_min(1e-12)
    clipped = offsets * (limit / norms).clamp(max=1.0)
    totals = _noisy_sums(trainer, clipped / limit, labels, present, classes=classes, queries=queries - first)
    return overall + shrink(totals[:, :-1], totals[:, -1], _noise(trainer, queries - first)) * limit


def _noise(trainer: DPSGDTrainer, queries: int) -> float:
    """Standard deviation of each coordinate of ``queries`` summed noisy steps."""
    return trainer.mechanism.noise_multiplier * trainer.config.max_grad_norm * math.sqrt(queries)


def _noisy_sums(
    trainer: DPSGDTrainer,
    vectors: torch.Tensor,
    labels: torch.Tensor,
    present: torch.Tensor,
    *,
    classes: int,
    queries: int,
) -> torch.Tensor:
    """``[classes, dims + 1]``: per class, the summed ``vectors`` (norm at most 1) and count over ``queries`` steps.

    Each step is one step of the trainer's mechanism: its Poisson batch, each record's ``[v, 1] * C / sqrt(2)``
    (norm at most ``C``, then the record clip), noise ``sigma * C`` per coordinate; the step is counted.
    """
    dims = vectors.shape[1]
    c = trainer.config.max_grad_norm
    totals = torch.zeros(classes, dims + 1)
    for _ in range(queries):
        rows = torch.as_tensor(trainer.poisson_batch())
        contributions = torch.zeros(len(rows), classes, dims + 1)
        if len(rows):
            weight = present[rows] * c / math.sqrt(2)
            contributions[torch.arange(len(rows)), labels[rows], :dims] = vectors[rows] * weight[:, None]
            contributions[torch.arange(len(rows)), labels[rows], dims] = weight
        totals += trainer.gaussian_sum(contributions, rows.numpy())
        trainer.step += 1
    return totals


def shrink(sums: torch.Tensor, counts: torch.Tensor, noise: float) -> torch.Tensor:
    """Class means from noisy per-class ``sums`` ``[classes, dims]`` and ``counts``, shrunk by their noise.

    A class mean ``sums_c / counts_c`` carries noise of variance ``v_c = (noise / counts_c)^2`` per coordinate.
    With ``tau^2`` the spread of the true class means around the overall mean (their observed spread minus the
    noise's, over the reliable classes), each class keeps ``tau^2 / (tau^2 + v_c)`` of its distance from the
    overall mean. A class whose noisy count is within three noise deviations of zero gets the overall mean.

    >>> sums, counts = torch.tensor([[1000.0, 0.0], [5.0, 5.0]]), torch.tensor([1000.0, 5.0])
    >>> [round(v, 3) for v in shrink(sums, counts, noise=10.0)[1].tolist()]  # 5 records: the overall mean
    [1.0, 0.005]
    """
    dims = sums.shape[1]
    reliable = counts > 3 * noise
    overall = sums.sum(0) / counts.sum().clamp_min(noise)
    means = sums / counts.clamp_min(1e-12)[:, None]
    if not bool(reliable.any()):
        return overall[None, :].expand_as(means).clone()
    variance = (noise / counts.clamp_min(noise)) ** 2  # per coordinate, per class
    spread = ((means - overall) ** 2).sum(1) / dims  # per coordinate, per class
    tau2 = float((spread[reliable] - variance[reliable]).mean().clamp_min(0.0))
    keep = tau2 / (tau2 + variance)
    shrunk = overall + keep[:, None] * (means - overall)
    return torch.where(reliable[:, None], shrunk, overall[None, :])


__all__ = ["dp_class_means", "shrink"]
