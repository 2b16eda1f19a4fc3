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
of ``k`` costs about ``k`` draws.

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


def keyword_pick(
    candidates: Sequence[Sequence[Sequence[int]]],
    categories: Sequence[int] | np.ndarray,
    prior: torch.Tensor,
    *,
    shares: np.ndarray | None = None,
) -> list[int]:
    """Per record, its candidate whose distinct tokens give its own category the highest posterior under ``prior``.

    ``prior``: the keyword prior's log share ratios ``[classes, cells]`` (:func:`.keywords.log_ratios`:
    ``log p(token | c) / p(token)``, 0 for a token under the noise); ``shares``: the categories' prior
    probabilities (default: equal). A candidate's log posterior of category ``c`` is ``log shares[c]`` plus
    ``prior[c]`` summed over its distinct tokens below ``cells`` (naive Bayes, each token once, as a text adds a
    token to the counts once), normalised over the categories; it is scored at the record's category: how surely
    the text reads as its own category rather than another, not how many keywords it holds. A record whose
    category is ``-1`` (missing, or outside the domain) keeps its first draw, as do equal scores.

    >>> prior = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])  # token 0 says category 0, token 1 category 1
    >>> keyword_pick([[[2], [1, 2], [0, 0, 9]], [[2], [1, 2], [0]], [[0], [1]]], [0, 1, -1], prior)
    [2, 1, 0]
    """
    table = prior.double().numpy()
    classes, cells = table.shape
    base = np.zeros(classes) if shares is None else np.log(np.asarray(shares, dtype=float))
    if base.shape != (classes,):
        raise ValueError(f"keyword_pick: {len(base)} category shares for a prior of {classes} categories")
    picked = []
    for texts, category in zip(candidates, categories, strict=True):
        if category < 0:
            picked.append(0)
            continue
        scores = []
        for text in texts:
            tokens = np.unique(np.asarray([t for t in text if 0 <= t < cells], dtype=np.int64))
            sums = base + (table[:, tokens].sum(axis=1) if tokens.size else 0.0)
            scores.append(sums[int(category)] - np.logaddexp.reduce(sums))
        picked.append(int(np.argmax(scores)))
    return picked


__all__ = ["CONTRASTS", "continuation_logprobs", "contrast_prompts", "keyword_pick", "pick_best"]
