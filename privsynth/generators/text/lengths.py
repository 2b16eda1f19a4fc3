"""Synthetic texts cut to lengths drawn from the DP profile (``text.lengths: profile``).

A text model may not end a text where real texts end: a fine-tuned backbone under DP noise often writes on past
the last sentence a real note has, into repetitions. The profile holds each text column's length histogram in
characters, learned under DP (:class:`~privsynth.profile.model.TextProfile`). Each synthetic record draws a
length from it; a text longer than its drawn length is cut at the sentence end nearest that length (between
half of it and 15 % beyond it; where no sentence ends there, at a space before it). Shorter texts are kept whole:
a cut cannot lengthen a text.

The histogram is noisy: a positive count is kept where the true one is 0, so bins far from the real lengths hold
noise (on the demo a tenth of the mass below 200 characters and 3 % above 420, where no real note is). As the
profiler does for numeric histograms, bins below the noise floor
(:func:`~privsynth.privacy.noise.noise_floor_threshold`, from the profile's noise scale; about half a bin of pure
noise survives on the whole grid) count as empty.

Privacy: post-processing of the DP profile and the synthetic texts, with a sampling stream of its own; nothing
real is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from privsynth.privacy.noise import noise_floor_threshold
from privsynth.profile.model import TextProfile

#: A sentence ends at ".", "!" or "?" followed by a blank or the end of the text, or at a line break.
SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
#: A cut keeps between these shares of its drawn length: a sentence end outside them is too far from it, and the
#: text is cut at a space before the length instead.
SHORTEST_SHARE, LONGEST_SHARE = 0.5, 1.15

T = TypeVar("T")


def length_targets(
    profile: TextProfile, n: int, rng: np.random.Generator, *, noise_std: float = 0.0
) -> np.ndarray | None:
    """``n`` lengths in characters drawn from the profile's histogram (uniform within a bin).

    ``noise_std``: the histogram's noise standard deviation (0 for declared or exact profiles); bins below its
    noise floor are dropped. ``None`` when no bin is left (nothing to match: texts stay as the model wrote them).
    """
    edges = np.asarray(profile.length_edges, dtype=np.float64)
    counts = np.clip(np.asarray(profile.length_counts, dtype=np.float64), 0.0, None)
    if len(edges) != len(counts) + 1:
        return None
    if noise_std > 0:
        floor = noise_floor_threshold(noise_std=noise_std, bins=len(counts), false_bins=0.5)
        counts = np.where(counts >= floor, counts, 0.0)
    total = float(counts.sum())
    if total <= 0:
        return None
    bins = rng.choice(len(counts), size=n, p=counts / total)
    # whole lengths inside each bin [a, b) (the edges are whole numbers)
    return rng.integers(edges[bins].astype(np.int64), edges[bins + 1].astype(np.int64))


def cut_to_length(text: str, target: int) -> str:
    """``text`` cut at the sentence end nearest ``target`` characters (kept whole when not longer).

    >>> cut_to_length("Seen today. Cough for a week. Plan: rest. Rest rest rest.", 30)
    'Seen today. Cough for a week.'
    >>> cut_to_length("Seen today. Cough.", 40), cut_to_length("no sentence ends here at all", 12)
    ('Seen today. Cough.', 'no sentence')
    """
    if len(text) <= target:
        return text
    text = text.strip()  # blanks of a placeholder filled with an empty value: cut after them, as max_length does
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


def fit_lengths(
    texts: Sequence[T], profile: TextProfile, rng: np.random.Generator, *, noise_std: float = 0.0
) -> tuple[list[T], int]:
    """Each text cut to its record's drawn length (:func:`cut_to_length`); non-texts (``None``) as they are.

    Returns the texts and how many were cut.
    """
    targets = length_targets(profile, len(texts), rng, noise_std=noise_std)
    if targets is None:
        return list(texts), 0
    out: list[T] = []
    cut = 0
    for text, target in zip(texts, targets.tolist(), strict=True):
        if isinstance(text, str) and 0 < target < len(text):  # a length of 0 (empty texts' bin): kept
            shorter = cut_to_length(text, int(target))
            cut += shorter != text
            out.append(shorter)  # type: ignore[arg-type]  # a str in, a str out
        else:
            out.append(text)
    return out, cut


__all__ = ["SENTENCE_END", "cut_to_length", "fit_lengths", "length_targets"]
