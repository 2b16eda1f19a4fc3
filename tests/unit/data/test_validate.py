from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from privsynth.data.images import encode_png
from privsynth.data.schema import Schema, schema_from_dict
from privsynth.data.validate import Limits, coerce_records

SECRET = "Zebulon-Quixote-7731"  # a value that must never appear in a message

COLUMNS = {
    "id": {"kind": "key"},
    "age": {"kind": "numerical", "integer": True, "bounds": [0, 120]},
    "weight": {"kind": "numerical", "nullable": False},
    "sex": {"kind": "categorical", "domain": ["F", "M"]},
    "city": {"kind": "categorical"},
    "seen": {"kind": "datetime", "date_range": ["2020-01-01", "2020-12-31"]},
    "smoker": {"kind": "boolean"},
    "note": {"kind": "text", "max_length": 50},
    "name": {"kind": "identifier", "pii": "person"},
    "scan": {"kind": "image", "image_size": [4, 4]},
}


def schema() -> Schema:
    return schema_from_dict({"key": "id", "columns": COLUMNS}, source="test")


def good_rows(root: Path) -> pd.DataFrame:
    png = encode_png(Image.new("L", (4, 4), color=9))
    (root / "img").mkdir(exist_ok=True)
    (root / "img" / "a.png").write_bytes(png)
    return pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "age": ["31", "45", None],
            "weight": [70.5, 80.0, 65.25],
            "sex": ["F", "M", None],
            "city": ["Oslo", SECRET, "Lima"],
            "seen": ["2020-03-01", "2020-04-02T10:00:00", None],
            "smoker": ["yes", "0", None],
            "note": ["fine", None, "ok"],
            "name": [SECRET, "B", "C"],
            "scan": ["img/a.png", png, None],
        },
        dtype=object,
    )


def test_valid_records_get_canonical_types(tmp_path: Path) -> None:
    table, problems = coerce_records(good_rows(tmp_path), schema(), tmp_path)
    assert problems == []
    assert str(table["age"].dtype) == "Int64"
    assert table["age"].tolist()[:2] == [31, 45]
    assert table["age"].isna().tolist() == [False, False, True]
    assert table["weight"].dtype == np.float64
    assert table["seen"].dtype == "datetime64[ns]"
    assert table["seen"].iloc[1] == pd.Timestamp("2020-04-02T10:00:00")
    assert str(table["smoker"].dtype) == "boolean"
    assert table["smoker"].tolist()[:2] == [True, False]
    assert table["sex"].tolist() == ["F", "M", None]
    assert isinstance(table["scan"].iloc[1], bytes)


def mutate(frame: pd.DataFrame, column: str, row: int, value: object) -> pd.DataFrame:
    out = frame.copy()
    out.at[row, column] = value
    return out


@pytest.mark.parametrize(
    ("column", "row", "value", "code"),
    [
        ("age", 0, "thirty", "type"),
        ("age", 0, 31.5, "type"),
        ("age", 0, 200, "domain"),
        ("age", 0, True, "type"),
        ("weight", 1, None, "missing"),
        ("weight", 1, math.inf, "not-finite"),
        ("weight", 1, "-inf", "not-finite"),
        ("sex", 0, "X", "domain"),
        ("city", 0, ["a", "list"], "type"),
        ("city", 0, "x" * 20_000, "oversized"),
        ("seen", 0, "yesterday", "type"),
        ("seen", 0, "2019-12-31", "domain"),
        ("seen", 0, 12345, "type"),
        ("smoker", 0, "maybe", "type"),
        ("note", 0, "y" * 51, "oversized"),
        ("note", 0, b"\xff\xfe bad utf-8", "encoding"),
        ("note", 0, "lone \udcff surrogate", "encoding"),
        ("note", 0, 42, "type"),
        ("scan", 0, "../../etc/passwd", "image-path"),
        ("scan", 0, "/etc/passwd", "image-path"),
        ("scan", 0, "img/missing.png", "image-missing"),
        ("scan", 0, b"garbage", "image-corrupt"),
        ("scan", 0, encode_png(Image.new("L", (5, 4))), "image-size"),
        ("id", 1, "a", "duplicate-key"),
        ("id", 1, None, "missing"),
    ],
)
def test_each_malformation_is_reported_with_column_and_record(
    tmp_path: Path, column: str, row: int, value: object, code: str
) -> None:
    frame = mutate(good_rows(tmp_path), column, row, value)
    _, problems = coerce_records(frame, schema(), tmp_path)
    assert [p.code for p in problems] == [code], problems
    problem = problems[0]
    assert problem.column == column
    assert problem.record in ("'a'", "'b'", f"row {row + 1}")
    rendered = str(problem)
    assert SECRET not in rendered
    if isinstance(value, str) and len(value) > 3:
        assert value not in rendered


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    frame = good_rows(tmp_path)
    frame.at[0, "age"] = "x"
    frame.at[1, "sex"] = "Q"
    frame.at[2, "scan"] = "../x.png"
    frame["extra"] = 1
    frame = frame.drop(columns=["city"])
    _, problems = coerce_records(frame, schema(), tmp_path)
    codes = sorted(p.code for p in problems)
    assert codes == ["domain", "image-path", "missing-column", "type", "unknown-column"]


def test_empty_corpus_is_a_problem(tmp_path: Path) -> None:
    frame = good_rows(tmp_path).iloc[0:0]
    _, problems = coerce_records(frame, schema(), tmp_path)
    assert [p.code for p in problems] == ["empty"]


def test_text_limit_is_global_as_well(tmp_path: Path) -> None:
    frame = good_rows(tmp_path)
    spec = {**COLUMNS, "note": {"kind": "text"}}
    sch = schema_from_dict({"key": "id", "columns": spec}, source="t")
    frame.at[0, "note"] = "z" * 101
    _, problems = coerce_records(frame, sch, tmp_path, Limits(max_text_chars=100))
    assert [p.code for p in problems] == ["oversized"]


def test_timezones_are_converted_to_naive_utc(tmp_path: Path) -> None:
    frame = mutate(good_rows(tmp_path), "seen", 0, "2020-03-01T10:00:00+02:00")
    table, problems = coerce_records(frame, schema(), tmp_path)
    assert problems == []
    assert table["seen"].iloc[0] == pd.Timestamp("2020-03-01T08:00:00")
