"""SDV single-table metadata JSON, in and out: a newcomer's SDV metadata becomes a privsynth schema, and back.

Read with :func:`schema_from_sdv` (``Synthesizer().fit(df, schema="metadata.json")`` does it for a ``.json``
path), written with :func:`schema_to_sdv`. The SDV format (``SINGLE_TABLE_V1``, or a ``V1``/``MULTI_TABLE_V1``
file holding one table) says what each column is, not what values it may take: it has no category domains,
numeric bounds or date ranges. A schema read from it therefore declares nothing public; at a few hundred people,
add domains and bounds from a public codebook (``Synthesizer.plan`` shows what collapses without them).

This module only reads and writes JSON: it never imports SDV (BUSL-1.1), so it stays in the core path.

Mapping, SDV ``sdtype`` to privsynth ``kind``:

- ``id`` (the primary key or any other id): ``key``. SDV does not say which id identifies a *person*: when a
  table has id columns besides its primary key, name the person's column (``entity=``, ``--entity``), or say
  that every record is a different person (``entity="none"``); privsynth refuses to guess, because protecting
  records where a person has several of them protects that person only k times more weakly;
- ``numerical``: ``numerical`` (integer when ``computer_representation`` is an integer type);
- ``categorical``, ``boolean``, ``datetime``: the same kind (``date_only`` when the format has no time);
- a PII sdtype (``email``, ``phone_number``, ``ssn``, names, addresses...) or any column with ``"pii": true``:
  ``identifier`` with the matching surrogate type (``other`` when none matches);
- ``text``: ``text``; ``unknown`` or another semantic sdtype (``job``, ``country_code``...): as SDV does, PII
  unless ``"pii": false`` says otherwise, so an ``identifier`` (never modelled); with ``"pii": false``,
  ``unknown`` becomes ``text`` and a semantic sdtype ``categorical``.

Going out, ``text`` and ``image`` columns become ``unknown`` (SDV cannot model them), identifiers their PII sdtype.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from privsynth.data.schema import ColumnKind, PiiType, Schema, schema_from_dict
from privsynth.errors import SchemaError

SINGLE_TABLE = "SINGLE_TABLE_V1"

#: SDV PII sdtypes and the surrogate type privsynth fills them with.
PII_SDTYPES: dict[str, PiiType] = {
    "email": PiiType.EMAIL,
    "phone_number": PiiType.PHONE,
    "ssn": PiiType.SSN,
    "name": PiiType.PERSON,
    "first_name": PiiType.FIRST_NAME,
    "last_name": PiiType.LAST_NAME,
    "address": PiiType.ADDRESS,
    "street_address": PiiType.ADDRESS,
    "postcode": PiiType.ZIP,
    "zipcode": PiiType.ZIP,
    "ipv4_address": PiiType.IP_ADDRESS,
    "ipv6_address": PiiType.IP_ADDRESS,
    "ip_address": PiiType.IP_ADDRESS,
    "url": PiiType.URL,
    "credit_card_number": PiiType.CREDIT_CARD,
    "iban": PiiType.IBAN,
    "bban": PiiType.ACCOUNT,
    "license_plate": PiiType.LICENSE,
    "vin": PiiType.VIN,
    "date_of_birth": PiiType.DATE_OF_BIRTH,
}
_SDTYPE_OF_PII: dict[PiiType, str] = {
    PiiType.PERSON: "name",
    PiiType.FIRST_NAME: "first_name",
    PiiType.LAST_NAME: "last_name",
    PiiType.EMAIL: "email",
    PiiType.PHONE: "phone_number",
    PiiType.SSN: "ssn",
    PiiType.ADDRESS: "address",
    PiiType.ZIP: "postcode",
    PiiType.IP_ADDRESS: "ipv4_address",
    PiiType.URL: "url",
    PiiType.CREDIT_CARD: "credit_card_number",
    PiiType.IBAN: "iban",
    PiiType.ACCOUNT: "bban",
    PiiType.LICENSE: "license_plate",
    PiiType.VIN: "vin",
    PiiType.DATE_OF_BIRTH: "date_of_birth",  # a Faker method name, which SDV accepts as an sdtype
}
_TIME_DIRECTIVES = re.compile(r"%[HIMSfpXcTRrz]")


def is_sdv_metadata(data: Any) -> bool:
    """Whether a parsed JSON document looks like SDV metadata (it names its spec version)."""
    return isinstance(data, dict) and "METADATA_SPEC_VERSION" in data


def _table(data: dict[str, Any], source: str) -> dict[str, Any]:
    version = data.get("METADATA_SPEC_VERSION")
    if version == SINGLE_TABLE:
        return data
    if version in ("V1", "MULTI_TABLE_V1"):
        tables = data.get("tables") or {}
        if len(tables) != 1:
            raise SchemaError(
                f"{source}: SDV metadata with {len(tables)} tables; privsynth models one table of records "
                "(join the tables into one, one row per record, or export that table's metadata alone)"
            )
        return dict(next(iter(tables.values())))
    raise SchemaError(f"{source}: METADATA_SPEC_VERSION {version!r} is not SINGLE_TABLE_V1, V1 or MULTI_TABLE_V1")


def _column(name: str, sdv: dict[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(sdv, dict) or "sdtype" not in sdv:
        raise SchemaError(f"{source}: column '{name}' has no 'sdtype'")
    sdtype = str(sdv["sdtype"])
    if sdtype == "id":
        return {"kind": ColumnKind.KEY.value}
    if sdtype in PII_SDTYPES:
        return {"kind": ColumnKind.IDENTIFIER.value, "pii": PII_SDTYPES[sdtype].value}
    standard = ("numerical", "datetime", "boolean", "categorical", "text")
    if sdv.get("pii") or (sdtype not in standard and sdv.get("pii") is None):
        return {"kind": ColumnKind.IDENTIFIER.value, "pii": PiiType.OTHER.value}  # SDV's default for these: PII
    if sdtype == "numerical":
        representation = str(sdv.get("computer_representation", "Float"))
        return {"kind": ColumnKind.NUMERICAL.value, "integer": representation.lower().startswith(("int", "uint"))}
    if sdtype == "datetime":
        fmt = sdv.get("datetime_format")
        date_only = isinstance(fmt, str) and not _TIME_DIRECTIVES.search(fmt)
        return {"kind": ColumnKind.DATETIME.value, **({"date_only": True} if date_only else {})}
    if sdtype in ("boolean", "categorical"):
        return {"kind": sdtype}
    if sdtype in ("text", "unknown"):
        return {"kind": ColumnKind.TEXT.value}
    return {"kind": ColumnKind.CATEGORICAL.value}  # other semantic sdtypes (country_code...) are categories


def schema_from_sdv(
    metadata: dict[str, Any] | str | Path,
    *,
    table: str = "records.parquet",
    entity: str | None = None,
    max_records_per_entity: int = 1,
) -> Schema:
    """A privsynth schema from SDV single-table metadata (a dict, or a path to its JSON).

    ``entity`` names the id column of the person (``"none"``: every record is a different person); it is
    required when the table has id columns besides its primary key. ``max_records_per_entity`` is the public bound
    on records per person (contributions beyond it are dropped at random before any computation).
    """
    source = "SDV metadata"
    if isinstance(metadata, str | Path):
        source = str(metadata)
        try:
            metadata = json.loads(Path(metadata).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{source}: not readable SDV metadata JSON ({type(exc).__name__})") from None
    if not is_sdv_metadata(metadata):
        raise SchemaError(f"{source}: not SDV metadata (no METADATA_SPEC_VERSION)")
    assert isinstance(metadata, dict)
    data = _table(metadata, source)
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise SchemaError(f"{source}: no 'columns'")
    key = data.get("primary_key")
    if isinstance(key, list):
        raise SchemaError(f"{source}: a composite primary key ({key}) is not supported; add a single id column")
    out = {name: _column(name, spec, source) for name, spec in columns.items()}
    if key is None:
        raise SchemaError(
            f"{source}: no primary_key; privsynth needs one column that identifies each record (add an id column "
            "and name it as primary_key)"
        )
    other_ids = [n for n, c in out.items() if c["kind"] == ColumnKind.KEY.value and n != key]
    document: dict[str, Any] = {"table": table, "key": key, "columns": out}
    if entity is None and other_ids:
        raise SchemaError(
            f"{source}: besides the primary key '{key}', the id column(s) {other_ids} may identify a person with "
            "several records, and SDV metadata does not say which. Name it (Python: schema_from_sdv(path, "
            f"entity='{other_ids[0]}', max_records_per_entity=K); CLI: privsynth init CORPUS --from-sdv FILE --entity "
            f"{other_ids[0]} --max-records K), or pass entity='none' if every record is a different person"
        )
    if entity not in (None, "none"):
        if entity not in other_ids:
            raise SchemaError(f"{source}: entity '{entity}' is not an id column besides the primary key {other_ids}")
        document.update(entity=entity, max_records_per_entity=max_records_per_entity)
    return schema_from_dict(document, source=source)


def schema_to_sdv(schema: Schema) -> dict[str, Any]:
    """SDV ``SINGLE_TABLE_V1`` metadata for a privsynth schema (domains, bounds and ranges have no SDV field)."""
    columns: dict[str, dict[str, Any]] = {}
    for name, spec in schema.columns.items():
        if spec.kind is ColumnKind.KEY:
            columns[name] = {"sdtype": "id"}
        elif spec.kind is ColumnKind.IDENTIFIER:
            pii = spec.pii if spec.pii is not None else PiiType.OTHER
            columns[name] = {"sdtype": _SDTYPE_OF_PII.get(PiiType(pii), "unknown"), "pii": True}
        elif spec.kind is ColumnKind.NUMERICAL:
            columns[name] = {"sdtype": "numerical", "computer_representation": "Int64" if spec.integer else "Float"}
        elif spec.kind is ColumnKind.DATETIME:
            columns[name] = {
                "sdtype": "datetime",
                "datetime_format": "%Y-%m-%d" if spec.date_only else "%Y-%m-%d %H:%M:%S",
            }
        elif spec.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            columns[name] = {"sdtype": spec.kind.value}
        else:  # text and images: SDV has no model for them
            columns[name] = {"sdtype": "unknown", "pii": False}
    return {"METADATA_SPEC_VERSION": SINGLE_TABLE, "primary_key": schema.key, "columns": columns}


__all__ = ["PII_SDTYPES", "SINGLE_TABLE", "is_sdv_metadata", "schema_from_sdv", "schema_to_sdv"]
