"""The corpus schema: one kind per column, plus metadata the user declares public.

A schema lives in ``schema.yaml`` at the corpus root::

    version: 1
    table: records.parquet
    key: record_id            # one row per record
    entity: patient_id        # optional: a person with several records
    max_records_per_entity: 1
    columns:
      record_id: {kind: key}
      patient_id: {kind: key}
      name: {kind: identifier, pii: person}
      age: {kind: numerical, integer: true, bounds: [18, 95]}
      diagnosis: {kind: categorical, domain: [pneumonia, fracture, healthy]}
      note: {kind: text, max_length: 2000}
      scan: {kind: image, image_size: [32, 32], image_mode: L}

Metadata written here (``domain``, ``meanings``, ``bounds``, ``decimals``, ``date_range``, ``max_length``,
``image_size``/``image_mode``) is *declared public*: privsynth uses it exactly and spends no privacy budget on it.
Anything not declared is learned from the records under differential privacy. Never paste values observed in the
private records here unless they are public knowledge (a codebook, a form's options, a device's output size).
"""

from __future__ import annotations

import datetime as dt
import math
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from privsynth.errors import SchemaError
from privsynth.settings import validation_lines

SCHEMA_FILE = "schema.yaml"
SCHEMA_VERSION = 1


class ColumnKind(StrEnum):
    """What a column holds, which decides how privsynth treats it."""

    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    TEXT = "text"
    IMAGE = "image"
    IDENTIFIER = "identifier"
    KEY = "key"


class PiiType(StrEnum):
    """The type of a direct identifier; decides which surrogate replaces it and which placeholder stands for it."""

    PERSON = "person"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    EMAIL = "email"
    PHONE = "phone"
    SSN = "ssn"
    MRN = "mrn"
    ADDRESS = "address"
    ZIP = "zip"
    DATE_OF_BIRTH = "date_of_birth"
    IP_ADDRESS = "ip_address"
    URL = "url"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    ACCOUNT = "account"
    LICENSE = "license"
    VIN = "vin"
    OTHER = "other"


class ImageMode(StrEnum):
    """Pixel mode of an image column (PIL names)."""

    GRAY = "L"
    RGB = "RGB"


#: Kinds whose values are learned by generators (the others are keys or identifiers, never modelled).
MODELLED_KINDS = frozenset(
    {
        ColumnKind.NUMERICAL,
        ColumnKind.CATEGORICAL,
        ColumnKind.DATETIME,
        ColumnKind.BOOLEAN,
        ColumnKind.TEXT,
        ColumnKind.IMAGE,
    }
)


#: The column fields a data team declares public (used exactly, no budget); listed in summaries and releases.
PUBLIC_FIELDS = ("domain", "meanings", "bounds", "decimals", "date_range", "max_length", "image_size", "image_mode")
#: Longest public meaning of a category (characters): a phrase for a prompt, not a document.
MAX_MEANING = 200


def _plain_words(words: str) -> bool:
    """A meaning a prompt can show as it is: one printable line, no field separator, no special-token syntax."""
    return bool(words.strip()) and len(words) <= MAX_MEANING and words.isprintable() and not set(words) & set(";<>")


