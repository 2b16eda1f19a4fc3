"""Column codecs: values <-> tokens, built only from the DP profile (or declared-public metadata).

Each codec turns one column into one or more token sub-columns for the autoregressive network and back:

- categorical: released categories, an ``__other__`` token when the domain was learned, a missing token;
- numerical: DP quantile bins plus a missing token; decoding samples *within* the bin from the profile's fine
  DP histogram, so values are drawn from a distribution, not copied from records;
- datetime: the same quantile bins over days, plus a weekday sub-column (dates decomposed), decoded to days;
- boolean: false / true / missing.

Nothing here reads real values except :meth:`ColumnCodec.encode`, which turns training records into tokens.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from typing_extensions import override

from privsynth.data.schema import ColumnKind, ColumnSpec
from privsynth.errors import ConfigError
from privsynth.profile.grids import to_days
from privsynth.profile.model import (
    OTHER,
    BooleanProfile,
    CategoricalProfile,
    ColumnProfile,
    NumericalProfile,
)

_DAY_NS = 86_400 * 10**9
#: Noise deviations a token's DP count must reach to be pulled to the profile by calibration (the default of
#: ``tabular.calibration_snr``): measured on Adult n=2,000, epsilon 1 (2-way TVD 0.138 at 20, 0.130 at 3, 0.129 at
#: 0, 3 to 6 fits each), once priors were projected onto the DP record total.
RELIABLE_SNR = 3.0


@dataclass(frozen=True)
class Prior:
    """A sub-column's DP marginal: token probabilities, and how far each token's count stands above the noise.

    ``snr`` is each token's (projected) noisy count in noise deviations; :meth:`reliable` marks the tokens at or
    above a threshold. Calibration pulls only those towards the profile and leaves the others to DP-SGD.
    """

    p: np.ndarray
    snr: np.ndarray

    def reliable(self, threshold: float = RELIABLE_SNR) -> np.ndarray:
        """Tokens whose count is at least ``threshold`` noise deviations (all of them without noise)."""
        return np.asarray(self.snr >= threshold)


class ColumnCodec(ABC):
    """Maps one column to token sub-columns and back.

    ``count_noise`` is the standard deviation of one noisy count in the profile (sigma x sensitivity), used to
    judge which parts of the DP marginal are signal.
    """

    kind: ClassVar[str]

    def __init__(self, name: str, *, count_noise: float = 0.0) -> None:
        self.name = name
        self.count_noise = count_noise

    def _prior(self, counts: np.ndarray, noise: np.ndarray, *, total: float = 0.0) -> Prior:
        """A prior from (noisy) counts and the noise deviation of each, projected onto the DP record ``total``.

        Noisy counts clipped at zero are biased upwards: every empty or rare token keeps the positive half of its
        noise, and over many tokens that is a large share of the mass (41 countries at noise 20 on 1,600 Adult
        records put 600 records of noise outside the United States). The least-squares estimate that is
        non-negative and sums to the record total removes that bias (:func:`project_to_total`).
        """
        clipped = project_to_total(np.clip(counts, 0.0, None), total)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(noise > 0, clipped / np.where(noise > 0, noise, 1.0), np.inf)
        return Prior(p=_normalise(clipped), snr=snr)

    @abstractmethod
    def vocab_sizes(self) -> list[int]:
        """Vocabulary size of each token sub-column."""

    @abstractmethod
    def encode(self, values: pd.Series) -> np.ndarray:
        """Tokens ``[n, sub_columns]`` of real values (the only place real values are read)."""

    @abstractmethod
    def decode(self, tokens: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Values in the column's canonical dtype from tokens ``[n, sub_columns]``."""

    @abstractmethod
    def condition(self, value: Any) -> list[int]:
        """Tokens that force a sampled value equal to ``value`` (for conditional sampling)."""

    @abstractmethod
    def prior(self) -> list[Prior | None]:
        """Token probabilities per sub-column from the DP profile; ``None`` where the profile says nothing.

        Used to start the network's output layer at the DP marginals and to calibrate sampled marginals.
        """

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON form (no real values: only profile-derived metadata)."""

    def positions(self) -> list[np.ndarray | None]:
        """Each token's place on its sub-column's scale in [-1, 1] where the tokens are ordered, else ``None``.

        Public (the token layout only). The network reads it as a feature and shifts its logits along it, so a
        relation like "blood pressure rises with age" is one direction to learn rather than one weight per bin.
        """
        return [None] * len(self.vocab_sizes())


class CategoricalCodec(ColumnCodec):
    """Categories from the profile, optional ``__other__`` and missing tokens."""

    kind = "categorical"

    def __init__(
        self,
        name: str,
        *,
        categories: list[str],
        has_other: bool,
        nullable: bool,
        counts: list[float] | None = None,
        missing_rate: float = 0.0,
        records: int = 0,
        count_noise: float = 0.0,
    ) -> None:
        super().__init__(name, count_noise=count_noise)
        self.categories = list(categories)
        self.has_other = has_other
        self.nullable = nullable
        self.counts = list(counts) if counts is not None else [1.0] * len(self.categories)
        self.missing_rate = missing_rate
        self.records = records
        self.labels = self.categories + ([OTHER] if has_other else [])
        self.missing = len(self.labels) if nullable else None
        self._index = {c: i for i, c in enumerate(self.labels)}

    @override
    def vocab_sizes(self) -> list[int]:
        return [len(self.labels) + (1 if self.nullable else 0)]

    @override
    def encode(self, values: pd.Series) -> np.ndarray:
        fallback = self._index.get(OTHER, 0)
        out = np.fromiter(
            (self.missing if v is None and self.missing is not None else self._index.get(v, fallback) for v in values),
            dtype=np.int64,
            count=len(values),
        )
        return out[:, None]

    @override
    def decode(self, tokens: np.ndarray, rng: np.random.Generator) -> pd.Series:
        del rng
        lookup = np.array([*self.labels, None], dtype=object)
        column = tokens[:, 0]
        column = np.where(column >= len(self.labels), len(self.labels), column)
        return pd.Series(lookup[column], dtype=object)

    @override
    def condition(self, value: Any) -> list[int]:
        if value is None and self.missing is not None:
            return [self.missing]
        key = str(value)
        if key not in self._index:
            known = ", ".join(self.labels[:20])
            raise ConfigError(f"--where {self.name}={key}: not a category the model knows; use one of {known}")
        return [self._index[key]]

    @override
    def prior(self) -> list[Prior | None]:
        counts = np.clip(np.asarray(self.counts, dtype=np.float64), 0.0, None)
        noise = np.full(len(counts), self.count_noise)
        present = max(self.records * (1 - self.missing_rate), float(counts.sum()), 1.0)
        if self.has_other:
            # 'other' is what the public record count leaves over: its noise is that of the sum
            counts = np.append(counts, max(present - counts.sum(), 0.0))
            noise = np.append(noise, self.count_noise * np.sqrt(len(self.categories) + 1))
        if self.nullable:
            counts = np.append(counts, self.missing_rate * self.records)
            noise = np.append(noise, self.count_noise)
        return [self._prior(counts, noise, total=self.records)]

    @override
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "categories": self.categories,
            "has_other": self.has_other,
            "nullable": self.nullable,
            "counts": self.counts,
            "missing_rate": self.missing_rate,
            "records": self.records,
            "count_noise": self.count_noise,
        }


class BooleanCodec(ColumnCodec):
    """False, true and (when nullable) missing."""

    kind = "boolean"

    def __init__(
        self,
        name: str,
        *,
        nullable: bool,
        p_true: float = 0.5,
        missing_rate: float = 0.0,
        records: int = 0,
        count_noise: float = 0.0,
    ) -> None:
        super().__init__(name, count_noise=count_noise)
        self.nullable = nullable
        self.p_true = p_true
        self.missing_rate = missing_rate
        self.records = records

    @override
    def prior(self) -> list[Prior | None]:
        present = (1 - self.missing_rate if self.nullable else 1.0) * self.records
        counts = [present * (1 - self.p_true), present * self.p_true]
        if self.nullable:
            counts.append(self.missing_rate * self.records)
        return [self._prior(np.asarray(counts), np.full(len(counts), self.count_noise))]

    @override
    def vocab_sizes(self) -> list[int]:
        return [3 if self.nullable else 2]

    @override
    def encode(self, values: pd.Series) -> np.ndarray:
        filled = values.astype("boolean")
        out = np.where(filled.isna().to_numpy(), 2 if self.nullable else 0, filled.fillna(False).to_numpy(dtype=int))
        return out.astype(np.int64)[:, None]

    @override
    def decode(self, tokens: np.ndarray, rng: np.random.Generator) -> pd.Series:
        del rng
        column = tokens[:, 0]
        values = pd.array(column == 1, dtype="boolean")
        values[column == 2] = pd.NA
        return pd.Series(values)

    @override
    def condition(self, value: Any) -> list[int]:
        if value is None and self.nullable:
            return [2]
        text = str(value).strip().lower()
        if text in {"true", "1", "yes"}:
            return [1]
        if text in {"false", "0", "no"}:
            return [0]
        raise ConfigError(f"--where {self.name}={value}: expected true or false")

    @override
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "nullable": self.nullable,
            "p_true": self.p_true,
            "missing_rate": self.missing_rate,
            "records": self.records,
            "count_noise": self.count_noise,
        }


class NumericalCodec(ColumnCodec):
    """DP quantile bins plus a missing token, optionally refined by a learned sub-bin token.

    With ``sub_bins`` > 0 each bin is cut into that many equal parts and the network learns which part (under
    DP-SGD, like every other token); decoding is uniform within the part. Without them, decoding samples within
    the bin from the profile's fine DP histogram.
    """

    kind = "numerical"

    def __init__(
        self,
        name: str,
        *,
        bin_edges: list[float],
        fine_edges: list[float],
        fine_counts: list[float],
        integer: bool,
        bounds: tuple[float, float],
        nullable: bool,
        missing_rate: float = 0.0,
        records: int = 0,
        count_noise: float = 0.0,
        sub_bins: int = 0,
        decimals: int | None = None,
    ) -> None:
        super().__init__(name, count_noise=count_noise)
        self.decimals = decimals
        self.missing_rate = missing_rate
        self.records = records
        self.sub_bins = sub_bins
        self.bin_edges = np.asarray(bin_edges, dtype=np.float64)
        self.fine_edges = np.asarray(fine_edges, dtype=np.float64)
        self.fine_counts = np.asarray(fine_counts, dtype=np.float64)
        self.integer = integer
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.nullable = nullable
        self.bins = len(self.bin_edges) - 1
        self._pieces = [self._bin_pieces(b) for b in range(self.bins)]

    def _bin_pieces(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sub-intervals of quantile bin ``b`` cut by fine edges, with their (unnormalised) DP mass."""
        low, high = self.bin_edges[b], self.bin_edges[b + 1]
        cuts = np.unique(np.clip(np.concatenate([[low, high], self.fine_edges]), low, high))
        lows, highs = cuts[:-1], cuts[1:]
        mids = (lows + highs) / 2
        fine = np.clip(np.searchsorted(self.fine_edges, mids, side="right") - 1, 0, len(self.fine_counts) - 1)
        widths = self.fine_edges[fine + 1] - self.fine_edges[fine]
        mass = self.fine_counts[fine] * (highs - lows) / np.where(widths > 0, widths, 1.0)
        return lows, highs, mass

    @override
    def vocab_sizes(self) -> list[int]:
        return [self.bins + (1 if self.nullable else 0), *([self.sub_bins] if self.sub_bins else [])]

    @override
    def positions(self) -> list[np.ndarray | None]:
        """Quantile bins in order from -1 to 1; the missing token (if any) at 0; sub-bins unordered here."""
        scale = np.linspace(-1.0, 1.0, self.bins) if self.bins > 1 else np.zeros(1)
        bins = np.append(scale, 0.0) if self.nullable else scale
        return [bins, *([None] if self.sub_bins else [])]

    def _sub_tokens(self, numbers: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Which equal part of its bin each value falls in (0 for missing values)."""
        b = np.clip(tokens, 0, self.bins - 1)
        low, high = self.bin_edges[b], self.bin_edges[b + 1]
        frac = np.where(high > low, (np.nan_to_num(numbers) - low) / np.where(high > low, high - low, 1.0), 0.0)
        sub = np.clip(np.floor(frac * self.sub_bins), 0, self.sub_bins - 1)
        return np.where(np.isnan(numbers), 0, sub).astype(np.int64)

    def _bin_mass(self) -> np.ndarray:
        """DP mass of each quantile bin, from the fine histogram (overlap-weighted)."""
        mass = np.array([pieces[2].sum() for pieces in self._pieces])
        return mass if mass.sum() > 0 else np.ones(self.bins)

    @override
    def prior(self) -> list[Prior | None]:
        mass = self._bin_mass()
        pieces = np.array([max(len(p[0]), 1) for p in self._pieces], dtype=np.float64)
        noise = self.count_noise * np.sqrt(pieces)  # a bin's mass sums that many noisy fine counts
        if self.nullable:
            mass = np.append(mass, self.missing_rate * self.records)
            noise = np.append(noise, self.count_noise)
        return [self._prior(mass, noise, total=self.records), *([None] if self.sub_bins else [])]

    def _values(self, values: pd.Series) -> np.ndarray:
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    def _tokens(self, numbers: np.ndarray) -> np.ndarray:
        tokens = np.clip(np.searchsorted(self.bin_edges, numbers, side="right") - 1, 0, self.bins - 1)
        if self.nullable:
            tokens = np.where(np.isnan(numbers), self.bins, tokens)
        return tokens.astype(np.int64)

    @override
    def encode(self, values: pd.Series) -> np.ndarray:
        numbers = self._values(values)
        tokens = self._tokens(numbers)
        if not self.sub_bins:
            return tokens[:, None]
        return np.stack([tokens, self._sub_tokens(numbers, tokens)], axis=1)

    def _sample_sub(self, tokens: np.ndarray, sub: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b = np.clip(tokens, 0, self.bins - 1)
        low, high = self.bin_edges[b], self.bin_edges[b + 1]
        out = low + (sub + rng.random(len(tokens))) / self.sub_bins * (high - low)
        out = np.where(tokens >= self.bins, np.nan, out)
        return self._recorded(out)

    def _recorded(self, out: np.ndarray) -> np.ndarray:
        """Values inside the bounds, written as the column records them: whole numbers, or the declared decimals."""
        low, high = self.bounds
        out = np.clip(out, low, high)
        places = 0 if self.integer else self.decimals
        if places is None:
            return out
        step = 10.0**places
        first, last = np.ceil(low * step) / step, np.floor(high * step) / step
        if first > last:  # bounds narrower than one step: no recorded value fits inside, keep the values as drawn
            return out
        return np.clip(np.round(out * step) / step, first, last)

    def _sample(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.full(tokens.shape[0], np.nan)
        for b in range(self.bins):
            rows = np.flatnonzero(tokens == b)
            if rows.size == 0:
                continue
            lows, highs, mass = self._pieces[b]
            weights = mass if mass.sum() > 0 else (highs - lows if (highs - lows).sum() > 0 else np.ones_like(lows))
            pick = rng.choice(len(weights), size=rows.size, p=weights / weights.sum())
            out[rows] = lows[pick] + rng.random(rows.size) * (highs[pick] - lows[pick])
        return self._recorded(out)

    @override
    def decode(self, tokens: np.ndarray, rng: np.random.Generator) -> pd.Series:
        if self.sub_bins and tokens.shape[1] > 1:
            values = self._sample_sub(tokens[:, 0], tokens[:, 1], rng)
        else:
            values = self._sample(tokens[:, 0], rng)
        if self.integer:
            return pd.Series(pd.array([None if np.isnan(v) else v for v in values], dtype="Int64"))
        return pd.Series(values, dtype="float64")

    def check_inside(self, number: float, shown: str) -> None:
        """Refuse a condition outside the column's range (declared in the schema, or learned under DP)."""
        low, high = self.bounds
        if not (math.isfinite(number) and low <= number <= high):
            raise ConfigError(
                f"--where {self.name}={shown} lies outside the column's range [{self.show(low)}, "
                f"{self.show(high)}] (declared in schema.yaml, or learned under DP); choose a value inside it"
            )

    def show(self, number: float) -> str:
        """A value of this column in words (a number; a date for dates)."""
        return f"{number:g}"

    def constant(self, value: Any, n: int) -> pd.Series:
        """``n`` copies of a conditioned value in the column's dtype."""
        number = float(value)
        if self.integer:
            return pd.Series(pd.array([round(number)] * n, dtype="Int64"))
        return pd.Series(np.full(n, number), dtype="float64")

    @override
    def condition(self, value: Any) -> list[int]:
        if value is None and self.nullable:
            return [self.bins, *([0] if self.sub_bins else [])]
        if value is None:
            raise ConfigError(f"--where {self.name}=: this column is never missing; give a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--where {self.name}={value}: expected a number") from None
        self.check_inside(number, str(value))
        numbers = np.array([number])
        token = self._tokens(numbers)
        return [int(token[0]), *([int(self._sub_tokens(numbers, token)[0])] if self.sub_bins else [])]

    @override
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "bin_edges": self.bin_edges.tolist(),
            "fine_edges": self.fine_edges.tolist(),
            "fine_counts": self.fine_counts.tolist(),
            "integer": self.integer,
            "bounds": list(self.bounds),
            "nullable": self.nullable,
            "missing_rate": self.missing_rate,
            "records": self.records,
            "count_noise": self.count_noise,
            "sub_bins": self.sub_bins,
            "decimals": self.decimals,
        }


