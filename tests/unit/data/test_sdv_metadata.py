"""SDV single-table metadata in and out: kinds map both ways; nothing public is invented from it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from privsynth.data.demo import demo_schema
from privsynth.data.schema import ColumnKind, PiiType
from privsynth.data.sdv_metadata import schema_from_sdv, schema_to_sdv
from privsynth.errors import SchemaError
from privsynth.frames import as_schema

HOTEL = {
    "METADATA_SPEC_VERSION": "SINGLE_TABLE_V1",
    "primary_key": "guest_id",
    "columns": {
        "guest_id": {"sdtype": "id"},
        "guest_email": {"sdtype": "email", "pii": True},
        "has_rewards": {"sdtype": "boolean"},
        "room_type": {"sdtype": "categorical"},
        "nights": {"sdtype": "numerical", "computer_representation": "Int64"},
        "room_rate": {"sdtype": "numerical"},
        "checkin_date": {"sdtype": "datetime", "datetime_format": "%d %b %Y"},
        "checkin_time": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d %H:%M"},
        "billing_address": {"sdtype": "address", "pii": True},
        "loyalty_code": {"sdtype": "unknown", "pii": True},
        "review": {"sdtype": "unknown", "pii": False},
        "country": {"sdtype": "country_code", "pii": False},
        "job": {"sdtype": "job"},
    },
}


def test_sdv_kinds_map_to_privsynth_kinds_and_nothing_is_declared_public() -> None:
    schema = schema_from_sdv(HOTEL)
    kinds = {n: c.kind for n, c in schema.columns.items()}
    assert schema.key == "guest_id" and kinds["guest_id"] is ColumnKind.KEY
    assert kinds["guest_email"] is ColumnKind.IDENTIFIER and schema.columns["guest_email"].pii == PiiType.EMAIL
    assert schema.columns["billing_address"].pii == PiiType.ADDRESS
    assert schema.columns["loyalty_code"].pii == PiiType.OTHER  # pii: true with no matching surrogate type
    assert kinds["nights"] is ColumnKind.NUMERICAL and schema.columns["nights"].integer
    assert not schema.columns["room_rate"].integer
    assert schema.columns["checkin_date"].date_only and not schema.columns["checkin_time"].date_only
    assert kinds["review"] is ColumnKind.TEXT and kinds["country"] is ColumnKind.CATEGORICAL
    assert kinds["job"] is ColumnKind.IDENTIFIER  # SDV treats semantic sdtypes as PII unless told otherwise
    # SDV metadata says what a column is, never which values it takes: no domain, bounds or range is declared
    for spec in schema.columns.values():
        assert spec.domain is None and spec.bounds is None and spec.date_range is None


def test_a_json_path_and_a_one_table_multi_table_file_are_read_and_bad_files_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({"METADATA_SPEC_VERSION": "V1", "tables": {"guests": HOTEL}}))
    assert as_schema(path).columns["room_type"].kind is ColumnKind.CATEGORICAL
    two = {"METADATA_SPEC_VERSION": "MULTI_TABLE_V1", "tables": {"a": HOTEL, "b": HOTEL}}
    with pytest.raises(SchemaError, match="2 tables"):
        schema_from_sdv(two)
    with pytest.raises(SchemaError, match="no primary_key"):
        schema_from_sdv({**HOTEL, "primary_key": None})
    path.write_text("{not json")
    with pytest.raises(SchemaError, match="not readable SDV metadata"):
        schema_from_sdv(path)


def test_export_then_import_keeps_every_kind() -> None:
    schema = demo_schema()
    exported = schema_to_sdv(schema)
    assert exported["METADATA_SPEC_VERSION"] == "SINGLE_TABLE_V1" and exported["primary_key"] == schema.key
    assert exported["columns"]["scan"] == {"sdtype": "unknown", "pii": False}  # SDV cannot model images
    back = schema_from_sdv(exported, entity="patient_id", max_records_per_entity=2)
    assert back.entity == "patient_id" and back.unit_of_privacy == schema.unit_of_privacy
    for name, spec in schema.columns.items():
        expected = ColumnKind.TEXT if spec.kind is ColumnKind.IMAGE else spec.kind
        assert back.columns[name].kind is expected, name
        if spec.kind is ColumnKind.IDENTIFIER and spec.pii is not PiiType.MRN:
            assert back.columns[name].pii == spec.pii, name


def test_cli_init_from_and_to_sdv(cli, tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    frame = pd.DataFrame({"guest_id": ["g1", "g2"], "room_type": ["suite", "basic"], "nights": [1, 3]})
    frame.to_csv(folder / "records.csv", index=False)
    metadata = tmp_path / "metadata.json"
    columns = {k: HOTEL["columns"][k] for k in frame.columns}  # type: ignore[index]
    metadata.write_text(json.dumps({**HOTEL, "columns": columns}))
    result = cli("init", folder, "--from-sdv", metadata)
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((folder / "schema.yaml").read_text())
    assert written["key"] == "guest_id" and written["columns"]["nights"]["kind"] == "numerical"
    assert "Declare from a public codebook" in result.stdout
    out = tmp_path / "export.json"
    assert cli("init", folder, "--to-sdv", out).exit_code == 0
    assert json.loads(out.read_text())["columns"]["room_type"] == {"sdtype": "categorical"}
    assert cli("init", folder, "--to-sdv", out).exit_code != 0  # exists: refused without --force


def test_an_id_besides_the_primary_key_must_be_named_or_declared_absent() -> None:
    visits = {
        "METADATA_SPEC_VERSION": "SINGLE_TABLE_V1",
        "primary_key": "visit_id",
        "columns": {"visit_id": {"sdtype": "id"}, "patient_id": {"sdtype": "id"}, "dx": {"sdtype": "categorical"}},
    }
    # Before: patient_id became a plain key and the unit of privacy silently became the record, so a person with
    # k visits was protected only about k times more weakly.
    with pytest.raises(SchemaError, match="entity='patient_id'"):
        schema_from_sdv(visits)
    person = schema_from_sdv(visits, entity="patient_id", max_records_per_entity=3)
    assert person.entity == "patient_id" and person.max_records_per_entity == 3
    assert schema_from_sdv(visits, entity="none").entity is None
    with pytest.raises(SchemaError, match="not an id column"):
        schema_from_sdv(visits, entity="dx")
