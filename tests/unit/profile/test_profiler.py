from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privsynth.data.corpus import Corpus, read_corpus
from privsynth.data.schema import schema_from_dict
from privsynth.engine import LocalEngine
from privsynth.errors import ConfigError
from privsynth.privacy.accounting import AccountantKind
from privsynth.privacy.contribution import bound_contributions
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.noise import CountNoise
from privsynth.privacy.planner import StageShape, plan_budget
from privsynth.privacy.randomness import Streams
from privsynth.profile.counts import ColumnCounts
from privsynth.profile.model import OTHER, load_profile, save_profile
from privsynth.profile.profiler import COUNT_NOTE, dp_profile, exact_profile, plan_queries, profile_corpus

UNIQUE = "astronaut"
OUTLIER = 5e9


def leak_corpus(rng: np.random.Generator, *, with_rare: bool) -> Corpus:
    n = 400
    jobs = rng.choice(["nurse", "teacher", "driver"], size=n, p=[0.5, 0.3, 0.2]).astype(object)
    income = rng.normal(50_000, 10_000, size=n)
    if with_rare:
        jobs[0] = UNIQUE
        income[1] = OUTLIER
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "job": jobs,
            "income": income,
            "sex": rng.choice(["F", "M"], size=n).astype(object),
        }
    )
    schema = schema_from_dict(
        {
            "key": "id",
            "columns": {
                "id": {"kind": "key"},
                "job": {"kind": "categorical"},
                "income": {"kind": "numerical"},
                "sex": {"kind": "categorical", "domain": ["F", "M", "X"]},
            },
        },
        source="t",
    )
    return Corpus(records=frame, schema=schema, root=Path("."))


def sigma_for(epsilon: float, corpus: Corpus) -> float:
    plan = plan_queries(corpus.schema)
    budget = plan_budget(
        epsilon=epsilon,
        delta=1e-5,
        shapes=[StageShape(stage=Stage.PROFILE, sample_rate=1.0, steps=plan.queries)],
        shares={Stage.PROFILE: 1.0},
        accountant=AccountantKind.RDP,
        extra_delta=1e-6,
    )
    return budget.mechanism(Stage.PROFILE).noise_multiplier


def reveals(corpus: Corpus, sigma: float) -> tuple[bool, bool, tuple[str, ...]]:
    ledger = PrivacyLedger(epsilon=100.0, delta=1e-5, accountant=AccountantKind.RDP)
    noise = CountNoise(Streams.private())  # OpenDP's sampler, fresh OS randomness every profile
    profile = dp_profile(corpus, ledger=ledger, noise_multiplier=sigma, noise=noise, units=len(corpus))
    job = profile.columns["job"]
    income = profile.columns["income"]
    assert profile.columns["sex"].categories == ("F", "M", "X")  # declared-public domain survives exactly
    return UNIQUE in job.categories, income.bounds[1] > 1e8, job.categories


def test_rare_category_and_outlier_are_not_revealed_beyond_dp_rates(rng: np.random.Generator) -> None:
    epsilon = 2.0
    with_rare = leak_corpus(rng, with_rare=True)
    without = leak_corpus(np.random.default_rng(1), with_rare=False)
    sigma = sigma_for(epsilon, with_rare)
    trials = 150
    hits_cat = hits_out = common_kept = 0
    base_cat = base_out = 0
    for _ in range(trials):
        cat, out, categories = reveals(with_rare, sigma)
        hits_cat += cat
        hits_out += out
        common_kept += "nurse" in categories
        cat0, out0, _ = reveals(without, sigma)
        base_cat += cat0
        base_out += out0
    # (epsilon, delta)-DP: P[event | D] <= e^eps P[event | D'] + delta. A category one person holds is released
    # with probability <= delta (never in 150 trials). The range's noise floor lets an empty bin through ~1 % of
    # the time, on D' too, so the outlier's bin can show up by chance: compare the counts with Poisson slack
    # (noise is fresh OS entropy every trial, so this is a statistical test, not a replay of fixed seeds).
    assert hits_cat == 0 and base_cat == 0
    allowed = np.exp(epsilon) * base_out
    assert hits_out <= allowed + 3 * np.sqrt(allowed + 1)  # a profile without noise would reveal it 150 times
    # positive control: the mechanism is not simply dropping everything
    assert common_kept == trials


