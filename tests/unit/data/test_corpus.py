from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from privsynth.data.atomic import atomic_dir
from privsynth.data.corpus import corpora_equal, read_corpus, write_corpus
from privsynth.errors import CorpusReadError, CorpusValidationError, OutputExistsError


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_demo_round_trip_is_identical(demo_dir: Path, tmp_path: Path, fmt: str) -> None:
    first = read_corpus(demo_dir)
    write_corpus(first, tmp_path / "a", table_format=fmt)
    second = read_corpus(tmp_path / "a")
    write_corpus(second, tmp_path / "b", table_format="parquet")
    third = read_corpus(tmp_path / "b")
    for other in (second, third):
        assert corpora_equal(first, other)
        pd.testing.assert_frame_equal(first.records, other.records)
    for rel in first.records["scan"]:
        assert (tmp_path / "b" / rel).read_bytes() == (demo_dir / rel).read_bytes()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_texts_with_carriage_returns_and_odd_breaks_survive_every_format(
    demo_dir: Path, tmp_path: Path, fmt: str
) -> None:
    first = read_corpus(demo_dir)
    records = first.records.copy()
    records.loc[0, "note"] = "line one\rline two\x85next\u2028sep"  # a bare CR: no quote-forcing newline
    records.loc[1, "note"] = 'a "quoted" word\r\nand a Windows line break'
    records.loc[2, "note"] = None
    first = first.with_records(records)
    write_corpus(first, tmp_path / "a", table_format=fmt)
    second = read_corpus(tmp_path / "a")
    pd.testing.assert_frame_equal(first.records, second.records)


def test_image_bytes_survive_every_format(demo_dir: Path, tmp_path: Path) -> None:
    corpus = read_corpus(demo_dir)
    as_bytes = corpus.records.copy()
    as_bytes["scan"] = [(demo_dir / rel).read_bytes() for rel in as_bytes["scan"]]
    inline = corpus.with_records(as_bytes)
    for fmt in ("parquet", "jsonl", "csv"):
        write_corpus(inline, tmp_path / fmt, table_format=fmt)
        back = read_corpus(tmp_path / fmt)
        assert corpora_equal(inline, back)
    # CSV cannot hold bytes: they become files referenced by relative paths
    assert read_corpus(tmp_path / "csv").records["scan"].iloc[0].startswith("images/")


