"""DP profiling: the metadata generators need, learned under the ledger or taken from declared-public metadata.

For every modelled column, one Gaussian histogram query (with a 'missing' bin) over a grid fixed before the data
is read; numerical and datetime columns without declared bounds first get a coarse range query. Categories
without a declared domain come from a thresholded ("sparse") histogram: a category is released only if its noisy
count passes a threshold set from the noise, so one that a single person holds survives with probability at most
its share of delta. Everything after the noisy counts is post-processing.

All queries share one noise multiplier; the ledger records them as ``k`` Gaussian queries before any noise is
drawn, and OpenDP's floating-point-safe Gaussian draws the noise (:class:`privsynth.privacy.noise.CountNoise`).
The corpus must already be contribution-bounded (:func:`privsynth.privacy.contribution.bound_contributions`).

No exact count of the private corpus reaches the profile. Choices made before the histograms are drawn (how many
fine bins the noise allows) use the fit's DP count of units of privacy (:func:`dp_unit_count`, spent first);
``Profile.records`` and every missing rate are post-processing of the noisy histograms themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from privsynth.data.corpus import Corpus
from privsynth.data.schema import ColumnKind, ColumnSpec, Schema
from privsynth.data.validate import Limits
from privsynth.engine import Engine, LocalEngine
from privsynth.privacy.accounting import AccountantKind, Mechanism, noise_for_epsilon
from privsynth.privacy.contribution import sensitivity
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.noise import CountNoise, noise_floor_threshold, sparse_threshold
from privsynth.privacy.randomness import Streams
from privsynth.profile.counts import ColumnCounts
from privsynth.profile.grids import fine_edges, length_edges, magnitude_edges, month_edges, to_days
from privsynth.profile.model import (
    BooleanProfile,
    CategoricalProfile,
    ColumnProfile,
    ImageProfile,
    NumericalProfile,
    Profile,
    Source,
    TextProfile,
)
from privsynth.profile.ranges import detect_range, window_threshold
from privsynth.profile.spikes import spike_counts, whole_number_grid

log = logging.getLogger(__name__)


class ProfileConfig(BaseModel):
    """Knobs of the profiler (all public: they are chosen without looking at the data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quantile_bins: int = Field(default=20, ge=2, le=512, description="Quantile bins per numerical column.")
    fine_bins: int = Field(default=256, ge=8, le=4096, description="Fine histogram bins inside the bounds.")
    max_categories: int = Field(default=1000, ge=1, description="Most categories released per column.")
    whole_numbers: bool = Field(
        default=True,
        description="Whole numbers over a short range (at most fine_bins values) get one count per value, read at "
        "two scales so round values keep their spikes (privsynth/profile/spikes.py); off: the coarse grid.",
    )
    threshold_delta_share: float = Field(
        default=0.1, gt=0, lt=1, description="Share of delta reserved for sparse-histogram thresholds."
    )
    adaptive_share: bool = Field(
        default=True,
        description="Raise the profile's share of epsilon (never lower it) when, at the DP count of people, its "
        "noise would merge categories held by 'category_share' of the people into __other__, hide range bins "
        "holding 'range_share' of them, or blur declared categories; up to 'max_share'.",
    )
    category_share: float = Field(default=0.1, gt=0, le=1, description="Undeclared categories this common survive.")
    range_share: float = Field(default=0.2, gt=0, le=1, description="Range grid bins this full are seen.")
    max_share: float = Field(default=0.5, gt=0, lt=1, description="Largest share of epsilon the profile may take.")
    count_share: float = Field(
        default=0.02,
        gt=0,
        le=0.5,
        description="Share of epsilon (on its own) for the DP count of units that sets sample rates and delta.",
    )
    image_size: tuple[int, int] = Field(default=(32, 32), description="Size used when the schema declares none.")
    image_mode: str = Field(default="L", pattern="^(L|RGB)$")


@dataclass(frozen=True)
class ProfilePlan:
    """The data-independent shape of a profile: how many queries, which need thresholds."""

    queries: int
    sparse_columns: tuple[str, ...]
    range_columns: tuple[str, ...]

    def extra_delta(self, delta: float, config: ProfileConfig) -> float:
        """Delta reserved for thresholds (zero when every categorical domain is declared)."""
        return delta * config.threshold_delta_share if self.sparse_columns else 0.0


def plan_queries(schema: Schema) -> ProfilePlan:
    """Count the profiling queries a schema needs (no data is read)."""
    queries = 0
    sparse: list[str] = []
    ranges: list[str] = []
    for name, spec in schema.columns.items():
        if spec.kind in (ColumnKind.KEY, ColumnKind.IDENTIFIER):
            continue
        queries += 1
        if spec.kind is ColumnKind.CATEGORICAL and spec.domain is None:
            sparse.append(name)
        if (spec.kind is ColumnKind.NUMERICAL and spec.bounds is None) or (
            spec.kind is ColumnKind.DATETIME and spec.date_range is None
        ):
            ranges.append(name)
            queries += 1
    return ProfilePlan(queries=queries, sparse_columns=tuple(sparse), range_columns=tuple(ranges))


def profile_noise_target(schema: Schema, *, units: int, delta: float, config: ProfileConfig) -> float | None:
    """The largest profile noise multiplier at which the profile still works for ``units`` people, or ``None``.

    Works means: an undeclared category held by ``config.category_share`` of the people clears the sparse
    threshold; a range grid bin holding ``config.range_share`` of them clears the noise floor; a declared category
    of average size is off by at most a tenth. Depends on public values only (the schema, the DP count, delta).
    ``None`` when the schema asks nothing of the profile's noise (every column declared with few categories...);
    ``0.0`` when a target is out of reach at any noise (too few people): the profile then wants all it may get.
    """
    from scipy.stats import norm

    plan = plan_queries(schema)
    m = sensitivity(schema)
    caps: list[float] = []
    if plan.sparse_columns:
        per_column = plan.extra_delta(delta, config) / len(plan.sparse_columns)
        z = float(norm.isf(per_column / m))
        caps.append((config.category_share * units - m) / (m * z))  # sparse_threshold = m + sigma * m * z
    if plan.range_columns:
        bins = max(len(magnitude_edges()), len(month_edges())) - 1
        caps.append(config.range_share * units / window_threshold(std=m, bins=bins, width=1))
    for spec in schema.columns.values():
        if spec.kind is ColumnKind.CATEGORICAL and spec.domain is not None:
            caps.append(0.1 * units / (len(spec.domain) * m))
    if not caps:  # nothing asked of the noise
        return None
    # out of reach at any noise: the smallest cohorts need the most budget, never the base share (the old None
    # here gave a 150-person fit 8x the noise of a 160-person one)
    return max(min(caps), 0.0)


def adapted_profile_share(
    schema: Schema, *, base: float, units: int, epsilon: float, delta: float, config: ProfileConfig
) -> float:
    """The profile's share of epsilon: ``base``, raised (up to ``config.max_share``) to meet its noise target.

    The target is :func:`profile_noise_target`. The profile is calibrated alone here (closed form, q = 1); the
    joint plan then composes it with the other stages, so this only chooses the split, never what is accounted.
    """
    queries = plan_queries(schema).queries
    target = profile_noise_target(schema, units=units, delta=delta, config=config)
    if not config.adaptive_share or target is None or queries == 0 or base >= config.max_share:
        return base

    def sigma(share: float) -> float:
        try:
            return noise_for_epsilon(share * epsilon, delta=delta, sample_rate=1.0, steps=queries)
        except ValueError:  # ConfigError too: that share cannot be calibrated at all
            return float("inf")

    if sigma(base) <= target:
        return base
    if sigma(config.max_share) > target:
        log.info("profile: its share of epsilon raised from %.2f to %.2f (small cohort)", base, config.max_share)
        return config.max_share
    low, high = base, config.max_share
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (low, mid) if sigma(mid) <= target else (mid, high)
    log.info("profile: its share of epsilon raised from %.2f to %.2f (small cohort)", base, high)
    return high


COUNT_NOTE = "DP count of units of privacy"
PROFILE_NOTE = "Gaussian histogram queries"


def count_mechanism(*, epsilon: float, delta: float, config: ProfileConfig) -> Mechanism:
    """The Gaussian count of units every fit spends first: ``config.count_share`` of ``epsilon`` on its own.

    Its noise depends on the public (epsilon, delta) only. Composed with the rest it costs far less than its
    share (a tiny Gaussian adds little under composition); the planner calibrates the other stages around it.

    >>> count_mechanism(epsilon=8.0, delta=1e-5, config=ProfileConfig()).noise_multiplier > 20
    True
    """
    sigma = noise_for_epsilon(
        config.count_share * epsilon, delta=delta, sample_rate=1.0, steps=1, accountant=AccountantKind.RDP
    )
    return Mechanism(noise_multiplier=sigma, sample_rate=1.0, steps=1)


def dp_unit_count(
    units: int, *, ledger: PrivacyLedger, noise: CountNoise, config: ProfileConfig, default_delta: bool
) -> int:
    """The number of units of privacy plus Gaussian noise (one unit moves it by 1), spent before it is drawn.

    Sample rates (batch / count), the default delta and the profile's grid sizes use this count, so none of
    them reveals the exact number of people. With ``default_delta`` the ledger was opened at the largest default
    delta (1e-5) and is lowered here to ``min(1e-5, 0.1 / count)``. Returns the count (at least 1).
    """
    from privsynth.privacy import planner

    mechanism = count_mechanism(epsilon=ledger.target_epsilon, delta=ledger.target_delta, config=config)
    ledger.spend(Stage.PROFILE, mechanism, note=COUNT_NOTE)
    noisy = noise.add(np.array([float(units)]), scale=mechanism.noise_multiplier, column="*", purpose="count")
    count = max(1, round(float(noisy[0])))
    if default_delta:
        ledger.tighten_delta(min(ledger.target_delta, planner.default_delta(count)))
    planner.check_delta(ledger.target_delta, max(units, 1), exact=True)  # units: the exact count
    return count


@dataclass
class _Noisy:
    """Adds calibrated noise (or none, for exact internal profiles), and keeps each full histogram's total."""

    std: float
    source: CountNoise | None
    totals: list[tuple[float, int]] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.source is None

    def __call__(self, counts: np.ndarray, *, column: str, purpose: str, full: bool = True) -> np.ndarray:
        """Noisy ``counts``; ``full`` histograms (every record in one bin) also give a noisy record total."""
        if self.source is None:
            released = np.asarray(counts, dtype=np.float64)
        else:
            released = self.source.add(counts, scale=self.std, column=column, purpose=purpose)
        if full:
            self.totals.append((float(released.sum()), int(released.size)))
        return released

    def records(self) -> float:
        """The record count from the full histograms' noisy totals, weighted by inverse noise variance."""
        if not self.totals:
            return 0.0
        weights = np.array([1.0 / bins for _, bins in self.totals])
        values = np.array([total for total, _ in self.totals])
        return max(float((weights * values).sum() / weights.sum()), 0.0)


def dp_profile(
    corpus: Corpus,
    *,
    ledger: PrivacyLedger,
    noise_multiplier: float,
    noise: CountNoise,
    units: int,
    config: ProfileConfig | None = None,
    resume: bool = False,
    engine: Engine | None = None,
) -> Profile:
    """Profile ``corpus`` under DP. The spend is recorded in ``ledger`` before any noise is drawn.

    The exact counts are summed from row shards on ``engine`` (this process by default); the noise is drawn here,
    once, after the sum: it never depends on how the rows were split.

    ``units`` is the fit's DP count of units of privacy (:func:`dp_unit_count`), never the exact one.
    ``resume=True`` re-runs a profile whose spend the ledger already holds (an interrupted run whose profile
    never reached disk, so its noisy output never left the process): nothing is spent again, and only one
    profile is ever kept.
    """
    cfg = config if config is not None else ProfileConfig()
    _check_bounded(corpus)
    plan = plan_queries(corpus.schema)
    extra = plan.extra_delta(ledger.target_delta, cfg)
    mechanism = (
        Mechanism(noise_multiplier=noise_multiplier, sample_rate=1.0, steps=plan.queries) if plan.queries else None
    )
    if resume and mechanism is not None and mechanism not in ledger.mechanisms(Stage.PROFILE):
        raise ValueError("resume=True but the ledger holds no matching profile spend")
    if plan.queries and not resume:
        ledger.spend(
            Stage.PROFILE,
            Mechanism(noise_multiplier=noise_multiplier, sample_rate=1.0, steps=plan.queries),
            extra_delta=extra,
            note=f"{plan.queries} {PROFILE_NOTE}; {len(plan.sparse_columns)} thresholded",
        )
    m = sensitivity(corpus.schema)
    noisy = _Noisy(std=noise_multiplier * m, source=noise)
    per_column_delta = extra / len(plan.sparse_columns) if plan.sparse_columns else 0.0
    # Grid sizes are chosen before any histogram, from the DP unit count: every unit has at least one record, so
    # a grid sized for `units` records holds at least the intended signal per bin. Sized for the upper bound
    # (units x m) instead, the demo's people (m = 2, ~1.2 records each) got 1.7x too many bins: ~2.3 noise
    # deviations a bin, under the noise floor, and 27 of its 48 visit-date bins were zeroed.
    columns = _profile_columns(corpus, noisy, cfg, sparse_delta=per_column_delta, records=units, engine=engine)
    return Profile(
        internal=False,
        records=round(noisy.records()),
        units=units,
        sampler=noise.sampler,
        unit_of_privacy=corpus.schema.unit_of_privacy,
        max_records_per_entity=m,
        noise_multiplier=noise_multiplier,
        queries=plan.queries,
        columns=columns,
        ledger=ledger.state_dict(),
    )


def exact_profile(corpus: Corpus, *, config: ProfileConfig | None = None) -> Profile:
    """The same statistics without noise, for data owners only: marked internal, refused by generators."""
    cfg = config if config is not None else ProfileConfig()
    columns = _profile_columns(corpus, _Noisy(std=0.0, source=None), cfg, sparse_delta=0.0, records=len(corpus))
    return Profile(
        internal=True,
        records=len(corpus),
        unit_of_privacy=corpus.schema.unit_of_privacy,
        max_records_per_entity=sensitivity(corpus.schema),
        noise_multiplier=None,
        queries=0,
        columns=columns,
        ledger=None,
    )


def _check_bounded(corpus: Corpus) -> None:
    schema = corpus.schema
    if schema.entity is None or len(corpus) == 0:
        return
    worst = int(corpus.records[schema.entity].value_counts().max())
    if worst > schema.max_records_per_entity:
        raise ValueError(
            "records are not contribution-bounded; call bound_contributions() before profiling (a person has "
            f"{worst} records, the schema allows {schema.max_records_per_entity})"
        )


def _profile_columns(
    corpus: Corpus,
    noisy: _Noisy,
    cfg: ProfileConfig,
    *,
    sparse_delta: float,
    records: int,
    engine: Engine | None = None,
) -> dict[str, ColumnProfile]:
    """Every column's profile; ``records`` (DP, or exact for internal profiles) only sizes grids.

    Exact counts are summed from row shards on ``engine`` (:mod:`privsynth.profile.counts`); noise is added here.
    """
    n = records
    out: dict[str, ColumnProfile] = {}
    m = sensitivity(corpus.schema)
    where = engine if engine is not None else LocalEngine()
    for name, spec in corpus.schema.columns.items():
        values = corpus.records[name]
        column = ColumnCounts(values, where)
        kind = spec.kind
        if kind is ColumnKind.CATEGORICAL:
            out[name] = _categorical(name, column, spec, noisy, cfg, m=m, delta=sparse_delta)
        elif kind is ColumnKind.NUMERICAL:
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            out[name] = _numerical(name, column, numbers, spec, noisy, cfg, n=n, datetime=False)
        elif kind is ColumnKind.DATETIME:
            out[name] = _numerical(name, column, to_days(values.to_numpy()), spec, noisy, cfg, n=n, datetime=True)
        elif kind is ColumnKind.BOOLEAN:
            out[name] = _boolean(name, column, noisy)
        elif kind is ColumnKind.TEXT:
            out[name] = _text(name, column, spec, noisy)
        elif kind is ColumnKind.IMAGE:
            out[name] = _image(name, column, spec, noisy, cfg)
    return out


def _source(noisy: _Noisy, public: bool) -> Source:
    if public:
        return Source.PUBLIC
    return Source.EXACT if noisy.exact else Source.DP


def _missing_rate(released: np.ndarray) -> float:
    """The last (missing) bin's share of a noisy full histogram (post-processing: no exact count involved)."""
    total = float(np.clip(released, 0.0, None).sum())
    return float(np.clip(released[-1] / total, 0.0, 1.0)) if total > 0 else 0.0


def _categorical(
    name: str,
    column: ColumnCounts,
    spec: ColumnSpec,
    noisy: _Noisy,
    cfg: ProfileConfig,
    *,
    m: int,
    delta: float,
) -> CategoricalProfile:
    missing = column.missing()
    found = column.categories()
    if spec.domain is not None:
        keys = list(spec.domain)
        lookup = dict(found)
        raw = np.array([lookup.get(k, 0) for k in keys] + [missing], dtype=np.float64)
        released = noisy(raw, column=name, purpose="histogram")
        return CategoricalProfile(
            source=Source.PUBLIC,
            missing_rate=_missing_rate(released),
            categories=tuple(keys),
            counts=tuple(float(max(c, 0.0)) for c in released[:-1]),
            has_other=False,
        )
    keys = [str(k) for k, _ in found]
    # full=False: how many keys this histogram has depends on the data, so it must not weight the record total
    released = noisy(
        np.array([*(float(c) for _, c in found), missing], dtype=np.float64),
        column=name,
        purpose="histogram",
        full=False,
    )
    threshold = 0.0 if noisy.exact else sparse_threshold(noise_std=noisy.std, max_contribution=m, delta=delta)
    kept = [(k, c) for k, c in zip(keys, released[:-1], strict=True) if c >= threshold and c > 0]
    kept.sort(key=lambda kc: (-kc[1], kc[0]))
    if len(kept) > cfg.max_categories:
        kept = kept[: cfg.max_categories]
    if not kept:
        log.warning(
            "column '%s': no category passed the DP threshold; it will be generated as '__other__' only "
            "(declare its domain in schema.yaml, or raise epsilon)",
            name,
        )
    return CategoricalProfile(
        source=_source(noisy, public=False),
        missing_rate=_missing_rate(released),
        categories=tuple(k for k, _ in kept),
        counts=tuple(float(c) for _, c in kept),
        has_other=True,
    )


def _dp_range(
    name: str, column: ColumnCounts, numbers: np.ndarray, noisy: _Noisy, *, datetime: bool
) -> tuple[float, float, int, bool]:
    """Bounds from a coarse public grid, by multi-scale detection (:mod:`privsynth.profile.ranges`).

    Returns ``(low, high, width, detected)``: the window width in grid bins at which the data were seen, and
    whether they were seen at all (otherwise the bounds are the most significant window: a guess, flagged).
    """
    if noisy.exact:  # internal profiles only (data owners): the exact range
        present = numbers[~np.isnan(numbers)]
        if present.size == 0:
            return (0.0, 1.0, 1, True)
        return (float(present.min()), float(present.max()), 1, True)
    edges = month_edges() if datetime else magnitude_edges()
    counts = column.histogram(numbers, edges)
    released = noisy(counts, column=name, purpose="range", full=False)
    found = detect_range(released, std=noisy.std)
    if not found.detected:
        log.warning(
            "column '%s': its range could not be separated from the noise at any window width; using the most "
            "significant window (declare bounds in schema.yaml, or raise epsilon)",
            name,
        )
    first, last = found.first, found.last
    if found.width == 1:  # one more grid bin on each side (post-processing): tails just below the threshold
        first, last = max(first - 1, 0), min(last + 1, len(counts) - 1)
    return (float(edges[first]), float(edges[last + 1]), found.width, found.detected)


def fine_bin_count(records: int, noise_std: float, cap: int) -> int:
    """Fine bins for a DP histogram: about four noise deviations of signal per bin on average, at most ``cap``.

    Depends only on the (public) record count and the noise, never on values.

    >>> fine_bin_count(2000, 15.0, 256), fine_bin_count(1_000_000, 15.0, 256), fine_bin_count(300, 0.0, 256)
    (33, 256, 256)
    """
    if noise_std <= 0:
        return cap
    return int(np.clip(records // (4.0 * noise_std), 8, cap))


def _numerical(
    name: str,
    column: ColumnCounts,
    numbers: np.ndarray,
    spec: ColumnSpec,
    noisy: _Noisy,
    cfg: ProfileConfig,
    *,
    n: int,
    datetime: bool,
) -> NumericalProfile:
    missing = column.missing_numbers(numbers)
    if datetime and spec.date_range is not None:
        first, last = (pd.Timestamp(d) for d in spec.date_range)
        low, high = (
            float(to_days(np.array([first.to_datetime64()]))[0]),
            float(to_days(np.array([last.to_datetime64()]))[0] + 1.0),
        )
        public = True
    elif not datetime and spec.bounds is not None:
        low, high = float(spec.bounds[0]), float(spec.bounds[1])
        public = True
    else:
        low, high, width, detected = _dp_range(name, column, numbers, noisy, datetime=datetime)
        public = False
    integer = spec.integer and not datetime
    if integer:
        low, high = float(np.floor(low)), float(np.ceil(high))
    # As many bins as the noise allows (one per whole number when there are enough records for it); whole
    # numbers over a short range get one count each anyway, read at two scales so round values keep their spikes
    coarse = fine_bin_count(n, noisy.std, cfg.fine_bins)
    per_value = integer and cfg.whole_numbers and not noisy.exact
    values = whole_number_grid(low, high, coarse_bins=coarse, cap=cfg.fine_bins) if per_value else None
    fine = fine_edges(low, high, coarse if values is None else values, integer=integer)
    counts = column.histogram(numbers, fine, clip=(low, high))
    released = noisy(np.append(counts, missing), column=name, purpose="histogram")
    fine_counts = np.clip(released[:-1], 0.0, None)
    if values is not None:
        window = int(np.ceil(values / coarse))
        fine_counts = spike_counts(released[:-1], window=window, noise_std=noisy.std)
    elif not noisy.exact:
        # Bins below the noise floor count as empty (about half a bin of pure noise survives on the whole grid),
        # so noise does not spread mass over the whole range.
        floor = noise_floor_threshold(noise_std=noisy.std, bins=len(fine_counts), false_bins=0.5)
        if (fine_counts >= floor).any():
            fine_counts = np.where(fine_counts >= floor, fine_counts, 0.0)
    edges = quantile_edges(fine, fine_counts, min(cfg.quantile_bins, len(fine) - 1), integer=integer)
    return NumericalProfile(
        kind="datetime" if datetime else "numerical",
        source=_source(noisy, public),
        missing_rate=_missing_rate(released),
        integer=integer,
        bounds=(low, high),
        bin_edges=tuple(float(e) for e in edges),
        fine_edges=tuple(float(e) for e in fine),
        fine_counts=tuple(float(c) for c in fine_counts),
        range_width=None if public else width,
        range_detected=public or detected,
    )


def quantile_edges(fine: np.ndarray, counts: np.ndarray, bins: int, *, integer: bool) -> np.ndarray:
    """Edges splitting a (noisy) fine histogram into about ``bins`` equal-mass bins (post-processing).

    Every edge is a fine edge, so each bin's DP mass is an exact sum of fine counts (no assumption about how
    mass spreads inside a fine bin). Duplicate edges are merged.

    >>> quantile_edges(np.array([0.0, 1, 2, 3, 4]), np.array([1.0, 1, 1, 1]), 2, integer=False).tolist()
    [0.0, 2.0, 4.0]
    >>> quantile_edges(np.array([-0.5, 0.5, 1.5, 2.5]), np.array([9.0, 0.5, 0.5]), 3, integer=True).tolist()
    [-0.5, 0.5, 2.5]
    """
    del integer  # fine edges of integer columns already sit on half-integers
    total = float(counts.sum())
    if total <= 0:
        step = max(1, (len(fine) - 1) // bins)
        return np.unique(np.concatenate([fine[::step], [fine[-1]]]))
    cdf = np.concatenate([[0.0], np.cumsum(counts) / total])
    targets = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    nearest = np.abs(cdf[None, :] - targets[:, None]).argmin(axis=1)  # the fine edge closest in mass
    return np.unique(np.concatenate([[fine[0]], fine[nearest], [fine[-1]]]))


def _boolean(name: str, column: ColumnCounts, noisy: _Noisy) -> BooleanProfile:
    found: dict[bool, int] = {}
    for value, count in column.categories():
        found[bool(value)] = found.get(bool(value), 0) + count
    raw = np.array([found.get(False, 0), found.get(True, 0), column.missing()], dtype=np.float64)
    released = np.clip(noisy(raw, column=name, purpose="histogram"), 0.0, None)
    denominator = released[0] + released[1]
    return BooleanProfile(
        source=_source(noisy, public=False),
        missing_rate=_missing_rate(released),
        p_true=float(released[1] / denominator) if denominator > 0 else 0.5,
    )


def _text(name: str, column: ColumnCounts, spec: ColumnSpec, noisy: _Noisy) -> TextProfile:
    cap = spec.max_length if spec.max_length is not None else Limits().max_text_chars
    edges = length_edges(cap)
    counts = column.length_histogram(edges, cap)
    released = noisy(np.append(counts, column.missing()), column=name, purpose="histogram")
    length_counts = np.clip(released[:-1], 0.0, None)
    if not noisy.exact:
        # As for numbers: bins below the noise floor count as empty. Without it the noise of the empty bins far
        # from the real lengths moved the quantiles (on the demo, real notes of 191-413 characters: p99 935) and,
        # where the schema declares no max_length, the profile's max_length (p99) with them: ~300,000 characters.
        floor = noise_floor_threshold(noise_std=noisy.std, bins=len(length_counts), false_bins=0.5)
        if (length_counts >= floor).any():
            length_counts = np.where(length_counts >= floor, length_counts, 0.0)
    total = float(length_counts.sum())
    quantiles: dict[str, float] = {}
    if total > 0:
        cdf = np.concatenate([[0.0], np.cumsum(length_counts) / total])
        for q in (0.5, 0.9, 0.99):
            quantiles[f"p{round(q * 100)}"] = float(np.interp(q, cdf, edges))
    dp_max = int(np.ceil(quantiles.get("p99", cap)))
    return TextProfile(
        source=_source(noisy, public=spec.max_length is not None),
        missing_rate=_missing_rate(released),
        max_length=spec.max_length if spec.max_length is not None else max(16, min(cap, dp_max)),
        length_edges=tuple(float(e) for e in edges),
        length_counts=tuple(float(c) for c in length_counts),
        length_quantiles=quantiles,
    )


def _image(name: str, column: ColumnCounts, spec: ColumnSpec, noisy: _Noisy, cfg: ProfileConfig) -> ImageProfile:
    missing = column.missing()
    released = noisy(np.array([len(column) - missing, missing]), column=name, purpose="histogram")
    if spec.image_size is not None:
        size, source = spec.image_size, Source.PUBLIC
    else:
        size, source = cfg.image_size, Source.CONFIG
    mode = spec.image_mode.value if spec.image_mode is not None else cfg.image_mode
    return ImageProfile(
        source=source,
        missing_rate=_missing_rate(released),
        size=(int(size[0]), int(size[1])),
        mode="RGB" if mode == "RGB" else "L",
    )


def profile_corpus(
    corpus: Corpus,
    *,
    epsilon: float,
    delta: float | None,
    streams: Streams,
    config: ProfileConfig | None = None,
    ledger: PrivacyLedger | None = None,
    engine: Engine | None = None,
) -> Profile:
    """Profile a whole corpus with the whole ``epsilon`` (the stand-alone ``privsynth profile`` command).

    Contributions are bounded first (randomly, from ``streams``), the DP count of units is spent (it sets the
    default delta when ``delta`` is None), then the queries' noise is calibrated so the ledger lands within
    [0.97, 1.0] x ``epsilon``. A given ``ledger`` must target the same (epsilon, delta or its default cap).
    """
    from privsynth.privacy.contribution import bound_contributions
    from privsynth.privacy.planner import MAX_DEFAULT_DELTA, StageShape, check_delta, plan_budget

    cfg = config if config is not None else ProfileConfig()
    bounded = corpus.with_records(
        bound_contributions(corpus.records, corpus.schema, rng=streams.numpy("bounding", "*", "choice"))
    )
    units = bounded.records[corpus.schema.entity].nunique() if corpus.schema.entity is not None else len(bounded)
    if delta is not None:
        check_delta(delta, max(units, 1), exact=True)  # before anything is spent; the exact count stays unsaid
    book = (
        ledger
        if ledger is not None
        else PrivacyLedger(
            epsilon=epsilon,
            delta=delta if delta is not None else MAX_DEFAULT_DELTA,
            unit_of_privacy=corpus.schema.unit_of_privacy,
            rng=streams.mode,
        )
    )
    noise = CountNoise(streams)
    count = dp_unit_count(units, ledger=book, noise=noise, config=cfg, default_delta=delta is None)
    plan = plan_queries(corpus.schema)
    if plan.queries == 0:
        return dp_profile(
            bounded, ledger=book, noise_multiplier=1.0, noise=noise, units=count, config=cfg, engine=engine
        )
    budget = plan_budget(
        epsilon=epsilon,
        delta=book.target_delta,
        shapes=[StageShape(stage=Stage.PROFILE, sample_rate=1.0, steps=plan.queries)],
        shares={Stage.PROFILE: 1.0},
        accountant=book.accountant,
        extra_delta=plan.extra_delta(book.target_delta, cfg),
        spent=book.mechanisms(),
    )
    sigma = budget.mechanism(Stage.PROFILE).noise_multiplier
    return dp_profile(bounded, ledger=book, noise_multiplier=sigma, noise=noise, units=count, config=cfg, engine=engine)
