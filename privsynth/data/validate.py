"""Validate raw records against a schema and convert them to privsynth's canonical column types.

Every problem is collected (not just the first) and reported together, before anything is computed or written.
Problems name the column and the record key; they never quote a cell's value, because values are sensitive.

Canonical in-memory types, whatever the file format:

========== ==========================================================
kind       pandas dtype
========== ==========================================================
numerical  ``float64``, or ``Int64`` when the column is ``integer``
categorical, text, identifier, key  ``object`` holding ``str`` (``None`` when missing)
datetime   ``datetime64[ns]`` (naive; time-zone-aware values converted to UTC)
boolean    ``boolean`` (nullable)
image      ``object`` holding a relative path ``str`` or encoded ``bytes``
========== ==========================================================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from privsynth.data.images import ImageCellError, ImageLimits, decode_image, read_cell_bytes
from privsynth.data.schema import ColumnKind, ColumnSpec, Schema
from privsynth.errors import Problem

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class Limits:
    """Size limits that keep a malformed corpus from exhausting memory."""

    max_cell_chars: int = 10_000
    max_text_chars: int = 1_000_000
    images: ImageLimits = field(default_factory=ImageLimits)


@dataclass
class _Collector:
    """Gathers problems for one column, labelling rows by record key."""

    column: str
    labels: list[str]
    problems: list[Problem]

    def rows(self, mask: Iterable[bool] | pd.Series, code: str, message: str) -> None:
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            self.problems.append(Problem(code, message, column=self.column, record=self.labels[i]))

    def row(self, i: int, code: str, message: str) -> None:
        self.problems.append(Problem(code, message, column=self.column, record=self.labels[i]))


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value == ""


def _missing_mask(series: pd.Series) -> np.ndarray:
    if series.dtype == object:
        return np.fromiter((_is_missing(v) for v in series), dtype=bool, count=len(series))
    return np.asarray(series.isna(), dtype=bool)


def _numerical(s: pd.Series, spec: ColumnSpec, out: _Collector, missing: np.ndarray) -> pd.Series:
    if s.dtype == bool or pd.api.types.is_bool_dtype(s.dtype):
        out.rows(~missing, "type", "expected a number but found a boolean; declare the column 'boolean'")
        return pd.Series(np.nan, index=s.index, dtype="float64")
    if s.dtype == object:
        kinds_ok = np.fromiter(
            (isinstance(v, str | int | float | np.number) and not isinstance(v, bool) for v in s),
            dtype=bool,
            count=len(s),
        )
        clean = s.where(kinds_ok & ~missing, None)
        num = pd.to_numeric(clean, errors="coerce")
        bad = ~missing & (~kinds_ok | num.isna().to_numpy())
        out.rows(bad, "type", "expected a number; fix the value or declare the column 'categorical' or 'text'")
    else:
        num = pd.to_numeric(s, errors="coerce")
    num = num.astype("float64")
    values = num.to_numpy()
    finite = np.isfinite(values)
    out.rows(np.isinf(values), "not-finite", "infinite number; replace it by a finite value or leave it empty")
    num[~finite] = np.nan
    if spec.integer:
        frac = finite & (np.floor(np.where(finite, values, 0.0)) != np.where(finite, values, 0.0))
        out.rows(frac, "type", "expected a whole number (the schema says integer: true)")
        num[frac] = np.nan
    if spec.bounds is not None:
        low, high = spec.bounds
        outside = finite & ((values < low) | (values > high))
        out.rows(outside, "domain", "number outside the declared bounds; fix the value or widen 'bounds'")
    if spec.integer:
        return num.round().astype("Int64")
    return num


def _strings(
    s: pd.Series,
    out: _Collector,
    missing: np.ndarray,
    *,
    accept: Callable[[Any], str | None],
    mismatch: str,
    limit: int,
) -> pd.Series:
    values: list[str | None] = []
    for i, v in enumerate(s):
        if missing[i]:
            values.append(None)
            continue
        text = accept(v)
        if text is None:
            out.row(i, "type", mismatch)
            values.append(None)
        elif "\x00" in text:
            out.row(i, "nul", "value holds a NUL byte (a binary or damaged export?); remove it and export again")
            values.append(None)
        elif _has_surrogates(text):
            out.row(i, "encoding", "text is not valid UTF-8; re-save the file as UTF-8")
            values.append(None)
        elif len(text) > limit:
            out.row(i, "oversized", f"value longer than {limit} characters; shorten it or raise the limit")
            values.append(None)
        else:
            values.append(text)
    return pd.Series(values, index=s.index, dtype=object)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _label_text(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return str(bool(v)).lower()
    if isinstance(v, int | np.integer):
        return str(int(v))
    return None


def _text_value(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes | bytearray):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return "\udcff"  # marks it undecodable for the caller's encoding check
    return None


def _datetime(s: pd.Series, spec: ColumnSpec, out: _Collector, missing: np.ndarray) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        parsed = s
    else:
        kinds_ok = (
            np.fromiter((isinstance(v, str | dt.date | pd.Timestamp) for v in s), dtype=bool, count=len(s))
            if s.dtype == object
            else np.zeros(len(s), dtype=bool)
        )
        clean = s.where(pd.Series(kinds_ok & ~missing, index=s.index), None) if s.dtype == object else s
        parsed = pd.to_datetime(clean, errors="coerce", format="ISO8601", utc=True)
        bad = ~missing & (~kinds_ok | parsed.isna().to_numpy())
        out.rows(bad, "type", "expected an ISO 8601 date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS) between 1678 and 2261")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed = parsed.astype("datetime64[ns]")
    if spec.date_only:
        timed = (parsed.notna() & (parsed != parsed.dt.normalize())).to_numpy(dtype=bool)
        out.rows(timed, "type", "value has a time of day but the schema says date_only: true")
    if spec.date_range is not None:
        first, last = (pd.Timestamp(d) for d in spec.date_range)
        days = parsed.dt.normalize()
        outside = (days < first) | (days > last)
        out.rows(outside.fillna(False), "domain", "date outside the declared date_range; fix it or widen the range")
    return parsed


def _boolean(s: pd.Series, out: _Collector, missing: np.ndarray) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean")
    values: list[bool | None] = []
    for i, v in enumerate(s):
        if missing[i]:
            values.append(None)
        elif isinstance(v, bool | np.bool_) or (isinstance(v, int | np.integer) and v in (0, 1)):
            values.append(bool(v))
        elif isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
            values.append(v.strip().lower() in _TRUE)
        else:
            out.row(i, "type", "expected true/false (or yes/no, 1/0)")
            values.append(None)
    return pd.Series(values, index=s.index, dtype="boolean")


def _image(s: pd.Series, spec: ColumnSpec, out: _Collector, missing: np.ndarray, root: Path, lim: Limits) -> pd.Series:
    values: list[str | bytes | None] = []
    for i, v in enumerate(s):
        if missing[i]:
            values.append(None)
            continue
        try:
            data = read_cell_bytes(root, v, lim.images)
            image = decode_image(data, lim.images)
        except ImageCellError as exc:
            out.row(i, exc.code, str(exc))
            values.append(None)
            continue
        if spec.image_size is not None and image.size != tuple(spec.image_size):
            width, height = spec.image_size
            out.row(i, "image-size", f"image is {image.size[0]}x{image.size[1]}, schema declares {width}x{height}")
        if isinstance(v, str) and v.startswith("data:"):
            values.append(data)
        else:
            values.append(bytes(v) if isinstance(v, bytearray | memoryview) else v)
    return pd.Series(values, index=s.index, dtype=object)


def _record_labels(raw: pd.DataFrame, schema: Schema, first_row: int = 0) -> list[str]:
    labels = [f"row {first_row + i + 1}" for i in range(len(raw))]
    if schema.key in raw.columns:
        for i, v in enumerate(raw[schema.key]):
            labels[i] = key_label(v) or labels[i]
    return labels


def key_label(value: Any) -> str | None:
    """How a problem names a record by its key: quoted, or ``None`` when the key cannot be shown safely."""
    text = _label_text(value)
    printable = text is not None and text.isprintable()  # no NUL, escape or control characters in messages
    if printable and text and len(text) <= 200 and not _has_surrogates(text):
        return f"'{text}'"
    return None


def coerce_records(
    raw: pd.DataFrame,
    schema: Schema,
    root: Path,
    limits: Limits | None = None,
    *,
    first_row: int = 0,
    check_keys: bool = True,
) -> tuple[pd.DataFrame, list[Problem]]:
    """Convert raw records to canonical types and list every problem found (empty list: valid).

    ``first_row`` numbers the rows of a batch within the whole table; ``check_keys=False`` leaves key uniqueness to
    a caller that sees every batch (:mod:`privsynth.data.stream`).
    """
    lim = limits if limits is not None else Limits()
    problems: list[Problem] = []
    if len(raw) == 0:
        problems.append(Problem("empty", "the corpus has no records; add records or check the table file"))
    declared = set(schema.columns)
    for name in raw.columns:
        if name not in declared:
            problems.append(
                Problem(
                    "unknown-column", "column is not in schema.yaml; add it (or drop it from the table)", column=name
                )
            )
    for name in schema.columns:
        if name not in raw.columns:
            problems.append(
                Problem("missing-column", "schema.yaml lists this column but the table lacks it", column=name)
            )
    labels = _record_labels(raw, schema, first_row)
    coerced: dict[str, pd.Series] = {}
    for name, spec in schema.columns.items():
        if name not in raw.columns:
            continue
        s = raw[name].reset_index(drop=True)
        out = _Collector(name, labels, problems)
        missing = _missing_mask(s)
        if (not spec.nullable or spec.kind is ColumnKind.KEY) and missing.any():
            out.rows(missing, "missing", "value is missing but the column may not be empty")
        coerced[name] = _coerce_column(s, spec, out, missing, root, lim)
    if check_keys:
        _check_keys(coerced, schema, labels, problems)
    table = pd.DataFrame({n: coerced[n] for n in schema.columns if n in coerced})
    return table, problems


def _coerce_column(
    s: pd.Series, spec: ColumnSpec, out: _Collector, missing: np.ndarray, root: Path, lim: Limits
) -> pd.Series:
    kind = spec.kind
    if kind is ColumnKind.NUMERICAL:
        return _numerical(s, spec, out, missing)
    if kind is ColumnKind.DATETIME:
        return _datetime(s, spec, out, missing)
    if kind is ColumnKind.BOOLEAN:
        return _boolean(s, out, missing)
    if kind is ColumnKind.IMAGE:
        return _image(s, spec, out, missing, root, lim)
    if kind is ColumnKind.TEXT:
        limit = min(spec.max_length, lim.max_text_chars) if spec.max_length is not None else lim.max_text_chars
        return _strings(s, out, missing, accept=_text_value, mismatch="expected text (a string)", limit=limit)
    result = _strings(
        s,
        out,
        missing,
        accept=_label_text,
        mismatch="expected a string or an integer label",
        limit=lim.max_cell_chars,
    )
    if kind is ColumnKind.CATEGORICAL and spec.domain is not None:
        allowed = set(spec.domain)
        outside = np.fromiter((v is not None and v not in allowed for v in result), dtype=bool, count=len(result))
        out.rows(outside, "domain", "category not in the declared domain; fix the value or extend 'domain'")
    return result


def _check_keys(coerced: dict[str, pd.Series], schema: Schema, labels: list[str], problems: list[Problem]) -> None:
    key = coerced.get(schema.key)
    if key is None:
        return
    dup = key.duplicated(keep="first") & key.notna()
    out = _Collector(schema.key, labels, problems)
    out.rows(dup.to_numpy(), "duplicate-key", "record key used by an earlier record; keys must be unique")
