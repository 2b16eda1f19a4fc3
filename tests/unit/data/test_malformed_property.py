"""Property test: any malformed corpus gives a clear error naming the problem, exit code 2, nothing written."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from privsynth.cli import main
from privsynth.data.images import encode_png
from privsynth.data.schema import dump_schema, schema_from_dict

SENTINEL = "Ottoline Vexhammer"  # planted in the records: must never be printed

SCHEMA = schema_from_dict(
    {
        "table": "records.jsonl",
        "key": "id",
        "columns": {
            "id": {"kind": "key"},
            "name": {"kind": "identifier", "pii": "person"},
            "age": {"kind": "numerical", "integer": True, "bounds": [0, 120], "nullable": False},
            "group": {"kind": "categorical", "domain": ["a", "b"]},
            "seen": {"kind": "datetime"},
            "note": {"kind": "text", "max_length": 200},
            "scan": {"kind": "image", "image_size": [4, 4]},
        },
    },
    source="test",
)


def base_rows() -> list[dict[str, object]]:
    return [
        {
            "id": f"r{i}",
            "name": SENTINEL if i == 1 else f"Person {i}",
            "age": 30 + i,
            "group": "ab"[i % 2],
            "seen": "2021-05-0" + str(i + 1),
            "note": f"note {i} about {SENTINEL}" if i == 2 else f"note {i}",
            "scan": f"img/r{i}.png",
        }
        for i in range(4)
    ]


def write(root: Path, rows: list[dict[str, object]], *, raw_table: bytes | None = None) -> None:
    (root / "img").mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (root / "img" / f"r{i}.png").write_bytes(encode_png(Image.new("L", (4, 4), color=i * 20)))
    (root / "schema.yaml").write_text(dump_schema(SCHEMA), encoding="utf-8")
    if raw_table is not None:
        (root / "records.jsonl").write_bytes(raw_table)
        return
    lines = [json.dumps(r, allow_nan=True) for r in rows]
    (root / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


Mutation = Callable[[Path, list[dict[str, object]], int], str]


def set_cell(column: str, value: object, code: str) -> Mutation:
    def apply(root: Path, rows: list[dict[str, object]], row: int) -> str:
        rows[row][column] = value
        write(root, rows)
        return code

    return apply


def broken_image(root: Path, rows: list[dict[str, object]], row: int) -> str:
    write(root, rows)
    (root / "img" / f"r{row}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return "image-corrupt"


def outside_symlink(root: Path, rows: list[dict[str, object]], row: int) -> str:
    write(root, rows)
    secret = root.parent / "secret.png"
    secret.write_bytes(encode_png(Image.new("L", (4, 4))))
    target = root / "img" / f"r{row}.png"
    target.unlink()
    target.symlink_to(secret)
    return "image-path"


def bad_encoding(root: Path, rows: list[dict[str, object]], row: int) -> str:
    write(root, rows)
    text = (root / "records.jsonl").read_bytes()
    marker = f"note {row}".encode()
    if marker not in text:  # row 2's note holds the sentinel
        marker = b"note 2 about"
    (root / "records.jsonl").write_bytes(text.replace(marker, b"\xff\xfe" + marker, 1))
    return "encoding"


def empty_file(root: Path, rows: list[dict[str, object]], row: int) -> str:
    del row
    write(root, rows, raw_table=b"")
    return "empty"


def not_json(root: Path, rows: list[dict[str, object]], row: int) -> str:
    del row
    write(root, rows, raw_table=b'{"id": "r0", "name": "Ottoline Vexhammer"\n')
    return "not valid JSON"


MUTATIONS: list[Mutation] = [
    set_cell("scan", "../../etc/passwd", "image-path"),
    set_cell("scan", "/etc/passwd", "image-path"),
    set_cell("scan", "img/../../outside.png", "image-path"),
    set_cell("scan", "img/nope.png", "image-missing"),
    set_cell("age", "forty", "type"),
    set_cell("age", math.nan, "missing"),
    set_cell("age", math.inf, "not-finite"),
    set_cell("age", 1e6, "domain"),
    set_cell("age", [1, 2], "type"),
    set_cell("group", "zzz", "domain"),
    set_cell("group", {"nested": 1}, "type"),
    set_cell("seen", "not a date", "type"),
    set_cell("note", "w" * 5000, "oversized"),
    set_cell("note", 3.5, "type"),
    set_cell("id", "r0", "duplicate-key"),
    broken_image,
    outside_symlink,
    bad_encoding,
    empty_file,
    not_json,
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=st.sampled_from(MUTATIONS), row=st.integers(min_value=1, max_value=3))
def test_malformed_corpus_exits_2_and_writes_nothing(mutation: Mutation, row: int, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "corpus"
        root.mkdir()
        expected = mutation(root, base_rows(), row)
        out = Path(tmp) / "out"
        capsys.readouterr()
        code = main(["convert", str(root), str(out)])
        captured = capsys.readouterr()
        assert code == 2, captured
        assert expected in captured.err
        assert "Traceback" not in captured.err
        assert SENTINEL not in captured.out + captured.err
        assert not out.exists()
        assert sorted(p.name for p in Path(tmp).iterdir() if not p.name.startswith("secret")) == ["corpus"]


@settings(max_examples=30, deadline=None)
@given(junk=st.binary(min_size=1, max_size=200))
def test_random_bytes_as_an_image_never_crash(junk: bytes) -> None:
    from privsynth.data.validate import coerce_records

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = base_rows()
        rows[0]["scan"] = junk
        frame = pd.DataFrame(rows, dtype=object)
        write(root, base_rows())
        _, problems = coerce_records(frame, SCHEMA, root)
        assert [p.code for p in problems] in (["image-corrupt"], ["image-size"], [])
