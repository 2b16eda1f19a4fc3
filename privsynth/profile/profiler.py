"""DP profiling: the metadata generators need, learned under the ledger or taken from declared-public metadata.

For every modelled column, one Gaussian histogram query (with a 'missing' bin) over a grid fixed before the data
is read; numerical and datetime columns without declared bounds first get a coarse range query. Categories
without a declared domain come from a thresholded ("sparse") histogram: a category is released only if its noisy
count passes a threshold set from the noise, so one that a single person holds survives with probability at most
its share of delta. Everything after the noisy counts is post-processing.

All queries share one noise multiplier; the ledger records them as ``k`` Gaussian queries before any noise is
drawn. The corpus must already be contribution-bounded (:func:`privsynth.privacy.contribution.bound_contributions`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from privsynth.data.corpus import Corpus
from privsynth.data.schema import ColumnKind, ColumnSpec, Schema
from privsynth.data.validate import Limits
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.contribution import sensitivity
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.noise import NoiseSource, gaussian, noise_floor_threshold, sparse_threshold
from privsynth.profile.grids import bin_index, fine_edges, length_edges, magnitude_edges, month_edges, to_days
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

log = logging.getLogger(__name__)


class ProfileConfig(BaseModel):
    """Knobs of the profiler (all public: they are chosen without looking at the data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quantile_bins: int = Field(default=20, ge=2, le=512, description="Quantile bins per numerical column.")
    fine_bins: int = Field(default=256, ge=8, le=4096, description="Fine histogram bins inside the bounds.")
    max_categories: int = Field(default=1000, ge=1, description="Most categories released per column.")
    threshold_delta_share: float = Field(
        default=0.1, gt=0, lt=1, description="Share of delta reserved for sparse-histogram thresholds."
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


@dataclass
class _Noisy:
    """Adds calibrated noise (or none, for exact internal profiles)."""

    std: float
    source: NoiseSource | None

    @property
    def exact(self) -> bool:
        return self.source is None

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        if self.source is None:
            return np.asarray(counts, dtype=np.float64)
        return gaussian(counts, noise_std=self.std, noise=self.source)


def dp_profile(
    corpus: Corpus,
    *,
    ledger: PrivacyLedger,
    noise_multiplier: float,
    noise: NoiseSource,
    config: ProfileConfig | None = None,
    resume: bool = False,
) -> Profile:
    """Profile ``corpus`` under DP. The spend is recorded in ``ledger`` before any noise is drawn.

    ``resume=True`` re-runs a profile whose spend the ledger already holds (an interrupted run whose profile
    never reached disk): nothing is spent again, and only one profile is ever kept.
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
            note=f"{plan.queries} Gaussian histogram queries; {len(plan.sparse_columns)} thresholded",
        )
    m = sensitivity(corpus.schema)
    noisy = _Noisy(std=noise_multiplier * m, source=noise)
    per_column_delta = extra / len(plan.sparse_columns) if plan.sparse_columns else 0.0
    columns = _profile_columns(corpus, noisy, cfg, sparse_delta=per_column_delta)
    return Profile(
        internal=False,
        records=len(corpus),
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
    columns = _profile_columns(corpus, _Noisy(std=0.0, source=None), cfg, sparse_delta=0.0)
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
    corpus: Corpus, noisy: _Noisy, cfg: ProfileConfig, *, sparse_delta: float
) -> dict[str, ColumnProfile]:
    n = len(corpus)
    out: dict[str, ColumnProfile] = {}
    m = sensitivity(corpus.schema)
    for name, spec in corpus.schema.columns.items():
        values = corpus.records[name]
        kind = spec.kind
        if kind is ColumnKind.CATEGORICAL:
            out[name] = _categorical(name, values, spec, noisy, cfg, n=n, m=m, delta=sparse_delta)
        elif kind is ColumnKind.NUMERICAL:
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            out[name] = _numerical(name, numbers, spec, noisy, cfg, n=n, datetime=False)
        elif kind is ColumnKind.DATETIME:
            out[name] = _numerical(name, to_days(values.to_numpy()), spec, noisy, cfg, n=n, datetime=True)
        elif kind is ColumnKind.BOOLEAN:
            out[name] = _boolean(values, noisy, n=n)
        elif kind is ColumnKind.TEXT:
            out[name] = _text(values, spec, noisy, n=n)
        elif kind is ColumnKind.IMAGE:
            out[name] = _image(values, spec, noisy, cfg, n=n)
    return out


def _source(noisy: _Noisy, public: bool) -> Source:
    if public:
        return Source.PUBLIC
    return Source.EXACT if noisy.exact else Source.DP


def _missing_rate(noisy_missing: float, n: int) -> float:
    return float(np.clip(noisy_missing / max(n, 1), 0.0, 1.0))


def _categorical(
    name: str,
    values: pd.Series,
    spec: ColumnSpec,
    noisy: _Noisy,
    cfg: ProfileConfig,
    *,
    n: int,
    m: int,
    delta: float,
) -> CategoricalProfile:
    missing = int(values.isna().sum())
    counts = values.dropna().value_counts()
    if spec.domain is not None:
        keys = list(spec.domain)
        raw = np.array([counts.get(k, 0) for k in keys] + [missing], dtype=np.float64)
        released = noisy(raw)
        return CategoricalProfile(
            source=Source.PUBLIC,
            missing_rate=_missing_rate(released[-1], n),
            categories=tuple(keys),
            counts=tuple(float(max(c, 0.0)) for c in released[:-1]),
            has_other=False,
        )
    keys = [str(k) for k in counts.index]
    released = noisy(np.array([*counts.to_numpy(dtype=np.float64), missing], dtype=np.float64))
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
        missing_rate=_missing_rate(released[-1], n),
        categories=tuple(k for k, _ in kept),
        counts=tuple(float(c) for _, c in kept),
        has_other=True,
    )


def _dp_range(name: str, present: np.ndarray, noisy: _Noisy, *, datetime: bool) -> tuple[float, float]:
    """Bounds from a coarse public grid: the first and last bins whose noisy count clears the noise floor."""
    if noisy.exact:
        if present.size == 0:
            return (0.0, 1.0)
        return (float(present.min()), float(present.max()))
    edges = month_edges() if datetime else magnitude_edges()
    counts = np.bincount(bin_index(present, edges), minlength=len(edges) - 1).astype(np.float64)
    released = noisy(counts)
    floor = noise_floor_threshold(noise_std=noisy.std, bins=len(counts))
    passing = np.flatnonzero(released >= floor)
    if passing.size == 0:
        log.warning(
            "column '%s': its range could not be separated from the noise; using its densest bin only "
            "(declare bounds in schema.yaml, or raise epsilon)",
            name,
        )
        passing = np.array([int(np.argmax(released))])
    # One more grid bin on each side (post-processing): the tails just below the floor are usually there.
    first, last = max(int(passing[0]) - 1, 0), min(int(passing[-1]) + 1, len(counts) - 1)
    return (float(edges[first]), float(edges[last + 1]))


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
    name: str, values: np.ndarray, spec: ColumnSpec, noisy: _Noisy, cfg: ProfileConfig, *, n: int, datetime: bool
) -> NumericalProfile:
    present = values[~np.isnan(values)]
    missing = float(values.size - present.size)
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
        low, high = _dp_range(name, present, noisy, datetime=datetime)
        public = False
    integer = spec.integer and not datetime
    if integer:
        low, high = float(np.floor(low)), float(np.ceil(high))
    # As many bins as the noise allows (one per whole number when there are enough records for it)
    fine = fine_edges(low, high, fine_bin_count(n, noisy.std, cfg.fine_bins), integer=integer)
    counts = np.bincount(bin_index(np.clip(present, low, high), fine), minlength=len(fine) - 1)
    released = noisy(np.append(counts.astype(np.float64), missing))
    fine_counts = np.clip(released[:-1], 0.0, None)
    if not noisy.exact:
        # Bins below the noise floor count as empty (about half a bin of pure noise survives on the whole grid),
        # so noise does not spread mass over the whole range.
        floor = noise_floor_threshold(noise_std=noisy.std, bins=len(fine_counts), false_bins=0.5)
        if (fine_counts >= floor).any():
            fine_counts = np.where(fine_counts >= floor, fine_counts, 0.0)
    edges = quantile_edges(fine, fine_counts, min(cfg.quantile_bins, len(fine) - 1), integer=integer)
    return NumericalProfile(
        kind="datetime" if datetime else "numerical",
        source=_source(noisy, public),
        missing_rate=_missing_rate(released[-1], n),
        integer=integer,
        bounds=(low, high),
        bin_edges=tuple(float(e) for e in edges),
        fine_edges=tuple(float(e) for e in fine),
        fine_counts=tuple(float(c) for c in fine_counts),
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


def _boolean(values: pd.Series, noisy: _Noisy, *, n: int) -> BooleanProfile:
    present = values.dropna().astype(bool)
    raw = np.array([int((~present).sum()), int(present.sum()), int(values.isna().sum())], dtype=np.float64)
    released = np.clip(noisy(raw), 0.0, None)
    denominator = released[0] + released[1]
    return BooleanProfile(
        source=_source(noisy, public=False),
        missing_rate=_missing_rate(released[2], n),
        p_true=float(released[1] / denominator) if denominator > 0 else 0.5,
    )


def _text(values: pd.Series, spec: ColumnSpec, noisy: _Noisy, *, n: int) -> TextProfile:
    cap = spec.max_length if spec.max_length is not None else Limits().max_text_chars
    lengths = values.dropna().map(len).to_numpy(dtype=np.float64)
    edges = length_edges(cap)
    counts = np.bincount(bin_index(np.minimum(lengths, cap), edges), minlength=len(edges) - 1)
    released = noisy(np.append(counts.astype(np.float64), float(values.isna().sum())))
    length_counts = np.clip(released[:-1], 0.0, None)
    total = float(length_counts.sum())
    quantiles: dict[str, float] = {}
    if total > 0:
        cdf = np.concatenate([[0.0], np.cumsum(length_counts) / total])
        for q in (0.5, 0.9, 0.99):
            quantiles[f"p{round(q * 100)}"] = float(np.interp(q, cdf, edges))
    dp_max = int(np.ceil(quantiles.get("p99", cap)))
    return TextProfile(
        source=_source(noisy, public=spec.max_length is not None),
        missing_rate=_missing_rate(released[-1], n),
        max_length=spec.max_length if spec.max_length is not None else max(16, min(cap, dp_max)),
        length_edges=tuple(float(e) for e in edges),
        length_counts=tuple(float(c) for c in length_counts),
        length_quantiles=quantiles,
    )


def _image(values: pd.Series, spec: ColumnSpec, noisy: _Noisy, cfg: ProfileConfig, *, n: int) -> ImageProfile:
    missing = float(values.isna().sum())
    released = noisy(np.array([n - missing, missing]))
    if spec.image_size is not None:
        size, source = spec.image_size, Source.PUBLIC
    else:
        size, source = cfg.image_size, Source.CONFIG
    mode = spec.image_mode.value if spec.image_mode is not None else cfg.image_mode
    return ImageProfile(
        source=source,
        missing_rate=_missing_rate(released[-1], n),
        size=(int(size[0]), int(size[1])),
        mode="RGB" if mode == "RGB" else "L",
    )


def profile_corpus(
    corpus: Corpus,
    *,
    epsilon: float,
    delta: float,
    seed: int | None = None,
    secure_noise: bool = False,
    config: ProfileConfig | None = None,
    ledger: PrivacyLedger | None = None,
) -> Profile:
    """Profile a whole corpus with the whole ``epsilon`` (the stand-alone ``privsynth profile`` command).

    Contributions are bounded first; the noise multiplier is calibrated so the profile alone lands within
    [0.97, 1.0] x ``epsilon`` at ``delta``.
    """
    from privsynth.privacy.contribution import bound_contributions
    from privsynth.privacy.planner import StageShape, check_delta, plan_budget

    cfg = config if config is not None else ProfileConfig()
    bounded = corpus.with_records(bound_contributions(corpus.records, corpus.schema, seed=seed or 0))
    check_delta(delta, max(len(bounded), 1))
    plan = plan_queries(corpus.schema)
    book = (
        ledger
        if ledger is not None
        else PrivacyLedger(
            epsilon=epsilon, delta=delta, unit_of_privacy=corpus.schema.unit_of_privacy, secure_rng=secure_noise
        )
    )
    if plan.queries == 0:
        return dp_profile(bounded, ledger=book, noise_multiplier=1.0, noise=NoiseSource(seed), config=cfg)
    budget = plan_budget(
        epsilon=epsilon,
        delta=delta,
        shapes=[StageShape(stage=Stage.PROFILE, sample_rate=1.0, steps=plan.queries)],
        shares={Stage.PROFILE: 1.0},
        accountant=book.accountant,
        extra_delta=plan.extra_delta(delta, cfg),
    )
    sigma = budget.mechanism(Stage.PROFILE).noise_multiplier
    return dp_profile(bounded, ledger=book, noise_multiplier=sigma, noise=NoiseSource(seed, secure_noise), config=cfg)
