"""Best-of-k sampling for the backbone: keep the candidate text that tells its own record best.

A text drawn after a record's prompt often says little about the record (measured on the Amazon reviews: a DP
fine-tuned model's texts carry its label weakly). With ``text.candidates: k`` each record gets ``k`` texts, and
the one with the highest pointwise mutual information with the record's prompt is kept:

    score(t) = log p(t | own prompt) - log sum_d w_d p(t | prompt_d)

where the sum runs over the distinct prompts of the sample's records (``w_d`` their shares; :data:`CONTRASTS`
records drawn from the sample where it has more): an estimate of the text's marginal ``p(t)`` under the synthetic
records' fields. Where the whole sample has one prompt (no fields, or conditions fixing every field) there is
nothing to read back, and each record keeps its first draw without drawing more. The score is the log of the
model's posterior of the record's own fields given the text, up to a constant per record, so the kept text is the
one from which the fields are easiest to read back.

With ``text.candidate_score: keywords`` the score is instead the DP keyword prior's reading of the text
(:func:`keyword_pick`): the candidate whose distinct tokens make the record's own category likeliest, a naive
Bayes posterior over the categories from the prior's noisy per-category counts. It needs no scoring pass, so best
of ``k`` costs about ``k`` draws. A reading by category (the keyword prior's, or the DP classifier's) also says
whether the kept draw reads as its own category at all (:func:`own_readings`); with ``text.candidates_max`` a
record whose kept draw reads as another category draws ``k`` more, until one reads as its own or it has drawn
``candidates_max``, so the draws go where the categories are hard to write.

Privacy: post-processing. It reads the fitted model (and its keyword prior, a DP output), the synthetic records and
the sampling stream only; no real record, text or statistic. Its only cost is time: ``k`` generations per record,
and, scored by fields, a scoring pass per candidate and contrast (one more where the record's own prompt is not
among the contrasts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from privsynth.generators.text.llm import scored_rows

#: At most this many distinct prompts form a candidate's contrast (the estimate of its marginal likelihood).
CONTRASTS = 4
#: Scored positions per chunk of the output layer (a chunk holds ``CHUNK x vocabulary`` logits: ~200 MB).
CHUNK = 1024


@torch.no_grad()
def continuation_logprobs(
    model: Any,
    stack: Any,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    vocab: int,
    trained: int | None = None,
    stop: Sequence[int] = (),
) -> torch.Tensor:
    """``log p(continuation | prompt)`` per pair, under the model as it samples (vocabulary rows and placeholders).

    One left-padded batch, positions and attention as in :func:`..llm.generate`; an empty continuation scores 0.
    With ``trained``, the scores are over the ids sampling draws from (below it, the ``stop`` ids and the
    placeholders, as :func:`..llm.generate`); a continuation holding another id scores minus infinity.
    """
    device = next(model.parameters()).device
    rows = [list(p) + list(c) for p, c in zip(prompts, continuations, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.as_tensor(row)
        mask[i, width - len(row) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    states = model.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
    # the state at position j predicts the token at j + 1
    which_row: list[int] = []
    which_pos: list[int] = []
    targets: list[int] = []
    for i, (prompt, continuation) in enumerate(zip(prompts, continuations, strict=True)):
        first = width - len(rows[i]) + len(prompt) - 1
        which_row += [i] * len(continuation)
        which_pos += range(first, first + len(continuation))
        targets += [int(t) for t in continuation]
    total = torch.zeros(len(rows), dtype=torch.float32, device=device)  # float32: MPS has no float64
    if not targets:
        return total.cpu().double()
    rows_scored, late, head = scored_rows(model, vocab, trained, stop)
    row_t = torch.as_tensor(which_row, device=device)
    picked_states = states[row_t, torch.as_tensor(which_pos, device=device)]
    # each target's column among [rows scored | late stops | placeholders]; -1 where sampling never draws it
    column = {t: rows_scored + j for j, t in enumerate(late)}
    mapped = [
        t if t < rows_scored else t - vocab + rows_scored + len(late) if t >= vocab else column.get(t, -1)
        for t in targets
    ]
    target_t = torch.as_tensor(mapped, device=device)
    outside = target_t < 0
    target_t = target_t.clamp_min(0)
    for start in range(0, len(targets), CHUNK):
        part = picked_states[start : start + CHUNK]
        logits = torch.cat([part @ head.T, stack.placeholder_logits(part)], dim=-1).float()
        scores = torch.log_softmax(logits, dim=-1).gather(-1, target_t[start : start + CHUNK, None]).squeeze(-1)
        scores = scores.masked_fill(outside[start : start + CHUNK], float("-inf"))
        total.index_add_(0, row_t[start : start + CHUNK], scores)
    return total.cpu().double()


def contrast_prompts(
    prompts: Sequence[tuple[int, ...]], rng: np.random.Generator
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The distinct prompts of a sample with their shares; at most :data:`CONTRASTS`, drawn by record if more."""
    counts = Counter(prompts)  # in order of first appearance
    if len(counts) > CONTRASTS:  # a draw of records keeps the estimate of the marginal unbiased
        counts = Counter(prompts[i] for i in sorted(rng.choice(len(prompts), size=CONTRASTS, replace=False)))
    distinct = list(counts)
    shares = np.array([counts[p] for p in distinct], dtype=float)
    return distinct, shares / shares.sum()