class ColumnSpec(BaseModel):
    """One column: its kind and the metadata the user declared public for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ColumnKind
    pii: PiiType | None = Field(default=None, description="PII type; required for identifier columns.")
    nullable: bool = Field(default=True, description="Whether missing values are allowed (keys never are).")
    description: str | None = None
    # Declared-public metadata. None means "not declared": learned under DP if a generator needs it.
    domain: tuple[str, ...] | None = Field(default=None, description="Public category list (categorical).")
    meanings: dict[str, str] | None = Field(
        default=None,
        description="Public words saying what each category means (categorical), shown next to the category in a "
        "pretrained text backbone's prompts: {great: 'the reviewer loved it'}.",
    )
    bounds: tuple[float, float] | None = Field(default=None, description="Public [low, high] (numerical).")
    integer: bool = Field(default=False, description="Numerical values are whole numbers.")
    decimals: int | None = Field(
        default=None, ge=0, le=12, description="Public decimal places the values are recorded with (numerical)."
    )
    date_range: tuple[dt.date, dt.date] | None = Field(default=None, description="Public date range (datetime).")
    date_only: bool = Field(default=False, description="Datetime values are whole days (no time of day).")
    max_length: int | None = Field(default=None, gt=0, description="Public maximum length in characters (text).")
    image_size: tuple[int, int] | None = Field(default=None, description="Public (width, height) in pixels.")
    image_mode: ImageMode | None = Field(default=None, description="Public pixel mode, L or RGB.")
    generator: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="A registered generator to model this column with (default: the one for its kind).",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        problems: list[str] = []
        kind = self.kind
        if self.generator is not None and kind in (ColumnKind.KEY, ColumnKind.IDENTIFIER):
            problems.append(f"'generator' does not apply to {kind} columns (they are never modelled)")
        if kind is ColumnKind.IDENTIFIER and self.pii is None:
            problems.append("identifier columns need a 'pii' type (person, email, ssn, mrn, ...)")
        if self.pii is not None and kind is not ColumnKind.IDENTIFIER:
            problems.append("'pii' is only meaningful for identifier columns")
        allowed: dict[str, set[ColumnKind]] = {
            "domain": {ColumnKind.CATEGORICAL},
            "meanings": {ColumnKind.CATEGORICAL},
            "bounds": {ColumnKind.NUMERICAL},
            "integer": {ColumnKind.NUMERICAL},
            "decimals": {ColumnKind.NUMERICAL},
            "date_range": {ColumnKind.DATETIME},
            "date_only": {ColumnKind.DATETIME},
            "max_length": {ColumnKind.TEXT},
            "image_size": {ColumnKind.IMAGE},
            "image_mode": {ColumnKind.IMAGE},
        }
        for field, kinds in allowed.items():
            value = getattr(self, field)
            if value not in (None, False) and kind not in kinds:
                problems.append(f"'{field}' does not apply to {kind} columns")
        if self.domain is not None:
            if len(self.domain) == 0:
                problems.append("'domain' must list at least one category")
            if len(set(self.domain)) != len(self.domain):
                problems.append("'domain' lists a category twice")
        if self.meanings is not None:
            if self.domain is None:
                problems.append("'meanings' needs 'domain' (the public categories whose meanings they are)")
            elif unknown := sorted(set(self.meanings) - set(self.domain)):
                problems.append(f"'meanings' names categories not in 'domain': {unknown}")
            if not self.meanings:
                problems.append("'meanings' is empty; leave it out or give a category's words")
            if not all(_plain_words(words) for words in self.meanings.values()):
                problems.append(
                    f"'meanings' must be plain words, 1 to {MAX_MEANING} printable characters each, without ';' "
                    "(it separates a prompt's fields) or '<', '>' (special tokens)"
                )
        if self.integer and self.decimals:
            problems.append("'decimals' contradicts 'integer: true' (whole numbers have no decimals)")
        if self.bounds is not None and not all(math.isfinite(b) for b in self.bounds):
            problems.append("'bounds' must be finite numbers (not .inf or .nan); leave them out to learn them under DP")
        elif self.bounds is not None and not self.bounds[0] <= self.bounds[1]:
            problems.append("'bounds' must be [low, high] with low <= high")
        if self.date_range is not None and not self.date_range[0] <= self.date_range[1]:
            problems.append("'date_range' must be [first, last] with first <= last")
        if self.image_size is not None and not (0 < self.image_size[0] <= 4096 and 0 < self.image_size[1] <= 4096):
            problems.append("'image_size' must be [width, height], each between 1 and 4096")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Schema(BaseModel):
    """The whole corpus schema. Column order is the table's column order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = SCHEMA_VERSION
    table: str = Field(default="records.parquet", description="Table file, relative to the corpus root.")
    key: str = Field(description="Column holding the unique record id.")
    entity: str | None = Field(default=None, description="Column holding the person id, if several records each.")
    max_records_per_entity: int = Field(default=1, ge=1, description="Contribution bound per entity.")
    columns: dict[str, ColumnSpec]

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        problems: list[str] = []
        if self.version != SCHEMA_VERSION:
            problems.append(f"schema version {self.version} is not supported (this privsynth reads {SCHEMA_VERSION})")
        if not self.columns:
            problems.append("'columns' is empty")
        for role, name in (("key", self.key), ("entity", self.entity)):
            if name is None:
                continue
            spec = self.columns.get(name)
            if spec is None:
                problems.append(f"'{role}: {name}' names a column that 'columns' does not list")
            elif spec.kind is not ColumnKind.KEY:
                problems.append(f"'{role}' column '{name}' must have kind 'key', not '{spec.kind}'")
        if self.entity is not None and self.entity == self.key:
            problems.append("'entity' must differ from 'key' (drop 'entity' when each person has one record)")
        if Path(self.table).is_absolute() or ".." in Path(self.table).parts:
            problems.append("'table' must be a path inside the corpus root")
        if Path(self.table).suffix.lower() not in TABLE_FORMATS:
            problems.append(f"'table' must end in one of {', '.join(sorted(TABLE_FORMATS))}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def names(self, *kinds: ColumnKind) -> list[str]:
        """Column names of the given kinds, in table order (all columns when no kind is given)."""
        return [n for n, c in self.columns.items() if not kinds or c.kind in kinds]

    @property
    def unit_of_privacy(self) -> str:
        """What one DP 'neighbour' differs by, in words written into every artifact."""
        if self.entity is None:
            return "record (one row with its linked text and images)"
        return (
            f"person identified by '{self.entity}' (up to {self.max_records_per_entity} record(s) each, "
            "with their linked text and images)"
        )

    def with_table(self, table: str) -> Schema:
        """The same schema pointing at another table file (used when converting formats)."""
        return self.model_copy(update={"table": table})


#: Table formats privsynth reads and writes, by file suffix.
TABLE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}


