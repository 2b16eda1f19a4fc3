"""Batch-by-batch validation agrees with reading the whole table, and finds what spans batches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privsynth.data.corpus import read_corpus, write_corpus
from privsynth.data.stream import table_batches, validate_streaming
from privsynth.data.summary import summarize
from privsynth.errors import CorpusReadError, CorpusValidationError


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_the_streaming_summary_is_the_whole_table_summary(demo_dir: Path, tmp_path: Path, fmt: str) -> None:
    folder = write_corpus(read_corpus(demo_dir), tmp_path / fmt, table_format=fmt)
    assert validate_streaming(folder, batch_rows=7) == summarize(read_corpus(folder))


def _keyed(tmp_path: Path, keys: list[object], parts: int = 3) -> Path:
    folder = tmp_path / "corpus"
    (folder / "records.parquet").mkdir(parents=True)
    (folder / "schema.yaml").write_text(
        "table: records.parquet\nkey: id\ncolumns:\n  id: {kind: key}\n  x: {kind: numerical}\n", encoding="utf-8"
    )
    size = -(-len(keys) // parts)
    for i in range(parts):
        chunk = keys[i * size : (i + 1) * size]
        table = pa.table({"id": pa.array(chunk, type=pa.string()), "x": [1.0] * len(chunk)})
        pq.write_table(table, folder / "records.parquet" / f"part-{i:05d}.parquet")
    return folder


def test_a_key_repeated_in_a_later_batch_is_reported_once_by_its_key(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(12)]
    keys[10] = "k2"  # the third file repeats a key of the first
    with pytest.raises(CorpusValidationError) as caught:
        validate_streaming(_keyed(tmp_path, keys), batch_rows=2)
    problems = caught.value.problems
    assert [(p.code, p.record) for p in problems] == [("duplicate-key", "'k2'")]


def test_distinct_keys_pass_and_rows_are_numbered_across_batches(tmp_path: Path) -> None:
    assert validate_streaming(_keyed(tmp_path, [f"k{i}" for i in range(12)]), batch_rows=2).records == 12
    shutil.rmtree(tmp_path / "corpus")
    keys: list[object] = [f"k{i}" for i in range(12)]
    keys[9] = None  # a missing key in a later batch: named by its row in the whole table
    with pytest.raises(CorpusValidationError) as caught:
        validate_streaming(_keyed(tmp_path, keys), batch_rows=2)
    assert [(p.code, p.record) for p in caught.value.problems] == [("missing", "row 10")]


def test_a_column_problem_is_reported_once_not_once_per_batch(demo_dir: Path, tmp_path: Path) -> None:
    folder = write_corpus(read_corpus(demo_dir), tmp_path / "c", table_format="parquet")
    frame = pd.read_parquet(folder / "records.parquet").assign(extra=1)
    frame.to_parquet(folder / "records.parquet", index=False)
    with pytest.raises(CorpusValidationError) as caught:
        validate_streaming(folder, batch_rows=10)
    assert [p.code for p in caught.value.problems] == ["unknown-column"]


def test_batches_cover_the_table_in_order(demo_dir: Path) -> None:
    whole = read_corpus(demo_dir).records
    keys = [k for batch in table_batches(demo_dir / "records.parquet", 16) for k in batch["record_id"]]
    assert keys == whole["record_id"].tolist()


def test_json_lines_are_read_in_batches_with_the_whole_files_columns_and_values(tmp_path: Path) -> None:
    # A key absent from every line of a batch is still a column of that batch, and whole numbers stay whole where
    # another line lacks the key: each batch holds exactly the whole table's rows.
    from privsynth.data.corpus import read_table

    path = tmp_path / "records.jsonl"
    lines = ['{"id": 1, "x": 2}', '{"id": 2}', "", '{"id": 3, "x": 4}', '{"id": 4, "y": "late"}', '{"id": 5, "x": 6}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = read_table(path)
    assert whole.columns.tolist() == ["id", "x", "y"] and whole["x"].tolist() == [2, None, 4, None, 6]
    batches = list(table_batches(path, 2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(b.columns.tolist() == ["id", "x", "y"] for b in batches)
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), whole)
    path.write_text('{"id": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(CorpusReadError, match="line 2 is not a JSON object"):
        list(table_batches(path, 2))
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(CorpusReadError, match="no records found"):
        list(table_batches(path, 2))