def pick_best(
    model: Any,
    stack: Any,
    prompts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    *,
    vocab: int,
    contrasts: Sequence[tuple[int, ...]],
    shares: np.ndarray,
    batch: int = 64,
    trained: int | None = None,
    stop: Sequence[int] = (),
) -> list[int]:
    """Per record, the index of its candidate with the highest score (the first of equals); ``batch`` rows a pass.

    ``contrasts`` and their ``shares`` (:func:`contrast_prompts` of the whole sample) estimate each text's marginal;
    ``trained`` and ``stop`` as in :func:`..llm.generate`, the ids the candidates were drawn from.
    """
    own = [tuple(p) for p in prompts]
    contrasts = list(contrasts)
    k = len(candidates[0])
    pairs_p: list[tuple[int, ...]] = []
    pairs_c: list[Sequence[int]] = []
    own_at, contrast_at = [], []
    for prompt, texts in zip(own, candidates, strict=True):
        # the contrasts first, then the record's own prompt unless it is one of them (scored once, not twice)
        needed = contrasts if prompt in contrasts else [*contrasts, prompt]
        for text in texts:
            contrast_at.append(len(pairs_p))
            own_at.append(len(pairs_p) + needed.index(prompt))
            pairs_p += needed
            pairs_c += [text] * len(needed)
    scores = np.concatenate(
        [
            continuation_logprobs(
                model, stack, pairs_p[i : i + batch], pairs_c[i : i + batch], vocab=vocab, trained=trained, stop=stop
            ).numpy()
            for i in range(0, len(pairs_p), batch)
        ]
    )
    against = scores[np.asarray(contrast_at)[:, None] + np.arange(len(contrasts))]
    marginal = np.logaddexp.reduce(against + np.log(shares), axis=-1)
    pmi = (scores[np.asarray(own_at)] - marginal).reshape(len(own), k)
    return [int(i) for i in np.argmax(pmi, axis=1)]


def keyword_readings(
    candidates: Sequence[Sequence[Sequence[int]]],
    prior: torch.Tensor,
    *,
    shares: np.ndarray | None = None,
) -> np.ndarray:
    """Per record and candidate, the DP keyword prior's log posterior of each category, ``[records, k, classes]``.

    ``prior``: the keyword prior's log share ratios ``[classes, cells]`` (:func:`.keywords.log_ratios`:
    ``log p(token | c) / p(token)``, 0 for a token under the noise); ``shares``: the categories' prior
    probabilities (default: equal). A candidate's log posterior of category ``c`` is ``log shares[c]`` plus
    ``prior[c]`` summed over its distinct tokens below ``cells`` (naive Bayes, each token once, as a text adds a
    token to the counts once), normalised over the categories. Every record has the same number of candidates.

    >>> prior = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # token 0 says category 0, token 1 category 1
    >>> np.exp(keyword_readings([[[0, 0], [1]]], prior)).round(3).tolist()
    [[[0.881, 0.119], [0.119, 0.881]]]
    """
    table = prior.double().numpy()
    classes, cells = table.shape
    base = np.zeros(classes) if shares is None else np.log(np.asarray(shares, dtype=float))
    if base.shape != (classes,):
        raise ValueError(f"keyword_readings: {len(base)} category shares for a prior of {classes} categories")
    k = len(candidates[0]) if len(candidates) else 0
    readings = np.zeros((len(candidates), k, classes))
    for i, texts in enumerate(candidates):
        if len(texts) != k:
            raise ValueError(f"keyword_readings: record {i} has {len(texts)} candidates, the first has {k}")
        for j, text in enumerate(texts):
            tokens = np.unique(np.asarray([t for t in text if 0 <= t < cells], dtype=np.int64))
            sums = base + (table[:, tokens].sum(axis=1) if tokens.size else 0.0)
            readings[i, j] = sums - np.logaddexp.reduce(sums)
    return readings