def schema_from_dict(data: Any, *, source: str) -> Schema:
    """Validate a parsed ``schema.yaml`` into a :class:`Schema`, or raise :class:`SchemaError` listing every fault."""
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: expected a mapping with 'key' and 'columns'; see docs/data-teams.md")
    try:
        return Schema.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(f"{source} is invalid; fix these entries:\n{validation_lines(exc, Schema)}") from None


def load_schema(path: Path) -> Schema:
    """Read ``schema.yaml``; the message of any error names the file and the entries to fix."""
    if not path.is_file():
        raise SchemaError(f"no schema at {path}; run 'privsynth init {path.parent}' to infer one, then review it")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path} is not valid YAML ({type(exc).__name__}); fix the file and retry") from None
    return schema_from_dict(data, source=str(path))


def schema_to_dict(schema: Schema) -> dict[str, Any]:
    """A plain, YAML-friendly dict with only the fields that differ from their defaults."""
    out: dict[str, Any] = {"version": schema.version, "table": schema.table, "key": schema.key}
    if schema.entity is not None:
        out["entity"] = schema.entity
        out["max_records_per_entity"] = schema.max_records_per_entity
    # kind first in each entry, for people reading the file; whole-number bounds written as integers
    out["columns"] = {}
    for name, spec in schema.columns.items():
        entry = {"kind": spec.kind.value} | spec.model_dump(mode="json", exclude_defaults=True, exclude={"kind"})
        if "bounds" in entry:
            entry["bounds"] = [int(b) if float(b).is_integer() else b for b in entry["bounds"]]
        out["columns"][name] = entry
    return out


def dump_schema(schema: Schema, *, header: str = "") -> str:
    """Serialise a schema to YAML text, with an optional comment header."""
    data = schema_to_dict(schema)
    columns = data.pop("columns")
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    lines = ["columns:"]
    for name, entry in columns.items():
        # one flow mapping per column keeps the file short enough to review at a glance
        flow = yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, allow_unicode=True, width=10_000)
        key = yaml.safe_dump(name, allow_unicode=True).strip().removesuffix("...").strip()
        lines.append(f"  {key}: {flow.strip()}")
    return header + body + "\n".join(lines) + "\n"
