"""A DP keyword prior per category, paid for with steps of the text stage's own budget (``text.keyword_column``).

Why: DP-SGD on a pretrained backbone learns a corpus' template long before it learns which words go with which
value of a field (measured on the demo's notes: the fitted adapters write diagnosis words, but for the wrong
diagnosis about half the time). Which tokens the texts of each category hold is a histogram, and histograms are
what DP measures well: so the last ``text.keyword_queries`` steps of the stage's planned mechanism measure it,
and sampling adds ``text.keyword_strength`` times the measured log share ratios to each record's token scores.

The mechanism (as the image stage's class means, :mod:`privsynth.generators.image.moments`):

- after DP-SGD, the fitted model writes ``text.keyword_candidates`` texts from prompts that give each category
  of the domain in turn, the other fields drawn from the DP tabular model with that category fixed (DP outputs
  and public inputs: post-processing), and the
  tokens are ranked by how many of those texts hold them, fewest first (the ones that tell texts apart), or with
  ``text.keyword_order: uneven`` by how unevenly each category's texts hold them (:func:`candidate_order`);
  tokens it never writes are never counted (:func:`~privsynth.generators.text.finetune.written_rank`);
- each training text adds the ``text.keyword_tokens`` (``L``) of its distinct tokens that rank first: a choice
  that reads that text and the public rank only; special tokens and the placeholders (a masked identity is not a
  keyword) are never counted;
- each query draws the Poisson batch of units the accountant assumes (``DPSGDTrainer.poisson_batch``); a record
  of category ``c`` adds ``clip / sqrt(L)`` to cell ``(c, t)`` of each of its ``<= L`` tokens (norm at most its
  clip ``C / k``; a unit of ``k`` records moves the sum by at most ``C``); records whose category is missing or
  outside the schema's domain add nothing;
- noise ``N(0, (sigma C)^2)`` on every cell (``DPSGDTrainer.noised``), and the step is counted,

which is exactly one step of the (sigma, q) subsampled Gaussian mechanism in the ledger: the stage's accounting
is unchanged, DP-SGD runs the steps before. The categories are the schema's declared domain (public), never the
values found in the records. Everything after the noisy sums (:func:`log_ratios`: which tokens clear the noise,
the shares, their logarithms) is post-processing and spends nothing; the log ratios are saved with the model,
which is a DP output like the adapters.

Measured (``benchmarks/text_dp_noise.py --keyword-queries``, on the whole demo-backbone fit's adapters, 200 notes a
row): note classifier ratio 0.48 without a prior; 0.635 with 20 of the stage's 90 steps at its own noise and this
order of tokens (0.525 with the tokenizer's rarest pieces instead); details in ``docs/data-teams.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from privsynth.generators.dpsgd import clip_tensor

if TYPE_CHECKING:
    from privsynth.generators.dpsgd import DPSGDTrainer

#: The trainer output (``DPSGDTrainer.outputs``) that holds the summed noisy keyword counts.
OUTPUT = "keyword_sums"


def candidate_order(held: np.ndarray, texts: np.ndarray, order: str = "fewest") -> np.ndarray:
    """Each token's rank for :func:`keyword_sets` from the fitted model's candidate texts (lowest first).

    ``held[c, t]``: how many of the candidate texts written for category ``c`` hold token ``t``; ``texts[c]``: how
    many texts were written for ``c``. Tokens no candidate holds get ``inf`` (never counted). ``fewest``: by how
    many texts hold the token, fewest first. ``uneven``: by the G-test statistic of the token's presence against
    the category (twice the mutual information, in nats, times the number of texts), largest first, ties to
    the token fewer texts hold: a word of one category's texts beats one every text shares, and a word many texts
    of one category hold beats one a single text holds. Public post-processing (the texts are a DP model's).

    >>> held = np.array([[9, 5, 1, 0], [1, 5, 0, 0]])
    >>> candidate_order(held, np.array([10, 10]), "fewest").tolist()
    [10.0, 10.0, 1.0, inf]
    >>> order = candidate_order(held, np.array([10, 10]), "uneven")
    >>> [int(i) for i in np.argsort(order)[:3]], bool(np.isinf(order[3]))
    ([0, 2, 1], True)
    """
    held = np.asarray(held, dtype=np.float64)
    texts = np.asarray(texts, dtype=np.float64)
    if held.ndim != 2 or texts.shape != (held.shape[0],):
        raise ValueError("held needs one row per category and texts one count per category")
    if np.any(held < 0) or np.any(held > texts[:, None]):
        raise ValueError("a category's texts cannot hold a token more often than it has texts")
    total = held.sum(0)
    if order == "fewest":
        return np.where(total > 0, total, np.inf)
    if order != "uneven":
        raise ValueError(f"unknown keyword order {order!r}: fewest or uneven")
    n = max(float(texts.sum()), 1.0)
    statistic = np.zeros(held.shape[1])
    for observed, share in ((held, total / n), (texts[:, None] - held, 1.0 - total / n)):
        expected = texts[:, None] * share[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(observed > 0, observed * np.log(observed / expected), 0.0)
        statistic += terms.sum(0)
    # the statistic first; among equal ones (up to rounding) the token fewer texts hold: the nudge is at most 1e-9
    rank = -2.0 * statistic + total / (n + 1.0) * 1e-9
    return np.where(total > 0, rank, np.inf)


def keyword_sets(
    texts: Iterable[Sequence[int]],
    *,
    cells: int,
    width: int,
    excluded: Iterable[int],
    rank: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Per text, ``width`` of its distinct token ids below ``cells``, leaving out ``excluded`` (specials).

    ``rank`` (one number per id below ``cells``, from public inputs or DP outputs only) picks them: the lowest
    first, ties to the larger id, ``inf`` never. Default: the largest ids (a BPE tokenizer numbers its pieces in
    merge order, so these are its rarest pieces).

    >>> [s.tolist() for s in keyword_sets([[5, 9, 9, 2, 40, 7], []], cells=32, width=2, excluded=[7])]
    [[9, 5], []]
    >>> order = np.full(32, np.inf)
    >>> order[[2, 5]] = [1.0, 0.0]
    >>> keyword_sets([[5, 9, 2]], cells=32, width=3, excluded=[], rank=order)[0].tolist()
    [5, 2]
    """
    if width < 1:
        raise ValueError("width must be at least 1")
    if rank is None:
        rank = -np.arange(cells, dtype=np.float64)
    rank = np.asarray(rank, dtype=np.float64)
    if rank.shape != (cells,):
        raise ValueError("rank needs one number per counted token id")
    left_out = np.asarray(sorted(set(excluded)), dtype=np.int64)
    sets = []
    for ids in texts:
        distinct = np.unique(np.asarray(ids, dtype=np.int64))
        distinct = distinct[(distinct >= 0) & (distinct < cells)]
        distinct = distinct[~np.isin(distinct, left_out)]
        distinct = distinct[np.isfinite(rank[distinct])]
        order = np.lexsort((-distinct, rank[distinct]))  # by rank, then the larger id
        sets.append(distinct[order][:width].copy())
    return sets


def noisy_keyword_sums(
    trainer: DPSGDTrainer,
    categories: np.ndarray,
    sets: Sequence[np.ndarray],
    *,
    classes: int,
    cells: int,
    width: int,
    queries: int,
) -> torch.Tensor:
    """``[classes, cells]``: the keyword counts summed over ``queries`` steps of ``trainer``'s mechanism (counted).

    ``categories[i]`` is record ``i``'s category index (-1: none) and ``sets[i]`` its at most ``width`` distinct
    token ids, both indexed as the trainer's records. Each step adds ``clip_i / sqrt(width)`` per token of each
    record of its Poisson batch (norm at most the record's clip), then the step's noise on every cell.
    """
    if len(categories) != len(sets):
        raise ValueError("one category per text is needed")
    # the sensitivity rests on these; no token id or count in the messages (they come from private texts)
    if any(len(s) > width or len(np.unique(s)) != len(s) for s in sets):
        raise ValueError(f"each text may add at most {width} distinct tokens")
    if any(len(s) and (s.min() < 0 or s.max() >= cells) for s in sets):
        raise ValueError("a text's keyword token is outside the counted vocabulary")
    if len(categories) and (categories.min() < -1 or categories.max() >= classes):
        raise ValueError("a record's category index is outside the prior's categories")
    total = torch.zeros(classes * cells, dtype=torch.float64)
    for _ in range(queries):
        rows = trainer.poisson_batch()
        summed = torch.zeros(classes * cells, dtype=torch.float32)
        if len(rows):
            # rounded down from the exact C / (k sqrt(L)): no record's norm passes its clip by a float32 ulp
            weights = clip_tensor(trainer.record_clips(rows) / math.sqrt(width)).numpy()
            flat, values = [], []
            for row, weight in zip(rows, weights, strict=True):
                category = int(categories[row])
                if category >= 0 and len(sets[row]):
                    flat.append(category * cells + sets[row])
                    values.append(np.full(len(sets[row]), weight, dtype=np.float32))
            if flat:
                summed.index_add_(0, torch.as_tensor(np.concatenate(flat)), torch.as_tensor(np.concatenate(values)))
        total += trainer.noised(summed.to(trainer.device)).cpu().double()
        trainer.step += 1
    return total.view(classes, cells).float()


def log_ratios(sums: torch.Tensor, *, noise: float, unit: float) -> torch.Tensor:
    """Per category and token, ``log(category's share of the token / category's share of all kept tokens)``.

    ``sums``: noisy summed counts ``[classes, cells]``; ``noise``: their standard deviation per cell; ``unit``:
    what one text of a one-record unit adds to a cell in expectation (``q x queries x C / sqrt(L)``). A token is
    kept when its noisy total over the categories (before negative cells are set to 0) clears four noise
    deviations of that total and 5 texts; the
    others get 0 (no push either way). Shares are smoothed by the larger of the noise and one text. Public
    post-processing of DP sums.

    >>> sums = torch.tensor([[90.0, 40.0, 0.0], [10.0, 40.0, 1.0]])
    >>> ratios = log_ratios(sums, noise=1.0, unit=1.0)
    >>> bool(ratios[0, 0] > 0 > ratios[1, 0]), float(ratios[:, 2].abs().sum())
    (True, 0.0)
    """
    classes = sums.shape[0]
    # the threshold reads the unclamped total, whose noise has mean 0 (clamped cells would add about 0.4 noise
    # deviations each, and with many categories pure noise would clear it)
    kept = sums.double().sum(0) > max(4.0 * noise * math.sqrt(classes), 5.0 * unit)
    noisy = sums.double().clamp_min(0.0)
    total = noisy.sum(0)
    smooth = max(noise, unit)
    ratios = torch.zeros_like(noisy)
    if bool(kept.any()):
        share = (noisy[:, kept] + smooth) / (total[kept] + classes * smooth)
        overall = (noisy[:, kept] + smooth).sum(1) / (total[kept] + classes * smooth).sum()
        ratios[:, kept] = torch.log(share / overall[:, None])
    return ratios.float()


def category_indices(values: Iterable[object], domain: Sequence[object]) -> np.ndarray:
    """Each value's position in the schema's ``domain`` (compared as text), -1 when missing or outside it.

    >>> category_indices(["b", None, "z", 1], ["a", "b", "1"]).tolist()
    [1, -1, -1, 2]
    """
    position = {str(v): i for i, v in enumerate(domain)}
    return np.asarray(
        [
            -1 if value is None or (isinstance(value, float) and math.isnan(value)) else position.get(str(value), -1)
            for value in values
        ],
        dtype=np.int64,
    )


__all__ = ["OUTPUT", "candidate_order", "category_indices", "keyword_sets", "log_ratios", "noisy_keyword_sums"]
