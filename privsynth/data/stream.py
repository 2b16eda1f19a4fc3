"""Validating a corpus batch by batch, with memory bounded by the batch, not the table (``privsynth validate``).

The table is read ``batch_rows`` records at a time (a Parquet file or a folder of parts by row groups, CSV and
JSON Lines in chunks). Each batch is checked as :func:`~privsynth.data.validate.coerce_records` checks a
whole table; what spans batches is kept as fixed-size numbers: 64-bit hashes of the keys (duplicates are
confirmed on the keys themselves in a second pass, so a hash collision never reports a false duplicate), hashes of
the entity ids (the people count and the largest count per person), and missing counts per column.

Like :mod:`privsynth.data.summary`, the result is for the data owner (exact counts, no DP).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from privsynth.data.corpus import _has_nul, jsonl_batches, parquet_dataset, read_table, schema_path
from privsynth.data.schema import PUBLIC_FIELDS, TABLE_FORMATS, Schema, load_schema
from privsynth.data.summary import ColumnSummary, CorpusSummary
from privsynth.data.validate import Limits, _label_text, coerce_records, key_label
from privsynth.errors import CorpusReadError, CorpusValidationError, Problem

#: Records per batch: about 100 MB of a 20-column table in memory at once.
BATCH_ROWS = 100_000


def table_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The table's raw records, ``batch_rows`` at a time, in file order (as :func:`read_table` reads them)."""
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt == "parquet" and (path.is_dir() or (path.is_file() and path.stat().st_size > 0)):
        try:
            yield from _parquet_batches(path, batch_rows)
        except CorpusReadError:
            raise
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise CorpusReadError(f"{path}: cannot be read as parquet ({type(exc).__name__}); check the file") from None
        return
    if fmt == "csv" and path.is_file() and path.stat().st_size > 0:
        yield from pd.read_csv(
            path,
            engine="python" if _has_nul(path) else "c",  # as read_table: a NUL byte is named, not silently cut
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8",
            encoding_errors="surrogateescape",
            chunksize=batch_rows,
        )
        return
    if fmt == "jsonl" and path.is_file() and path.stat().st_size > 0:
        try:
            yield from jsonl_batches(path, batch_rows)
        except OSError as exc:
            raise CorpusReadError(f"{path}: cannot be read as jsonl ({type(exc).__name__}); check the file") from None
        return
    read_table(path)  # an unknown format, a missing or empty file: read_table's error message
    raise CorpusReadError(f"{path}: cannot be read in batches")


def _parquet_batches(path: Path, batch_rows: int) -> Iterator[pd.DataFrame]:
    if path.is_dir():
        batches = parquet_dataset(path).to_batches(batch_size=batch_rows)
    else:
        batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
    for batch in batches:
        yield batch.to_pandas()


def _hashes(values: pd.Series) -> np.ndarray:
    present = values.dropna().astype(str)
    return pd.util.hash_pandas_object(present, index=False).to_numpy(dtype=np.uint64)


def validate_streaming(
    folder: Path | str,
    *,
    limits: Limits | None = None,
    batch_rows: int = BATCH_ROWS,
    on_batch: Callable[[pd.DataFrame, int, Path], None] | None = None,
) -> CorpusSummary:
    """Check every record of the corpus at ``folder`` batch by batch and summarise it.

    Raises :class:`CorpusValidationError` with every problem found (as :func:`~privsynth.data.corpus.read_corpus`
    does), else returns the summary ``privsynth validate`` prints. ``on_batch(records, first_row, root)`` sees each
    batch of canonical records (numbered from ``first_row`` in the table) while no problem has been found yet.
    """
    schema_file = schema_path(Path(folder))
    schema = load_schema(schema_file)
    root = schema_file.parent
    table = root / schema.table
    problems: list[Problem] = []
    seen_once: set[tuple[str, str | None]] = set()
    missing = dict.fromkeys(schema.columns, 0)
    keys: list[np.ndarray] = []
    entities: list[np.ndarray] = []
    rows = 0
    for batch in table_batches(table, batch_rows):
        if not len(batch):  # an empty part file (Spark writes them): nothing to check; an empty table is below
            continue
        records, found = coerce_records(batch, schema, root, limits, first_row=rows, check_keys=False)
        for problem in found:
            if problem.record is None:  # a column-level problem repeats in every batch: keep it once
                if (problem.code, problem.column) in seen_once:
                    continue
                seen_once.add((problem.code, problem.column))
            problems.append(problem)
        for name in schema.columns:
            if name in records.columns:
                missing[name] += int(records[name].isna().sum())
        if schema.key in records.columns:
            keys.append(_hashes(records[schema.key]))
        if schema.entity is not None and schema.entity in records.columns:
            entities.append(_hashes(records[schema.entity]))
        if on_batch is not None and not problems:
            on_batch(records, rows, root)
        rows += len(batch)
    if rows == 0:
        problems.append(Problem("empty", "the corpus has no records; add records or check the table file"))
    problems.extend(_duplicate_keys(table, schema, keys, batch_rows))
    if problems:
        raise CorpusValidationError(problems, source=str(root))
    people = per_person = None
    if schema.entity is not None:
        _, counts = np.unique(np.concatenate(entities) if entities else np.zeros(0, np.uint64), return_counts=True)
        people, per_person = len(counts), int(counts.max()) if len(counts) else 0
    return CorpusSummary(
        root=str(root),
        table=schema.table,
        records=rows,
        entities=people,
        max_records_per_entity_found=per_person,
        unit_of_privacy=schema.unit_of_privacy,
        columns=tuple(
            ColumnSummary(
                name=name,
                kind=spec.kind.value,
                pii=spec.pii.value if spec.pii is not None else None,
                missing=missing[name],
                declared_public=tuple(f for f in PUBLIC_FIELDS if getattr(spec, f) is not None),
            )
            for name, spec in schema.columns.items()
        ),
    )


def _duplicate_keys(table: Path, schema: Schema, keys: list[np.ndarray], batch_rows: int) -> list[Problem]:
    """Rows whose key an earlier row already used, confirmed on the keys themselves (a second pass, only if needed)."""
    if not keys:
        return []
    hashes = np.concatenate(keys)
    order = np.argsort(hashes, kind="stable")
    repeated = np.zeros(len(hashes), dtype=bool)
    repeated[order[1:]] = hashes[order[1:]] == hashes[order[:-1]]
    suspects = set(hashes[repeated].tolist())
    if not suspects:
        return []
    problems: list[Problem] = []
    first_seen: set[str] = set()
    position = 0
    for batch in table_batches(table, batch_rows):
        raw = batch[schema.key] if schema.key in batch.columns else pd.Series(dtype=object)
        values = raw.map(_label_text)  # the key as the first pass saw it (coerced to its canonical text)
        present = values.notna().to_numpy()
        texts = values.astype(str)
        batch_hashes = np.zeros(len(values), dtype=np.uint64)
        batch_hashes[present] = pd.util.hash_pandas_object(texts[present], index=False).to_numpy(dtype=np.uint64)
        for i in np.flatnonzero(present & np.isin(batch_hashes, list(suspects))):
            text = texts.iloc[i]
            if text in first_seen:
                label = key_label(raw.iloc[i]) or f"row {position + i + 1}"
                problems.append(
                    Problem(
                        "duplicate-key",
                        "record key used by an earlier record; keys must be unique",
                        column=schema.key,
                        record=label,
                    )
                )
            else:
                first_seen.add(text)
        position += len(values)
    return problems


__all__ = ["BATCH_ROWS", "table_batches", "validate_streaming"]