def test_without_noise_the_leak_would_show(rng: np.random.Generator) -> None:
    exact = exact_profile(leak_corpus(rng, with_rare=True))
    assert UNIQUE in exact.columns["job"].categories
    assert exact.columns["income"].bounds[1] == OUTLIER
    assert exact.internal
    with pytest.raises(ConfigError, match="INTERNAL"):
        exact.require_dp()


def test_profile_spends_a_dp_count_then_its_queries_before_noise_and_lands_on_target(demo_dir: Path) -> None:
    corpus = read_corpus(demo_dir)
    profile = profile_corpus(corpus, epsilon=2.0, delta=1e-5, streams=Streams.private())
    assert profile.ledger is not None
    entries = profile.ledger["entries"]
    assert [e["stage"] for e in entries] == ["profile", "profile"]
    assert entries[0]["note"] == COUNT_NOTE and entries[0]["mechanism"]["steps"] == 1
    assert entries[1]["mechanism"]["steps"] == plan_queries(corpus.schema).queries
    assert 0.97 * 2.0 <= profile.ledger["epsilon"] <= 2.0
    assert profile.ledger["extra_delta"] == pytest.approx(1e-6)  # one undeclared categorical column
    assert profile.ledger["rng"] == "os-entropy"
    assert "person identified by 'patient_id'" in profile.unit_of_privacy
    assert profile.max_records_per_entity == 2
    assert profile.sampler is not None and "opendp" in profile.sampler
    exact = len(bound_contributions(corpus.records, corpus.schema, rng=np.random.default_rng(0)))
    assert profile.records != exact or profile.units != corpus.records["patient_id"].nunique()  # noisy, not exact
    assert abs(profile.records - exact) < 0.5 * exact  # but close: a DP estimate, not noise


def test_the_default_delta_comes_from_the_dp_count_never_the_exact_one(demo_dir: Path) -> None:
    corpus = read_corpus(demo_dir)
    profile = profile_corpus(corpus, epsilon=2.0, delta=None, streams=Streams.private())
    assert profile.ledger is not None and profile.units is not None
    assert profile.ledger["delta"] == pytest.approx(min(1e-5, 0.1 / profile.units))


def test_declared_metadata_is_kept_exactly(demo_dir: Path) -> None:
    profile = profile_corpus(read_corpus(demo_dir), epsilon=1.0, delta=1e-5, streams=Streams.private())
    assert profile.columns["age"].bounds == (18.0, 95.0)
    assert profile.columns["age"].source == "public"
    assert profile.columns["diagnosis"].categories[0] == "healthy"
    assert profile.columns["diagnosis"].has_other is False
    assert profile.columns["note"].max_length == 1000
    assert profile.columns["scan"].size == (32, 32)
    assert profile.columns["insurance"].source == "dp" and profile.columns["insurance"].has_other
    edges = profile.columns["age"].bin_edges
    assert all(b > a for a, b in itertools.pairwise(edges))


def test_dp_profile_is_close_to_exact_with_a_large_budget(demo_dir: Path) -> None:
    corpus = read_corpus(demo_dir)
    bounded = corpus.with_records(bound_contributions(corpus.records, corpus.schema, rng=np.random.default_rng(0)))
    dp = profile_corpus(corpus, epsilon=500.0, delta=1e-5, streams=Streams.private())
    exact = exact_profile(bounded)
    assert dp.columns["smoker"].p_true == pytest.approx(exact.columns["smoker"].p_true, abs=0.05)
    assert dp.columns["glucose"].missing_rate == pytest.approx(exact.columns["glucose"].missing_rate, abs=0.03)
    assert set(dp.columns["insurance"].categories) <= set(exact.columns["insurance"].categories)


def test_unbounded_records_are_refused(demo_dir: Path) -> None:
    corpus = read_corpus(demo_dir)
    ledger = PrivacyLedger(epsilon=1.0, delta=1e-5)
    with pytest.raises(ValueError, match="contribution-bounded"):
        dp_profile(
            corpus.with_records(pd.concat([corpus.records] * 3)),
            ledger=ledger,
            noise_multiplier=5.0,
            noise=CountNoise(Streams.private()),
            units=len(corpus),
        )
    assert ledger.entries == ()


