from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privsynth.data.corpus import Corpus
from privsynth.data.schema import schema_from_dict
from privsynth.privacy.accounting import AccountantKind
from privsynth.privacy.ledger import PrivacyLedger
from privsynth.privacy.noise import CountNoise
from privsynth.privacy.randomness import Streams
from privsynth.profile.profiler import dp_profile, plan_queries
from privsynth.profile.spikes import spike_counts

SIGMA = 20.0


def hours(rng: np.random.Generator, n: int = 1600) -> np.ndarray:
    """Adult-like hours a week: 46 % at exactly 40, the rest spread over 1..99 with round values."""
    spread = np.clip(np.round(rng.normal(42, 12, size=n)), 1, 99)
    return np.where(rng.random(n) < 0.46, 40, spread)


def test_a_round_value_keeps_its_spike_and_the_smooth_part_keeps_its_mass(rng: np.random.Generator) -> None:
    values = hours(rng)
    exact = np.bincount(values.astype(int) - 1, minlength=99).astype(float)
    totals = []
    for _ in range(30):
        out = spike_counts(exact + rng.normal(0, SIGMA, size=99), window=5, noise_std=SIGMA)
        assert out[39] / out.sum() > 0.4  # 40 hours: a 5-value bin drawn uniformly would give it ~0.1
        totals.append(out.sum())
    # the smooth part is spread over its windows; thin tails below the noise are dropped (as the coarse grid's
    # floor drops them), so on average most of the mass is there
    assert abs(np.mean(totals) - len(values)) < 0.15 * len(values)


def test_noise_around_one_spike_lets_little_mass_through(rng: np.random.Generator) -> None:
    exact = np.zeros(99)
    exact[39] = 1000.0
    kept = [spike_counts(exact + rng.normal(0, SIGMA, size=99), window=5, noise_std=SIGMA) for _ in range(300)]
    fake = np.mean([np.delete(k, 39).sum() for k in kept])
    # about half a false window of the finest width (~90 records), less at the wider ones, and the soft
    # threshold's ~0.083 noise deviations per window left open (what keeps a thin real tail): ~100 measured
    assert fake < 0.13 * 1000
    assert all(k[39] > 900 for k in kept)


def test_a_thin_real_tail_keeps_part_of_its_mass(rng: np.random.Generator) -> None:
    # Adult-like ages 17..90 at 2,000 people: 8 % are 60 or older, about 5 a value. No window clears its floor
    # there, and before the soft threshold the tail got nothing: such ages could never be sampled.
    ages = np.round(rng.normal(36, 9, size=2000))
    ages = np.where((ages < 17) | (ages > 59), rng.integers(17, 60, size=2000), ages)  # smooth, no pile-up at 59
    ages[: int(0.08 * 2000)] = rng.integers(60, 91, size=int(0.08 * 2000))
    exact = np.bincount(ages.astype(int) - 17, minlength=74).astype(float)
    tails = []
    for _ in range(40):
        out = spike_counts(exact + rng.normal(0, SIGMA, size=74), window=4, noise_std=SIGMA)
        tails.append(out[43:].sum() / out.sum())
    assert np.mean(tails) > 0.5 * 0.08  # most of the tail's mass survives on average
    assert np.mean(np.array(tails) > 0) > 0.9  # and in nearly every profile it can be sampled at all


def one_person_corpus(rng: np.random.Generator, *, with_outlier: bool) -> Corpus:
    values = hours(rng, 400)
    if with_outlier:
        values[0] = 97  # nobody else works 97 hours
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(values))], "hours": values.astype(int)})
    schema = schema_from_dict(
        {
            "key": "id",
            "columns": {
                "id": {"kind": "key"},
                "hours": {"kind": "numerical", "integer": True, "bounds": [1, 99], "nullable": False},
            },
        },
        source="t",
    )
    return Corpus(records=frame, schema=schema, root=Path("."))


def test_one_persons_value_shows_no_more_often_than_dp_allows(rng: np.random.Generator) -> None:
    # The per-value grid is one histogram query (one record moves one count) read only through its noisy
    # counts: whether the profile gives 97 hours any mass may change by at most e^eps with one person.
    def shows_97(corpus: Corpus) -> bool:
        ledger = PrivacyLedger(epsilon=100.0, delta=1e-5, accountant=AccountantKind.RDP)
        noise = CountNoise(Streams.private())
        profile = dp_profile(corpus, ledger=ledger, noise_multiplier=SIGMA, noise=noise, units=400)
        column = profile.columns["hours"]
        edges, counts = np.asarray(column.fine_edges), np.asarray(column.fine_counts)
        assert len(counts) == 99  # one count per whole number
        return bool(counts[np.searchsorted(edges, 97.0) - 1] > 0)

    with_one = one_person_corpus(np.random.default_rng(3), with_outlier=True)
    without = one_person_corpus(np.random.default_rng(3), with_outlier=False)
    trials = 100
    hits = sum(shows_97(with_one) for _ in range(trials))
    base = sum(shows_97(without) for _ in range(trials))
    # epsilon of one count at noise 20 is ~0.2 (delta 1e-5): the rates must be close; a profile that kept the
    # exact count would show 97 hours in every trial with the person and never without
    assert hits <= np.exp(0.25) * base + 3 * np.sqrt(base + 1) + 3


def test_the_spikes_read_only_the_released_noisy_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Invariant (DESIGN.md section 2): the per-value grid is one recorded histogram query and its post-processing
    # sees only that query's noisy output. This fails if exact counts reach spike_counts, or if a finer grid
    # made an extra, unrecorded noisy call.
    from privsynth.profile import profiler

    released: list[tuple[str, np.ndarray]] = []
    original_add = CountNoise.add

    def recording_add(self: CountNoise, counts: np.ndarray, **kwargs: object) -> np.ndarray:
        out = original_add(self, counts, **kwargs)  # type: ignore[arg-type]
        released.append((str(kwargs["purpose"]), out))
        return out

    seen: list[np.ndarray] = []
    original_spikes = profiler.spike_counts

    def recording_spikes(counts: np.ndarray, **kwargs: object) -> np.ndarray:
        seen.append(np.array(counts, copy=True))
        return original_spikes(counts, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(CountNoise, "add", recording_add)
    monkeypatch.setattr(profiler, "spike_counts", recording_spikes)
    corpus = one_person_corpus(np.random.default_rng(4), with_outlier=True)
    ledger = PrivacyLedger(epsilon=100.0, delta=1e-5, accountant=AccountantKind.RDP)
    dp_profile(corpus, ledger=ledger, noise_multiplier=SIGMA, noise=CountNoise(Streams.private()), units=400)
    queries = [out for purpose, out in released if purpose != "count"]
    assert len(queries) == plan_queries(corpus.schema).queries  # every noisy call is one the ledger holds
    (histogram,) = [out for purpose, out in released if purpose == "histogram"]
    (counts,) = seen
    np.testing.assert_array_equal(counts, histogram[:-1])  # the noisy per-value counts, missing bin apart
    exact = np.bincount(corpus.records["hours"].to_numpy(dtype=int) - 1, minlength=99)
    assert not np.allclose(counts, exact)
