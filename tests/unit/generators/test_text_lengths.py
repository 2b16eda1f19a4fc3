"""Synthetic texts cut to lengths drawn from the DP profile (text.lengths: profile)."""

from __future__ import annotations

import numpy as np
import pytest

from privsynth.generators.text.lengths import cut_to_length, fit_lengths, length_targets
from privsynth.profile.grids import length_edges
from privsynth.profile.model import Source, TextProfile


def _profile(lengths: list[int], noise: float = 0.0, cap: int = 400) -> TextProfile:
    edges = length_edges(cap)
    counts = np.histogram(lengths, bins=edges)[0].astype(float)
    counts[:10] += noise  # the short and long bins of a DP histogram: noise kept positive where the true count is 0
    counts[-3:] += noise
    cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    quantiles = {f"p{q}": float(np.interp(q / 100, cdf, edges)) for q in (50, 99)}
    return TextProfile(
        source=Source.DP,
        missing_rate=0.0,
        max_length=cap,
        length_edges=tuple(edges.tolist()),
        length_counts=tuple(counts.tolist()),
        length_quantiles=quantiles,
    )


def test_drawn_lengths_follow_the_histogram_and_ignore_bins_under_its_noise_floor() -> None:
    real = np.random.default_rng(0).normal(300, 40, 2000).clip(190, 399).astype(int).tolist()
    profile = _profile(real, noise=30.0)  # 30: under the floor of noise with std 15 (about 37 on this grid)
    drawn = length_targets(profile, 5000, np.random.default_rng(1), noise_std=15.0)
    assert drawn is not None
    assert drawn.min() >= 150 and drawn.max() <= 400  # the noisy short and long bins are never drawn
    assert abs(np.median(drawn) - np.median(real)) < 0.12 * np.median(real)  # within a bin's width
    assert (length_targets(profile, 5000, np.random.default_rng(1), noise_std=15.0) == drawn).all()  # the stream's
    raw = length_targets(profile, 5000, np.random.default_rng(1))  # without the floor the noise is drawn too
    assert raw is not None and raw.min() < 20 and raw.max() >= 395
    empty = profile.model_copy(update={"length_counts": tuple(0.0 for _ in profile.length_counts)})
    assert length_targets(empty, 3, np.random.default_rng(1)) is None  # nothing to match: texts stay
    assert length_targets(profile, 3, np.random.default_rng(1), noise_std=1e4) is None  # all under the floor


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ("Seen today. Cough for a week. Plan: rest. Rest rest rest.", 30, "Seen today. Cough for a week."),
        ("Seen today. Cough for a week. Plan: rest.", 38, "Seen today. Cough for a week. Plan: rest."),  # nearest
        ("Short. Text.", 40, "Short. Text."),  # not longer than its length: whole
        ("One long sentence without an end at all here", 20, "One long sentence"),  # at a space
        ("Tiny. Then a very long sentence that goes on and on", 30, "Tiny. Then a very long"),  # end too early
        ("Line one\nline two goes on\nand on", 12, "Line one"),
    ],
)
def test_a_text_is_cut_at_the_sentence_end_nearest_its_length(text: str, target: int, expected: str) -> None:
    assert cut_to_length(text, target) == expected


def test_only_longer_texts_are_cut_and_missing_ones_stay_missing() -> None:
    profile = _profile([100] * 50)
    texts = ["a. " * 200, "short.", None, ""]
    out, cut = fit_lengths(texts, profile, np.random.default_rng(0))
    assert cut == 1 and out[1:] == ["short.", None, ""]
    assert 90 <= len(out[0]) <= 110 and out[0].endswith(".")


def test_a_sentence_end_far_beyond_the_length_is_not_taken() -> None:
    text = "word " * 60 + "end."  # the only sentence end at 304 characters
    assert cut_to_length(text, 100) == ("word " * 20).strip()


def test_drawn_lengths_are_whole_numbers_inside_their_bins_and_blanks_or_a_zero_length_never_empty_a_text() -> None:
    profile = _profile([5] * 100 + [0] * 100, cap=20)  # unit bins: [5, 6) gives 5, [0, 1) gives 0
    drawn = length_targets(profile, 1000, np.random.default_rng(0))
    assert drawn is not None and set(drawn.tolist()) == {0, 5}
    out, cut = fit_lengths(["abcdefghij klm"] * 1000, profile, np.random.default_rng(0))
    assert set(out) == {"abcdefghij klm", "abcde"} and cut == int((drawn == 5).sum())
    assert cut_to_length("          seen today for", 12) == "seen today"  # leading blanks of an empty fill