class DatetimeCodec(NumericalCodec):
    """Dates decomposed: quantile bin over days since 1970, and weekday (8th token: missing)."""

    kind = "datetime"

    def __init__(self, name: str, *, date_only: bool, **numerical: Any) -> None:
        super().__init__(name, **numerical)
        self.date_only = date_only

    @override
    def vocab_sizes(self) -> list[int]:
        return [*super().vocab_sizes(), 8]

    @override
    def prior(self) -> list[Prior | None]:
        return [*super().prior(), None]  # weekdays are learned by DP-SGD only

    @override
    def positions(self) -> list[np.ndarray | None]:
        return [*super().positions(), None]  # weekdays have no order that matters here

    def _values(self, values: pd.Series) -> np.ndarray:
        return to_days(values.to_numpy())

    @override
    def encode(self, values: pd.Series) -> np.ndarray:
        days = self._values(values)
        weekday = np.where(np.isnan(days), 7, (np.floor(np.nan_to_num(days)) + 3) % 7)  # 1970-01-01 was a Thursday
        return np.stack([self._tokens(days), weekday.astype(np.int64)], axis=1)

    @override
    def decode(self, tokens: np.ndarray, rng: np.random.Generator) -> pd.Series:
        days = self._sample(tokens[:, 0], rng)
        want = tokens[:, 1]
        have = (np.floor(np.nan_to_num(days)) + 3) % 7
        shift = np.where(want < 7, (want - have + 3) % 7 - 3, 0)  # nearest day with the sampled weekday
        low, high = self.bounds
        moved = days + shift
        moved = np.where(moved >= high, moved - 7, moved)  # stay inside the bounds, a week earlier or later
        moved = np.where(moved < low, moved + 7, moved)
        inside = (moved >= low) & (moved < high)
        days = np.where(np.isnan(days) | ~inside, days, moved)
        if self.date_only:
            days = np.floor(days)
        ns = np.where(np.isnan(days), np.iinfo(np.int64).min, np.round(days * _DAY_NS)).astype(np.int64)
        return pd.Series(ns.view("datetime64[ns]"), dtype="datetime64[ns]")

    def constant(self, value: Any, n: int) -> pd.Series:
        """``n`` copies of a conditioned date."""
        return pd.Series([pd.Timestamp(value)] * n, dtype="datetime64[ns]")

    @override
    def condition(self, value: Any) -> list[int]:
        if value is None and self.nullable:
            return [self.bins, 7]
        if value is None:
            raise ConfigError(f"--where {self.name}=: this column is never missing; give a date")
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--where {self.name}={value}: expected an ISO 8601 date") from None
        if stamp is pd.NaT:
            raise ConfigError(f"--where {self.name}={value}: expected an ISO 8601 date")
        days = to_days(np.array([stamp.to_datetime64()]))
        self.check_inside(float(days[0]), str(value))
        return [int(self._tokens(days)[0]), int((np.floor(days[0]) + 3) % 7)]

    @override
    def show(self, number: float) -> str:
        return str(pd.Timestamp(round(number * _DAY_NS)).date())

    @override
    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"kind": self.kind, "date_only": self.date_only}


