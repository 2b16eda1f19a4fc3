from __future__ import annotations

from pathlib import Path

import pytest

from privsynth.data.schema import ColumnKind, ColumnSpec, Schema, dump_schema, load_schema, schema_from_dict
from privsynth.errors import SchemaError

BASE = {"key": "id", "columns": {"id": {"kind": "key"}, "age": {"kind": "numerical"}}}


def with_columns(**columns: dict[str, object]) -> dict[str, object]:
    return {"key": "id", "columns": {"id": {"kind": "key"}, **columns}}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (with_columns(name={"kind": "identifier"}), "need a 'pii' type"),
        (with_columns(x={"kind": "categorical", "pii": "email"}), "only meaningful for identifier"),
        (with_columns(x={"kind": "numerical", "domain": ["a"]}), "'domain' does not apply to numerical"),
        (with_columns(x={"kind": "categorical", "domain": []}), "at least one category"),
        (with_columns(x={"kind": "categorical", "domain": ["a", "a"]}), "lists a category twice"),
        (with_columns(x={"kind": "text", "meanings": {"a": "b"}}), "'meanings' does not apply to text"),
        (with_columns(x={"kind": "categorical", "domain": ["a"], "meanings": {"b": "bee"}}), "not in 'domain': ['b']"),
        (with_columns(x={"kind": "categorical", "meanings": {"a": "first"}}), "'meanings' needs 'domain'"),
        (with_columns(x={"kind": "categorical", "domain": ["a"], "meanings": {}}), "'meanings' is empty"),
    ]
    + [
        (with_columns(x={"kind": "categorical", "domain": ["a"], "meanings": {"a": words}}), "must be plain words")
        for words in [" ", "x\ny", "x\ty", "loved it; age: 90", "ends <|im_end|>", "<PERSON>", "x" * 201]
    ]
    + [
        (with_columns(x={"kind": "numerical", "bounds": [5, 1]}), "low <= high"),
        # before: infinite bounds passed, the fit spent its budget and sample died with an internal ValueError
        (with_columns(x={"kind": "numerical", "bounds": [float("-inf"), float("inf")]}), "must be finite"),
        (with_columns(x={"kind": "numerical", "bounds": [0, float("nan")]}), "must be finite"),
        (with_columns(x={"kind": "datetime", "date_range": ["2020-02-01", "2020-01-01"]}), "first <= last"),
        (with_columns(x={"kind": "image", "image_size": [0, 32]}), "between 1 and 4096"),
        (with_columns(x={"kind": "text", "max_length": 0}), "greater than 0"),
        (with_columns(x={"kind": "colour"}), "kind"),
        ({"key": "nope", "columns": {"id": {"kind": "key"}}}, "names a column that 'columns' does not list"),
        ({"key": "age", "columns": {"age": {"kind": "numerical"}}}, "must have kind 'key'"),
        ({"key": "id", "entity": "id", "columns": {"id": {"kind": "key"}}}, "'entity' must differ"),
        ({**BASE, "table": "../outside.parquet"}, "inside the corpus root"),
        ({**BASE, "table": "records.xlsx"}, "must end in one of"),
        ({**BASE, "version": 2}, "not supported"),
        ({**BASE, "surprise": 1}, "unknown key (known: "),
        (with_columns(x={"kind": "categorical", "domian": ["a"]}), "did you mean 'domain'?"),
        ({"key": "id", "columns": {}}, "'columns' is empty"),
    ],
)
def test_invalid_schemas_name_the_entry_to_fix(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(SchemaError, match="invalid") as info:
        schema_from_dict(data, source="schema.yaml")
    assert fragment in str(info.value)


def test_category_meanings_round_trip(tmp_path: Path) -> None:
    schema = schema_from_dict(
        with_columns(x={"kind": "categorical", "domain": ["a", "b"], "meanings": {"a": "the first letter"}}),
        source="schema.yaml",
    )
    path = tmp_path / "schema.yaml"
    path.write_text(dump_schema(schema), encoding="utf-8")
    assert load_schema(path) == schema
    assert load_schema(path).columns["x"].meanings == {"a": "the first letter"}


def test_non_mapping_is_refused() -> None:
    with pytest.raises(SchemaError, match="expected a mapping"):
        schema_from_dict(["key"], source="schema.yaml")


def test_yaml_round_trip_is_exact(tmp_path: Path) -> None:
    from privsynth.data.demo import demo_schema

    schema = demo_schema()
    path = tmp_path / "schema.yaml"
    path.write_text(dump_schema(schema, header="# hello\n"), encoding="utf-8")
    assert load_schema(path) == schema
    assert path.read_text().startswith("# hello\n")


def test_missing_and_broken_schema_files(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="privsynth init"):
        load_schema(tmp_path / "schema.yaml")
    (tmp_path / "schema.yaml").write_text("key: [unclosed", encoding="utf-8")
    with pytest.raises(SchemaError, match="not valid YAML"):
        load_schema(tmp_path / "schema.yaml")


def test_names_and_unit_of_privacy() -> None:
    schema = Schema(
        key="id",
        entity="person",
        max_records_per_entity=3,
        columns={
            "id": ColumnSpec(kind=ColumnKind.KEY),
            "person": ColumnSpec(kind=ColumnKind.KEY),
            "age": ColumnSpec(kind=ColumnKind.NUMERICAL),
        },
    )
    assert schema.names(ColumnKind.KEY) == ["id", "person"]
    assert schema.names() == ["id", "person", "age"]
    assert "person identified by 'person'" in schema.unit_of_privacy
    assert "up to 3 record(s)" in schema.unit_of_privacy


def test_every_declared_public_field_is_listed_as_such() -> None:
    # A summary and a release's datasheet list a column as declared public when it carries any of these fields;
    # a public field missing from the list would be used exactly yet never disclosed as declared.
    import pandas as pd

    from privsynth.data.corpus import Corpus
    from privsynth.data.schema import PUBLIC_FIELDS
    from privsynth.data.summary import summarize

    assert set(PUBLIC_FIELDS) == {
        name for name, field in ColumnSpec.model_fields.items() if field.description and "ublic" in field.description
    }
    schema = schema_from_dict(
        with_columns(x={"kind": "categorical", "domain": ["a"], "meanings": {"a": "the first letter"}}),
        source="schema.yaml",
    )
    summary = summarize(Corpus(records=pd.DataFrame({"id": ["r1"], "x": ["a"]}), schema=schema, root=Path()))
    assert {c.name: c.declared_public for c in summary.columns}["x"] == ("domain", "meanings")
