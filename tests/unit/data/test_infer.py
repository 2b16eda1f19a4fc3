from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from privsynth.data.corpus import read_table
from privsynth.data.infer import find_table, infer_schema
from privsynth.data.schema import ColumnKind, PiiType
from privsynth.errors import CorpusReadError


def test_infers_demo_kinds_from_csv(demo_dir: Path, tmp_path: Path) -> None:
    from privsynth.data.corpus import read_corpus, write_corpus

    write_corpus(read_corpus(demo_dir), tmp_path / "c", table_format="csv")
    (tmp_path / "c" / "schema.yaml").unlink()
    inference = infer_schema(read_table(tmp_path / "c" / "records.csv"), table="records.csv")
    schema = inference.schema
    assert schema.key == "record_id"
    assert schema.entity == "patient_id"
    truth = {
        "name": PiiType.PERSON,
        "ssn": PiiType.SSN,
        "email": PiiType.EMAIL,
        "phone": PiiType.PHONE,
        "address": PiiType.ADDRESS,
        "mrn": PiiType.MRN,
        "date_of_birth": PiiType.DATE_OF_BIRTH,
    }
    for name, pii in truth.items():
        assert schema.columns[name].kind is ColumnKind.IDENTIFIER
        assert schema.columns[name].pii is pii
    kinds = {n: c.kind for n, c in schema.columns.items()}
    assert kinds["visit_date"] is ColumnKind.DATETIME
    assert kinds["age"] is ColumnKind.NUMERICAL and schema.columns["age"].integer
    assert kinds["bmi"] is ColumnKind.NUMERICAL and not schema.columns["bmi"].integer
    assert kinds["diagnosis"] is ColumnKind.CATEGORICAL
    assert kinds["smoker"] is ColumnKind.BOOLEAN
    assert kinds["note"] is ColumnKind.TEXT
    assert kinds["scan"] is ColumnKind.IMAGE


def test_never_declares_observed_values_public() -> None:
    raw = pd.DataFrame({"id": ["1", "2", "3"], "colour": ["red", "blue", "red"], "size": [1.0, 2.0, 3.0]})
    schema = infer_schema(raw, table="t.csv").schema
    for spec in schema.columns.values():
        assert spec.domain is None and spec.bounds is None and spec.date_range is None


@pytest.mark.parametrize(
    ("values", "pii"),
    [
        (["a.b@example.org", "c@d.com", "x_y+z@mail.co.uk"], PiiType.EMAIL),
        (["123-45-6789", "987-65-4321", "555-12-3456"], PiiType.SSN),
        (["(555) 123-4567", "555.123.4567", "+1 555 123 4567"], PiiType.PHONE),
        (["10.0.0.1", "192.168.1.20", "8.8.8.8"], PiiType.IP_ADDRESS),
    ],
)
def test_identifier_types_from_values(values: list[str], pii: PiiType) -> None:
    raw = pd.DataFrame({"id": ["1", "2", "3"], "contact": values})
    spec = infer_schema(raw, table="t.csv").schema.columns["contact"]
    assert spec.kind is ColumnKind.IDENTIFIER and spec.pii is pii


def test_numeric_ids_are_keys_not_numbers() -> None:
    raw = pd.DataFrame({"id": [1, 2, 3], "visit_id": [10, 11, 12], "x": [1.5, 2.5, 1.5]})
    schema = infer_schema(raw, table="t.parquet").schema
    assert schema.key == "id"
    assert schema.columns["visit_id"].kind is ColumnKind.KEY


def test_no_key_is_a_clear_error() -> None:
    raw = pd.DataFrame({"colour": ["red", "red"]})
    with pytest.raises(CorpusReadError, match="unique record id"):
        infer_schema(raw, table="t.csv")


def test_find_table(tmp_path: Path) -> None:
    with pytest.raises(CorpusReadError, match="found none"):
        find_table(tmp_path)
    (tmp_path / "a.csv").write_text("id\n1\n")
    assert find_table(tmp_path) == tmp_path / "a.csv"
    (tmp_path / "b.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(CorpusReadError, match=r"a\.csv, b\.jsonl"):
        find_table(tmp_path)
    with pytest.raises(CorpusReadError, match="does not exist"):
        find_table(tmp_path / "nope")