def project_to_total(counts: np.ndarray, total: float) -> np.ndarray:
    """The closest non-negative counts (least squares) that sum to ``total``, when ``counts`` sum to more.

    Post-processing of DP counts and the DP record total: no privacy cost. Every count loses the same amount
    ``tau`` and none goes below zero, so tokens whose count is mostly noise drop to zero and the mass they held
    goes back to the tokens that carry it. Counts that sum to ``total`` or less (or no total, 0) are unchanged.

    >>> project_to_total(np.array([900.0, 12.0, 8.0, 0.0]), 880.0).tolist()
    [880.0, 0.0, 0.0, 0.0]
    >>> [round(float(x), 2) for x in project_to_total(np.array([500.0, 300.0, 20.0]), 810.0)]
    [496.67, 296.67, 16.67]
    >>> project_to_total(np.array([5.0, 3.0]), 10.0).tolist(), project_to_total(np.array([5.0, 3.0]), 0.0).tolist()
    ([5.0, 3.0], [5.0, 3.0])
    """
    counts = np.asarray(counts, dtype=np.float64)
    if total <= 0 or counts.sum() <= total:
        return counts
    ordered = np.sort(counts)[::-1]
    excess = (np.cumsum(ordered) - total) / np.arange(1, len(ordered) + 1)
    last = int(np.flatnonzero(ordered - excess > 0)[-1])
    return np.clip(counts - excess[last], 0.0, None)


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None) + 1e-6  # no token impossible a priori
    return p / p.sum()