def test_write_refuses_to_overwrite_without_force(demo_dir: Path, tmp_path: Path) -> None:
    corpus = read_corpus(demo_dir)
    target = tmp_path / "out"
    write_corpus(corpus, target)
    with pytest.raises(OutputExistsError, match="--force"):
        write_corpus(corpus, target)
    write_corpus(corpus, target, force=True, table_format="csv")
    assert (target / "records.csv").exists()
    assert not (target / "records.parquet").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_read_errors_are_user_errors(tmp_path: Path, demo_dir: Path) -> None:
    with pytest.raises(Exception, match="privsynth init"):
        read_corpus(tmp_path)
    broken = tmp_path / "c"
    broken.mkdir()
    (broken / "schema.yaml").write_text((demo_dir / "schema.yaml").read_text())
    (broken / "records.parquet").write_bytes(b"")
    with pytest.raises(CorpusReadError, match="empty"):
        read_corpus(broken)
    (broken / "records.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(CorpusReadError, match="cannot be read as parquet"):
        read_corpus(broken)


def test_validation_error_lists_every_problem(demo_copy: Path) -> None:
    (demo_copy / "images" / "R000001.png").write_bytes(b"broken")
    (demo_copy / "images" / "R000002.png").unlink()
    with pytest.raises(CorpusValidationError) as info:
        read_corpus(demo_copy)
    codes = sorted(p.code for p in info.value.problems)
    assert codes == ["image-corrupt", "image-missing"]
    assert "nothing was computed or written" in str(info.value)


def test_a_nul_byte_in_a_csv_cell_is_reported_not_cut(demo_copy: Path) -> None:
    # Before: the CSV parser cut '2021-04-05: Fred <NUL>ZZSECRET' at the NUL and the fit exited 0.
    from privsynth.data.corpus import write_corpus

    corpus = read_corpus(demo_copy)
    frame = corpus.records.copy()
    key = frame[corpus.schema.key].iloc[0]
    frame.loc[frame.index[0], "note"] = "2021-04-05: Fred \x00ZZSECRET"
    target = demo_copy.parent / "csv"
    write_corpus(type(corpus)(frame, corpus.schema, corpus.root), target, table_format="csv")
    assert b"\x00" in (target / "records.csv").read_bytes()
    with pytest.raises(CorpusValidationError) as info:
        read_corpus(target)
    assert [(p.code, p.column) for p in info.value.problems] == [("nul", "note")]
    assert str(key) in str(info.value) and "ZZSECRET" not in str(info.value)


def test_the_fingerprint_ignores_schema_formatting_and_column_order(demo_copy: Path) -> None:
    # Before: swapping two lines of schema.yaml (data unchanged) changed the fingerprint, so a cap started afresh.
    import yaml

    from privsynth.data.fingerprint import corpus_fingerprint

    before = corpus_fingerprint(read_corpus(demo_copy))
    schema = yaml.safe_load((demo_copy / "schema.yaml").read_text())
    names = list(schema["columns"])
    names[2], names[3] = names[3], names[2]
    schema["columns"] = {n: schema["columns"][n] for n in reversed(names)}
    (demo_copy / "schema.yaml").write_text(
        "# reformatted\n" + yaml.safe_dump(schema, default_flow_style=True, width=60)
    )
    table = demo_copy / schema["table"]
    frame = pd.read_parquet(table)
    frame[list(reversed(frame.columns))].sample(frac=1.0, random_state=0).to_parquet(table, index=False)
    assert corpus_fingerprint(read_corpus(demo_copy)) == before


def test_a_copied_corpus_is_owner_only_unless_asked(demo_dir: Path, tmp_path: Path) -> None:
    # 'privsynth convert' copies real records: others may not read the copy, whatever the umask
    corpus = read_corpus(demo_dir)
    assert (write_corpus(corpus, tmp_path / "copy").stat().st_mode & 0o777) == 0o700
    shared = write_corpus(corpus, tmp_path / "shared", private=False)
    mask = os.umask(0o022)
    os.umask(mask)
    assert shared.stat().st_mode & 0o777 == 0o777 & ~mask


def test_a_parquet_table_may_be_a_folder_of_parts_or_a_hive_dataset(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from privsynth.data.corpus import read_table

    parts = tmp_path / "records.parquet"
    parts.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "x": [1, 2]}), parts / "part-00000.parquet")
    pq.write_table(pa.table({"id": ["c"], "x": [3]}), parts / "part-00001.parquet")
    (parts / "_temporary" / "0").mkdir(parents=True)  # an unfinished Spark job's leftovers are not data
    pq.write_table(pa.table({"id": ["z"], "x": [9]}), parts / "_temporary" / "0" / "part-00000.parquet")
    frame = read_table(parts)
    assert frame["id"].tolist() == ["a", "b", "c"] and frame["x"].tolist() == [1, 2, 3]

    hive = tmp_path / "hive.parquet"
    pq.write_to_dataset(
        pa.table({"id": ["a", "b", "c"], "zip": ["02139", "10001", "10001"]}), hive, partition_cols=["zip"]
    )
    frame = read_table(hive).sort_values("id").reset_index(drop=True)
    assert frame["id"].tolist() == ["a", "b", "c"]
    assert frame["zip"].tolist() == ["02139", "10001", "10001"]  # a column again, leading zero kept

    outside = tmp_path / "outside.parquet"
    pq.write_table(pa.table({"id": ["x"], "x": [0]}), outside)
    (parts / "part-00002.parquet").symlink_to(outside)  # a link could pull any file into the corpus
    with pytest.raises(CorpusReadError, match="is a link"):
        read_table(parts)

    (tmp_path / "empty.parquet").mkdir()
    with pytest.raises(CorpusReadError, match=r"holds no \.parquet files"):
        read_table(tmp_path / "empty.parquet")