def test_save_and_load(tmp_path: Path, demo_dir: Path) -> None:
    corpus = read_corpus(demo_dir)
    profile = profile_corpus(corpus, epsilon=1.0, delta=1e-5, streams=Streams.private())
    save_profile(profile, tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json") == profile
    internal = exact_profile(corpus)
    save_profile(internal, tmp_path / "i.json")
    assert (tmp_path / "i.json").stat().st_mode & 0o777 == 0o600
    assert "INTERNAL" in (tmp_path / "i.json").read_text()
    assert load_profile(tmp_path / "i.json") == internal
    assert OTHER == "__other__"


class _ThreeShards(LocalEngine):
    """The local engine cut into three shards: what a cluster does, without one."""

    @property
    def workers(self) -> int:
        return 3


def test_the_profile_is_the_same_however_the_rows_are_sharded(demo_dir, reproducible_noise) -> None:
    """Partial counts per shard are summed before the noise: same noise stream, same profile."""
    corpus = read_corpus(demo_dir)
    whole = profile_corpus(corpus, epsilon=2.0, delta=1e-5, streams=Streams.private())
    sharded = profile_corpus(corpus, epsilon=2.0, delta=1e-5, streams=Streams.private(), engine=_ThreeShards())
    a, b = whole.model_dump(), sharded.model_dump()
    ledgers = a.pop("ledger"), b.pop("ledger")
    assert a == b
    for entry in (*ledgers[0]["entries"], *ledgers[1]["entries"]):
        entry.pop("at")  # when it was spent
    assert ledgers[0] == ledgers[1]


def test_partial_counts_add_up_to_the_whole_column() -> None:
    values = pd.Series(["b", None, "a", "b", "c", None, "a", "b"], dtype=object)
    whole, sharded = ColumnCounts(values, LocalEngine()), ColumnCounts(values, _ThreeShards())
    assert sharded.categories() == whole.categories() == [("b", 3), ("a", 2), ("c", 1)]
    assert sharded.missing() == whole.missing() == 2.0
    numbers = np.array([0.5, np.nan, 2.5, 9.0, 1.0])
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    assert sharded.histogram(numbers, edges, clip=(0.0, 3.0)).tolist() == [1.0, 1.0, 2.0]
    assert sharded.missing_numbers(numbers) == 1.0


def test_the_profile_share_never_falls_as_the_cohort_shrinks(demo_dir: Path) -> None:
    """Fewer people need a larger share of epsilon for the profile, never the base share back (a cliff at the
    point where a target went out of reach gave one 150-person fit 8x the noise of another)."""
    from privsynth.config import FitConfig
    from privsynth.profile.profiler import adapted_profile_share

    schema = read_corpus(demo_dir).schema
    config = FitConfig().profile
    shares = [
        adapted_profile_share(schema, base=0.1, units=units, epsilon=3.0, delta=1e-5, config=config)
        for units in range(20, 2000, 10)
    ]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(shares))
    assert shares[0] == pytest.approx(config.max_share)


def test_a_text_columns_lengths_keep_no_noise_far_from_the_real_lengths(reproducible_noise: int) -> None:
    """Undeclared text lengths: noise in the empty bins up to the 1,000,000-character cap must not become the
    longest text (before the noise floor, p99 and max_length landed near 300,000 for texts of 60-119 characters)."""
    rng = np.random.default_rng(0)
    n = 3000
    lengths = rng.integers(60, 120, size=n)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "t": ["x" * int(k) for k in lengths]})
    schema = schema_from_dict({"key": "id", "columns": {"id": {"kind": "key"}, "t": {"kind": "text"}}}, source="t")
    corpus = Corpus(records=frame, schema=schema, root=Path("."))
    ledger = PrivacyLedger(epsilon=100.0, delta=1e-5, accountant=AccountantKind.RDP)
    noise = CountNoise(Streams.private())  # the reproducible test root (fixture): the same noise every run
    profile = dp_profile(corpus, ledger=ledger, noise_multiplier=5.0, noise=noise, units=n)
    text = profile.columns["t"]
    assert text.source == "dp"
    assert 100 <= text.max_length <= 1.5 * lengths.max()
    assert lengths.min() <= text.length_quantiles["p50"] <= lengths.max()
    counts, edges = np.asarray(text.length_counts), np.asarray(text.length_edges)
    far = edges[:-1] >= 2 * lengths.max()
    assert counts[far].sum() <= 0.01 * counts.sum()
