"""The corpus: one records table + its schema + the root folder its image paths are relative to.

On disk a corpus is a folder::

    corpus/
      schema.yaml          # column kinds and declared-public metadata
      records.parquet      # or records.csv / records.jsonl (named by schema.yaml's 'table')
      images/...           # files referenced by image columns (relative paths)

Real and synthetic corpora share this layout, so every tool that reads one reads the other.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from PIL import Image

from privsynth.data.atomic import atomic_dir
from privsynth.data.images import (
    TAR_MEMBER,
    ImageLimits,
    encode_data_uri,
    load_image,
    read_cell_bytes,
)
from privsynth.data.schema import SCHEMA_FILE, TABLE_FORMATS, ColumnKind, Schema, dump_schema, load_schema
from privsynth.data.validate import Limits, coerce_records
from privsynth.errors import CorpusReadError, CorpusValidationError, UserError


@dataclass(frozen=True)
class Corpus:
    """A validated records table with canonical column types (see :mod:`privsynth.data.validate`)."""

    records: pd.DataFrame
    schema: Schema
    root: Path

    def __len__(self) -> int:
        return len(self.records)

    def image(self, column: str, row: int) -> Image.Image:
        """The decoded image of one cell (paths stay confined to the corpus root)."""
        return load_image(self.root, self.records[column].iloc[row])

    def with_records(self, records: pd.DataFrame) -> Corpus:
        """The same schema and root with other records (a subset, or synthetic ones)."""
        return Corpus(records=records.reset_index(drop=True), schema=self.schema, root=self.root)


def schema_path(path: Path) -> Path:
    """The ``schema.yaml`` of a corpus folder (or the schema file itself)."""
    if not path.exists():
        raise CorpusReadError(f"{path} does not exist; check the path of the corpus folder")
    if path.is_dir():
        return path / SCHEMA_FILE
    if path.name == SCHEMA_FILE or path.suffix in {".yaml", ".yml"}:
        return path
    raise CorpusReadError(f"{path}: pass the corpus folder (the one holding {SCHEMA_FILE})")


def read_table(path: Path) -> pd.DataFrame:
    """Read a table file as raw values (no type inference beyond what the format stores)."""
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CorpusReadError(f"{path}: unknown table format; use .parquet, .csv or .jsonl")
    if fmt == "parquet" and path.is_dir():
        return _read_parquet_dataset(path)
    if not path.is_file():
        raise CorpusReadError(f"{path}: table file not found; check 'table' in {SCHEMA_FILE}")
    if path.stat().st_size == 0:
        raise CorpusReadError(f"{path}: the table file is empty; export the records again")
    try:
        if fmt == "parquet":
            return pq.read_table(path).to_pandas()
        if fmt == "csv":
            # Everything as text: the schema decides types, so leading zeros (ZIP, MRN) survive. The C parser cuts
            # a cell at a NUL byte; the Python one keeps it, so validation names the cell instead of a silent cut.
            return pd.read_csv(
                path,
                engine="python" if _has_nul(path) else "c",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8",
                encoding_errors="surrogateescape",
            )
        return _read_jsonl(path)
    except UserError:
        raise
    except (OSError, ValueError, pa.ArrowException, pd.errors.ParserError) as exc:
        raise CorpusReadError(f"{path}: cannot be read as {fmt} ({type(exc).__name__}); check the file") from None


def _read_parquet_dataset(path: Path) -> pd.DataFrame:
    """A partitioned table: a folder of Parquet files, read in file-name order.

    The folder holds ``part-*.parquet`` files (as Spark and sharded sampling write them) or a Hive-partitioned
    dataset (``year=2024/...``), whose partition values become columns.
    """
    try:
        return parquet_dataset(path).to_table().to_pandas()
    except CorpusReadError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise CorpusReadError(
            f"{path}: cannot be read as a Parquet dataset ({type(exc).__name__}); check its files"
        ) from None


def parquet_parts(path: Path) -> list[Path]:
    """The part files of a partitioned table, in name order.

    As Spark and pyarrow do, files and folders whose name starts with ``_`` or ``.`` are not data (``_SUCCESS``,
    ``_temporary/`` of an unfinished job, hidden files); links are refused, so every part lies inside the folder.
    """
    parts = []
    for candidate in sorted(path.rglob("*.parquet")):
        relative = candidate.relative_to(path)
        if any(part.startswith(("_", ".")) for part in relative.parts):
            continue
        if any((path / Path(*relative.parts[: i + 1])).is_symlink() for i in range(len(relative.parts))):
            raise CorpusReadError(f"{path}: {relative} is a link; copy the file into the table folder instead")
        if candidate.is_file():
            parts.append(candidate)
    if not parts:
        raise CorpusReadError(f"{path}: the table folder holds no .parquet files")
    return parts


def parquet_dataset(path: Path) -> pads.Dataset:
    """A partitioned table as a pyarrow dataset; Hive partition values stay text (a ZIP keeps its leading zero)."""
    parts = parquet_parts(path)
    keys: list[str] = []  # the Hive partition keys (folders named KEY=VALUE), typed as text
    for part in parts:
        for folder in part.relative_to(path).parts[:-1]:
            name = folder.split("=", 1)[0]
            if "=" in folder and name not in keys:
                keys.append(name)
    partitioning = pads.HivePartitioning(pa.schema([(k, pa.string()) for k in keys]))
    return pads.dataset(
        [str(p) for p in parts],
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(path),
    )


def write_part(records: pd.DataFrame, schema: Schema, path: Path) -> None:
    """One part file of a partitioned Parquet table (canonical records, the schema's column types)."""
    pq.write_table(_to_arrow(records, schema), path)


def _has_nul(path: Path) -> bool:
    with path.open("rb") as handle:
        return any(b"\x00" in block for block in iter(lambda: handle.read(1 << 20), b""))


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON Lines file, one object per non-blank line; errors name the line."""
    with path.open("r", encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise CorpusReadError(f"{path}: line {number} is not valid JSON") from None
            if not isinstance(row, dict):
                raise CorpusReadError(f"{path}: line {number} is not a JSON object (one record per line)")
            yield row


def _jsonl_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Records as object columns, each value as the file wrote it (a key absent from a line is None).

    Built column by column, not inferred: a whole number stays one (``7``, not ``7.0``) where another line lacks
    the key, so a batch holds the same values as the whole table.
    """
    return pd.DataFrame({c: pd.Series([row.get(c) for row in rows], dtype=object) for c in columns})


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = list(_jsonl_rows(path))
    if not rows:
        raise CorpusReadError(f"{path}: no records found")
    return _jsonl_frame(rows, list(dict.fromkeys(key for row in rows for key in row)))


def jsonl_batches(path: Path, batch_rows: int) -> Iterator[pd.DataFrame]:
    """A JSON Lines table ``batch_rows`` records at a time, with the columns of the whole file in every batch.

    Two passes over the file: the first collects the keys (columns in order of first appearance, as
    :func:`read_table` orders them), the second yields the records. Memory: one batch and the column names.
    """
    columns = list(dict.fromkeys(key for row in _jsonl_rows(path) for key in row))
    batch: list[dict[str, Any]] = []
    seen = False
    for row in _jsonl_rows(path):
        batch.append(row)
        seen = True
        if len(batch) == batch_rows:
            yield _jsonl_frame(batch, columns)
            batch = []
    if batch:
        yield _jsonl_frame(batch, columns)
    if not seen:
        raise CorpusReadError(f"{path}: no records found")


def read_corpus(path: Path | str, *, limits: Limits | None = None) -> Corpus:
    """Read and validate a corpus folder; raise :class:`CorpusValidationError` listing every problem."""
    schema_file = schema_path(Path(path))
    schema = load_schema(schema_file)
    root = schema_file.parent
    raw = read_table(root / schema.table)
    records, problems = coerce_records(raw, schema, root, limits)
    if problems:
        raise CorpusValidationError(problems, source=str(root))
    return Corpus(records=records, schema=schema, root=root)


def _to_arrow(records: pd.DataFrame, schema: Schema) -> pa.Table:
    arrays = {}
    for name, spec in schema.columns.items():
        s = records[name]
        if spec.kind is ColumnKind.IMAGE:
            has_bytes = any(isinstance(v, bytes) for v in s)
            arrays[name] = pa.array(list(s), type=pa.binary() if has_bytes else pa.string())
        elif spec.kind is ColumnKind.NUMERICAL:
            arrays[name] = pa.array(s, type=pa.int64() if spec.integer else pa.float64(), from_pandas=True)
        elif spec.kind is ColumnKind.DATETIME:
            arrays[name] = pa.array(s, type=pa.timestamp("ns"), from_pandas=True)
        elif spec.kind is ColumnKind.BOOLEAN:
            arrays[name] = pa.array(s, type=pa.bool_(), from_pandas=True)
        else:
            arrays[name] = pa.array(list(s), type=pa.string())
    return pa.table(arrays)


def _text_frame(records: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Records as JSON/CSV-friendly values: ISO dates, true/false, None for missing."""
    out: dict[str, list[object]] = {}
    for name, spec in schema.columns.items():
        s = records[name]
        if spec.kind is ColumnKind.DATETIME:
            out[name] = [None if pd.isna(v) else _iso(v) for v in s]
        elif spec.kind is ColumnKind.BOOLEAN:
            out[name] = [None if pd.isna(v) else bool(v) for v in s]
        elif spec.kind is ColumnKind.NUMERICAL:
            out[name] = [None if pd.isna(v) else (int(v) if spec.integer else float(v)) for v in s]
        else:
            out[name] = [None if v is None else v for v in s]
    return pd.DataFrame(out)


def _iso(value: pd.Timestamp) -> str:
    if value == value.normalize():
        return str(value.date())
    return str(value.isoformat())


def write_corpus(
    corpus: Corpus,
    out: Path | str,
    *,
    table_format: str = "parquet",
    force: bool = False,
    image_files: bool = False,
    private: bool = True,
) -> Path:
    """Write a corpus folder atomically in the given format; image files are copied alongside.

    The folder is owner-only unless ``private=False`` (a corpus may hold real records: ``privsynth convert``).

    Image bytes stay bytes in Parquet and become data URIs in JSONL; CSV cannot hold bytes, so they are written
    as PNG/JPEG files under ``images/`` and referenced by path. ``image_files=True`` does that for every format.
    """
    if table_format not in set(TABLE_FORMATS.values()):
        raise UserError(f"unknown table format '{table_format}'; use parquet, csv or jsonl")
    target = Path(out)
    schema = corpus.schema.with_table(f"records.{table_format}")
    records = corpus.records.copy()
    with atomic_dir(target, force=force, private=private) as tmp:
        for name in schema.names(ColumnKind.IMAGE):
            records[name] = _place_images(corpus, name, tmp, "csv" if image_files else table_format)
        write_table(records, schema, tmp)
    return target


def write_table(records: pd.DataFrame, schema: Schema, folder: Path, *, header: str = "") -> None:
    """Write canonical records and ``schema.yaml`` into ``folder`` (image files must already be there)."""
    fmt = TABLE_FORMATS[Path(schema.table).suffix.lower()]
    if fmt == "parquet":
        pq.write_table(_to_arrow(records, schema), folder / schema.table)
    elif fmt == "csv":
        # Every text quoted: a bare carriage return inside a note is a line break to CSV readers unless quoted,
        # and minimal quoting only quotes fields holding the line terminator ("\n"), so such a note split a record.
        _text_frame(records, schema).to_csv(
            folder / schema.table, index=False, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC
        )
    else:
        with (folder / schema.table).open("w", encoding="utf-8") as handle:
            for row in _text_frame(records, schema).to_dict(orient="records"):
                handle.write(json.dumps(_jsonable(row), ensure_ascii=False) + "\n")
    (folder / SCHEMA_FILE).write_text(dump_schema(schema, header=header), encoding="utf-8")


def _jsonable(row: dict[str, object]) -> dict[str, object]:
    return {k: (encode_data_uri(v) if isinstance(v, bytes) else v) for k, v in row.items()}


def _place_images(corpus: Corpus, column: str, tmp: Path, table_format: str) -> pd.Series:
    """Copy referenced image files under ``tmp``; externalise bytes for CSV."""
    keys = corpus.records[corpus.schema.key]
    values: list[object] = []
    for key, value in zip(keys, corpus.records[column], strict=True):
        if value is None:
            values.append(None)
        elif isinstance(value, bytes) or (isinstance(value, str) and TAR_MEMBER in value):
            # a tar shard member is written out as its own file: copying the shard would carry members no record
            # points to (and its headers' names, owners and times) into the new folder
            if not isinstance(value, bytes):
                value = read_cell_bytes(corpus.root, value, ImageLimits())
            if table_format != "csv":
                values.append(value)
                continue
            rel = f"images/{column}/{_safe_name(str(key))}{_suffix(value)}"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(value)
            values.append(rel)
        else:
            rel = str(value)
            source = corpus.root / rel  # validated on read: inside the root
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / rel)
            values.append(rel)
    return pd.Series(values, index=corpus.records.index, dtype=object)


def image_files(records: pd.DataFrame, schema: Schema, folder: Path) -> pd.DataFrame:
    """Records whose in-memory image bytes are written as files under ``folder/images/<column>/`` (by path)."""
    out = records.copy()
    corpus = Corpus(records=records, schema=schema, root=folder)
    for name in schema.names(ColumnKind.IMAGE):
        out[name] = _place_images(corpus, name, folder, "csv")
    return out


def image_shards(records: pd.DataFrame, schema: Schema, folder: Path, stem: str) -> pd.DataFrame:
    """Records whose in-memory image bytes are packed into one tar shard per image column.

    The shard is ``folder/images/<column>/<stem>.tar`` (WebDataset style, :func:`tarshards.write_shard`) and each
    cell becomes ``images/<column>/<stem>.tar#<key>.<png|jpg>``, which :func:`read_corpus` reads in place. A
    sample of millions of records is then a few hundred files, not millions.
    """
    from privsynth.data import tarshards

    out = records.copy()
    keys = records[schema.key].astype(str).tolist()
    for name in schema.names(ColumnKind.IMAGE):
        shard = f"images/{name}/{stem}.tar"
        members: list[tuple[str, bytes]] = []
        cells: list[object] = []
        taken: set[str] = set()
        for key, value in zip(keys, records[name], strict=True):
            if value is None:
                cells.append(None)
                continue
            data = read_cell_bytes(folder, value, ImageLimits())  # sampled bytes, size-checked
            base = _safe_name(key)
            member_name, i = f"{base}{_suffix(data)}", 1
            while member_name in taken:  # two keys that clean to one name: the later gets a number
                member_name, i = f"{base}-{i}{_suffix(data)}", i + 1
            taken.add(member_name)
            members.append((member_name, data))
            cells.append(f"{shard}#{member_name}")
        if members:
            (folder / shard).parent.mkdir(parents=True, exist_ok=True)
            tarshards.write_shard(folder / shard, members)
        out[name] = pd.Series(cells, index=records.index, dtype=object)
    return out


def _suffix(data: bytes) -> str:
    return ".jpg" if data[:3] == b"\xff\xd8\xff" else ".png"


def _safe_name(key: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in key)[:100]
    return cleaned or "record"


def corpora_equal(a: Corpus, b: Corpus) -> bool:
    """Same schema columns and equal values, images compared byte-for-byte (paths may differ)."""
    if dict(a.schema.columns) != dict(b.schema.columns) or len(a) != len(b):
        return False
    for name, spec in a.schema.columns.items():
        if spec.kind is ColumnKind.IMAGE:
            for i in range(len(a)):
                va, vb = a.records[name].iloc[i], b.records[name].iloc[i]
                if (va is None) != (vb is None):
                    return False
                if va is not None and _cell_bytes(a, va) != _cell_bytes(b, vb):
                    return False
        elif not a.records[name].reset_index(drop=True).equals(b.records[name].reset_index(drop=True)):
            return False
    return True


def _cell_bytes(corpus: Corpus, value: object) -> bytes:
    return read_cell_bytes(corpus.root, value, ImageLimits())


__all__ = [
    "Corpus",
    "corpora_equal",
    "image_files",
    "image_shards",
    "read_corpus",
    "read_table",
    "write_corpus",
    "write_part",
    "write_table",
]