def codec_for(
    name: str, spec: ColumnSpec, profile: ColumnProfile, *, records: int, count_noise: float, sub_bins: int = 0
) -> ColumnCodec:
    """The codec of one tabular column, from its DP (or public) profile.

    ``records`` is the (public) record count, ``count_noise`` the standard deviation of one profile count.
    """
    if spec.kind is ColumnKind.CATEGORICAL and isinstance(profile, CategoricalProfile):
        return CategoricalCodec(
            name,
            categories=list(profile.categories),
            has_other=profile.has_other,
            nullable=spec.nullable,
            counts=list(profile.counts),
            missing_rate=profile.missing_rate if spec.nullable else 0.0,
            records=records,
            count_noise=count_noise,
        )
    if spec.kind is ColumnKind.BOOLEAN and isinstance(profile, BooleanProfile):
        return BooleanCodec(
            name,
            nullable=spec.nullable,
            p_true=profile.p_true,
            missing_rate=profile.missing_rate if spec.nullable else 0.0,
            records=records,
            count_noise=count_noise,
        )
    if spec.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME) and isinstance(profile, NumericalProfile):
        numerical: dict[str, Any] = {
            "bin_edges": list(profile.bin_edges),
            "fine_edges": list(profile.fine_edges),
            "fine_counts": list(profile.fine_counts),
            "integer": profile.integer,
            "bounds": profile.bounds,
            "nullable": spec.nullable,
            "missing_rate": profile.missing_rate if spec.nullable else 0.0,
            "records": records,
            "count_noise": count_noise,
        }
        if spec.kind is ColumnKind.DATETIME:
            return DatetimeCodec(name, date_only=spec.date_only, **numerical)
        return NumericalCodec(name, sub_bins=sub_bins, decimals=spec.decimals, **numerical)
    raise ValueError(f"column '{name}' ({spec.kind}) has no tabular codec for profile kind {profile.kind}")


def codec_from_dict(data: dict[str, Any]) -> ColumnCodec:
    """Rebuild a codec from :meth:`ColumnCodec.to_dict` output."""
    body = {k: v for k, v in data.items() if k not in ("kind", "name")}
    kinds: dict[str, type[ColumnCodec]] = {
        "categorical": CategoricalCodec,
        "boolean": BooleanCodec,
        "numerical": NumericalCodec,
        "datetime": DatetimeCodec,
    }
    if data["kind"] == "numerical" or data["kind"] == "datetime":
        body["bounds"] = tuple(body["bounds"])
    return kinds[data["kind"]](data["name"], **body)
