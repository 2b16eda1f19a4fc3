"""Synthetic texts cut to lengths drawn from the DP profile (``text.lengths: profile``).

A text model may not end a text where real texts end: a fine-tuned backbone under DP noise often writes on past
the last sentence a real note has, into repetitions. The profile holds each text column's length histogram in
characters, learned under DP (:class:`~privsynth.profile.model.TextProfile`). Each synthetic record draws a
length from it; a text longer than its drawn length is cut at the sentence end nearest that length (between
half of it and 15 % beyond it; where no sentence ends there, at a space before it). Shorter texts are kept whole: a cut
cannot lengthen a text.

Drawn lengths below the profile's median are raised to the median. The histogram's short bins hold mostly noise
(a positive count is kept where the true one is 0), and a text cut short loses what it says, so only the upper half
of the distribution is matched by cutting; the lower half is the model's own.

Privacy: post-processing of the DP profile and the synthetic texts, with a sampling stream of its own; nothing
real is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from privsynth.profile.model import TextProfile

#: A sentence ends at ".", "!" or "?" followed by a blank or the end of the text, or at a line break.
SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
#: A cut keeps between these shares of its drawn length: a sentence end outside them is too far from it, and the
#: text is cut at a space before the length instead.
SHORTEST_SHARE, LONGEST_SHARE = 0.5, 1.15

T = TypeVar("T")


def length_targets(profile: TextProfile, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """``n`` lengths in characters drawn from the profile's histogram (uniform within a bin), at least its median.

    ``None`` when the histogram is empty (every count noised to 0: nothing to match).
    """
    edges = np.asarray(profile.length_edges, dtype=np.float64)
    counts = np.clip(np.asarray(profile.length_counts, dtype=np.float64), 0.0, None)
    total = float(counts.sum())
    if total <= 0 or len(edges) != len(counts) + 1:
        return None
    bins = rng.choice(len(counts), size=n, p=counts / total)
    drawn = rng.uniform(edges[bins], edges[bins + 1])
    floor = float(profile.length_quantiles.get("p50", 0.0))
    return np.ceil(np.maximum(drawn, floor)).astype(np.int64)


def cut_to_length(text: str, target: int) -> str:
    """``text`` cut at the sentence end nearest ``target`` characters (kept whole when not longer).

    >>> cut_to_length("Seen today. Cough for a week. Plan: rest. Rest rest rest.", 30)
    'Seen today. Cough for a week.'
    >>> cut_to_length("Seen today. Cough.", 40), cut_to_length("no sentence ends here at all", 12)
    ('Seen today. Cough.', 'no sentence')
    """
    if len(text) <= target:
        return text
    ends = [
        m.end() for m in SENTENCE_END.finditer(text) if SHORTEST_SHARE * target <= m.end() <= LONGEST_SHARE * target
    ]
    if ends:
        best = min(ends, key=lambda end: (abs(end - target), end))
        return text[:best].rstrip()
    space = text.rfind(" ", 0, target + 1)
    return (text[:space] if space >= SHORTEST_SHARE * target else text[:target]).rstrip()


def fit_lengths(texts: Sequence[T], profile: TextProfile, rng: np.random.Generator) -> tuple[list[T], int]:
    """Each text cut to its record's drawn length (:func:`cut_to_length`); non-texts (``None``) as they are.

    Returns the texts and how many were cut.
    """
    targets = length_targets(profile, len(texts), rng)
    if targets is None:
        return list(texts), 0
    out: list[T] = []
    cut = 0
    for text, target in zip(texts, targets.tolist(), strict=True):
        if isinstance(text, str) and len(text) > target:
            shorter = cut_to_length(text, int(target))
            cut += shorter != text
            out.append(shorter)  # type: ignore[arg-type]  # a str in, a str out
        else:
            out.append(text)
    return out, cut


__all__ = ["SENTENCE_END", "cut_to_length", "fit_lengths", "length_targets"]
