"""Infer a draft schema from a table: column kinds and identifier types, for a person to review.

Inference reads the private records, so its output holds *structure only*: kinds, PII types, whether numbers
are whole. It never writes observed categories, ranges or lengths as declared-public metadata, because
declaring them public would skip differential privacy for exactly the values that can single a person out.
The user declares public metadata by hand, from a codebook or a form, not from the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from privsynth.data.images import DATA_URI_PREFIX
from privsynth.data.schema import TABLE_FORMATS, ColumnKind, ColumnSpec, PiiType, Schema
from privsynth.errors import CorpusReadError

# Column-name patterns for direct identifiers, checked in order (first match wins).
_NAME_PATTERNS: list[tuple[PiiType, re.Pattern[str]]] = [
    (PiiType.DATE_OF_BIRTH, re.compile(r"(^|_)(dob|birth_?date|date_?of_?birth|birthday)($|_)")),
    (PiiType.FIRST_NAME, re.compile(r"(^|_)(first_?name|given_?name|forename)($|_)")),
    (PiiType.LAST_NAME, re.compile(r"(^|_)(last_?name|surname|family_?name)($|_)")),
    (PiiType.PERSON, re.compile(r"(^|_)(full_?name|name|patient_?name|person|customer_?name)($|_)")),
    (PiiType.EMAIL, re.compile(r"(^|_)(e_?mail|email_?address|mail)($|_)")),
    (PiiType.PHONE, re.compile(r"(^|_)(phone|telephone|tel|mobile|cell|fax)($|_)")),
    (PiiType.SSN, re.compile(r"(^|_)(ssn|social_?security(_?number)?|sin|national_?id)($|_)")),
    (PiiType.MRN, re.compile(r"(^|_)(mrn|medical_?record(_?number)?|patient_?number)($|_)")),
    (PiiType.ADDRESS, re.compile(r"(^|_)(address|street|street_?address|home_?address)($|_)")),
    (PiiType.ZIP, re.compile(r"(^|_)(zip|zip_?code|postal_?code|postcode)($|_)")),
    (PiiType.IP_ADDRESS, re.compile(r"(^|_)(ip|ip_?address)($|_)")),
    (PiiType.URL, re.compile(r"(^|_)(url|website|homepage)($|_)")),
    (PiiType.CREDIT_CARD, re.compile(r"(^|_)(credit_?card|card_?number|cc_?number)($|_)")),
    (PiiType.IBAN, re.compile(r"(^|_)(iban|account_?number)($|_)")),
    (PiiType.VIN, re.compile(r"(^|_)(vin|vehicle_?id)($|_)")),
    (PiiType.LICENSE, re.compile(r"(^|_)(licen[cs]e(_?number)?|passport(_?number)?)($|_)")),
]

# Value patterns, used when the column name says nothing.
_VALUE_PATTERNS: list[tuple[PiiType, re.Pattern[str]]] = [
    (PiiType.EMAIL, re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")),
    (PiiType.SSN, re.compile(r"^\d{3}-\d{2}-\d{4}$")),
    (PiiType.PHONE, re.compile(r"^(\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}(\s?x\d+)?$")),
    (PiiType.IP_ADDRESS, re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")),
    (PiiType.URL, re.compile(r"^https?://\S+$")),
]

_KEY_NAME = re.compile(r"(^|_)(id|key|uuid|record_?id|row_?id)$")
_ENTITY_NAME = re.compile(r"(^|_)(patient|person|subject|customer|user|member|entity)_?id$")
_IMAGE_PATH = re.compile(r"\.(png|jpe?g)$", re.IGNORECASE)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_BOOL_WORDS = {"true", "false", "t", "f", "yes", "no", "y", "n", "0", "1"}


@dataclass(frozen=True)
class Inference:
    """A draft schema and, per column, why it was classified that way (no values quoted)."""

    schema: Schema
    reasons: dict[str, str]


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()).strip("_")


def _share(values: pd.Series, test: re.Pattern[str]) -> float:
    if len(values) == 0:
        return 0.0
    return float(values.map(lambda v: bool(test.search(v))).mean())


def _as_strings(series: pd.Series) -> pd.Series:
    present = series[series.map(lambda v: v is not None and not (isinstance(v, float) and np.isnan(v)) and v != "")]
    return present.map(str)


def _infer_column(name: str, series: pd.Series, n: int) -> tuple[ColumnSpec, str]:
    snake = _snake(name)
    for pii, pattern in _NAME_PATTERNS:
        if pattern.search(snake):
            return ColumnSpec(kind=ColumnKind.IDENTIFIER, pii=pii), f"name suggests a direct identifier ({pii})"
    if any(isinstance(v, bytes | bytearray) for v in series.head(100)):
        return ColumnSpec(kind=ColumnKind.IMAGE), "holds encoded bytes"
    if pd.api.types.is_bool_dtype(series.dtype):
        return ColumnSpec(kind=ColumnKind.BOOLEAN), "boolean values"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _datetime_spec(series)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return _numeric_spec(pd.to_numeric(series, errors="coerce"))
    text = _as_strings(series)
    if len(text) == 0:
        return ColumnSpec(kind=ColumnKind.CATEGORICAL), "empty column; review its kind"
    if text.str.startswith(DATA_URI_PREFIX).mean() > 0.9 or _share(text, _IMAGE_PATH) > 0.9:
        return ColumnSpec(kind=ColumnKind.IMAGE), "values are image paths or data URIs"
    if set(text.str.lower().unique()) <= _BOOL_WORDS and text.nunique() <= 2:
        return ColumnSpec(kind=ColumnKind.BOOLEAN), "two true/false-like values"
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().mean() > 0.99:
        return _numeric_spec(numbers)
    if _share(text, _ISO_DATE) > 0.99:
        return _datetime_spec(pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True))
    for pii, pattern in _VALUE_PATTERNS:
        if _share(text, pattern) > 0.9:
            return ColumnSpec(kind=ColumnKind.IDENTIFIER, pii=pii), f"values look like {pii}"
    mean_len = float(text.str.len().mean())
    unique = text.nunique() / max(len(text), 1)
    has_spaces = float(text.str.contains(" ").mean())
    if mean_len > 40 or (unique > 0.5 and has_spaces > 0.5):
        return ColumnSpec(kind=ColumnKind.TEXT), "long or mostly unique free text"
    if unique > 0.5 and n >= 20:
        return (
            ColumnSpec(kind=ColumnKind.IDENTIFIER, pii=PiiType.OTHER),
            "short, mostly unique strings: treated as an identifier (never modelled); review",
        )
    return ColumnSpec(kind=ColumnKind.CATEGORICAL), "few distinct short values"


def _datetime_spec(values: pd.Series) -> tuple[ColumnSpec, str]:
    present = values.dropna()
    date_only = bool(len(present) > 0 and (present == present.dt.normalize()).all())
    return ColumnSpec(kind=ColumnKind.DATETIME, date_only=date_only), "dates" if date_only else "timestamps"


def _numeric_spec(numbers: pd.Series) -> tuple[ColumnSpec, str]:
    finite = numbers[np.isfinite(numbers.astype("float64"))]
    integer = bool(len(finite) > 0 and (finite == np.floor(finite)).all())
    return ColumnSpec(kind=ColumnKind.NUMERICAL, integer=integer), "numbers" + (" (whole)" if integer else "")


def _choose_keys(raw: pd.DataFrame) -> tuple[str | None, str | None, list[str]]:
    """(record key, entity key, other unique id columns) chosen by name and uniqueness."""
    names = [str(c) for c in raw.columns]
    unique = {n: bool(raw[n].notna().all() and raw[n].is_unique) for n in names}
    key_like = [n for n in names if _KEY_NAME.search(_snake(n))]
    entity_like = [n for n in names if _ENTITY_NAME.search(_snake(n))]
    key = next((n for n in key_like if unique[n] and n not in entity_like), None)
    if key is None:
        key = next((n for n in key_like if unique[n]), None)
    entity = next((n for n in entity_like if n != key), None)
    others = [n for n in key_like if unique[n] and n not in (key, entity)]
    return key, entity, others


def infer_schema(raw: pd.DataFrame, *, table: str) -> Inference:
    """Draft a schema for ``raw``. Raises :class:`CorpusReadError` when no unique key column can be found."""
    if len(raw.columns) == 0 or len(raw) == 0:
        raise CorpusReadError(f"{table}: the table has no records or no columns; nothing to infer")
    specs: dict[str, ColumnSpec] = {}
    reasons: dict[str, str] = {}
    for name in raw.columns:
        specs[str(name)], reasons[str(name)] = _infer_column(str(name), raw[name], len(raw))
    key, entity, other_ids = _choose_keys(raw)
    if key is None:
        raise CorpusReadError(
            f"{table}: no column looks like a unique record id (e.g. 'record_id'); add one, or write schema.yaml "
            "by hand with 'key: <column>'"
        )
    roles = [(key, "unique record id"), (entity, "person id (records of one person share it)")]
    roles += [(name, "another unique id: a key, never modelled") for name in other_ids]
    for name, role in roles:
        if name is not None:
            specs[name] = ColumnSpec(kind=ColumnKind.KEY)
            reasons[name] = role
    schema = Schema(table=table, key=key, entity=entity, columns=specs)
    return Inference(schema=schema, reasons=reasons)


def find_table(path: Path) -> Path:
    """The table file for ``privsynth init``: ``path`` itself, or the one table file inside a folder."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise CorpusReadError(f"{path} does not exist; pass a corpus folder or a .parquet/.csv/.jsonl file")
    tables = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_FORMATS and p.is_file())
    if len(tables) != 1:
        found = ", ".join(p.name for p in tables) or "none"
        raise CorpusReadError(f"{path}: expected exactly one table file (.parquet/.csv/.jsonl), found {found}")
    return tables[0]


def schema_header(inference: Inference) -> str:
    """Comment block written above an inferred schema, explaining each decision and what to review."""
    lines = [
        "# Draft schema inferred by 'privsynth init'. Review every column before fitting:",
        "#  - identifier columns are never modelled; synthetic records get fake (surrogate) values.",
        "#  - to declare public metadata (costs no privacy budget), add domain / bounds / date_range /",
        "#    max_length / image_size / image_mode from a public source (codebook, form, device spec),",
        "#    never from values you looked up in these records.",
        "#  - each column's kind and the 'integer' / 'date_only' flags below were read from the records, without",
        "#    noise: they are outside the privacy guarantee (and a release's datasheet says so). Confirm or set",
        "#    them from your codebook, so that what the schema says comes from public knowledge.",
        "#",
    ]
    for name, reason in inference.reasons.items():
        lines.append(f"#  {name}: {reason}")
    return "\n".join(lines) + "\n"