def own_readings(readings: np.ndarray, categories: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From ``readings[record, candidate, category]`` (log posteriors), each candidate's score and verdict.

    The score is the log posterior of the record's own category: how surely the text reads as its own category
    rather than another, not how many of its words it holds. The verdict says whether the own category is the
    likeliest of all (a tie goes to the category listed first). A record whose category is ``-1`` (missing, or
    outside the domain) scores 0 on every candidate, read as its own: nothing to read, so its first draw is kept.

    >>> readings = np.log(np.array([[[0.3, 0.7], [0.6, 0.4]], [[0.5, 0.5], [0.2, 0.8]]]))
    >>> score, own = own_readings(readings, [0, -1])
    >>> np.exp(score).round(2).tolist(), own.tolist()
    ([[0.3, 0.6], [1.0, 1.0]], [[False, True], [True, True]])
    """
    cats = np.asarray(categories, dtype=np.int64)
    if readings.ndim != 3 or len(readings) != len(cats):
        raise ValueError(f"own_readings: readings of shape {readings.shape} for {len(cats)} records")
    known = cats >= 0
    score = np.zeros(readings.shape[:2])
    own = np.ones(readings.shape[:2], dtype=bool)
    rows = np.flatnonzero(known)
    score[rows] = readings[rows, :, cats[rows]]
    own[rows] = readings[rows].argmax(axis=2) == cats[rows, None]
    return score, own


def best_draw(score: np.ndarray, own: np.ndarray | None = None) -> int:
    """The index of a record's best candidate: the highest ``score``, the first of equals.

    With ``own`` (each candidate's verdict from :func:`own_readings`), a candidate that reads as its own category
    ranks above every one that does not, whatever their scores: with three or more categories the highest own
    posterior need not be the likeliest category (0.45 own against 0.55 for another) while a lower one is (0.40
    against 0.30 and 0.30).

    >>> best_draw(np.log([0.45, 0.40])), best_draw(np.log([0.45, 0.40]), np.array([False, True]))
    (0, 1)
    """
    if own is None:
        return int(np.argmax(score))
    return int(np.lexsort((-score, ~own))[0])  # stable: the first of equals


def keyword_pick(
    candidates: Sequence[Sequence[Sequence[int]]],
    categories: Sequence[int] | np.ndarray,
    prior: torch.Tensor,
    *,
    shares: np.ndarray | None = None,
) -> list[int]:
    """Per record, its candidate whose distinct tokens give its own category the highest posterior under ``prior``.

    :func:`keyword_readings` scored by :func:`own_readings`. A record whose category is ``-1`` (missing, or outside
    the domain) keeps its first draw, as do equal scores.

    >>> prior = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])  # token 0 says category 0, token 1 category 1
    >>> keyword_pick([[[2], [1, 2], [0, 0, 9]], [[2], [1, 2], [0]], [[0], [1], [0]]], [0, 1, -1], prior)
    [2, 1, 0]
    """
    score, _ = own_readings(keyword_readings(candidates, prior, shares=shares), categories)
    return [int(i) for i in np.argmax(score, axis=1)]


__all__ = [
    "CONTRASTS",
    "best_draw",
    "continuation_logprobs",
    "contrast_prompts",
    "keyword_pick",
    "keyword_readings",
    "own_readings",
    "pick_best",
]
