"""Reading a synthetic corpus for an audit: only the records the audit compares stay in memory (issue 21).

``privsynth sample --n 100000000`` writes a table of parts that no machine should hold whole, yet the audit
compares at most ``max_rows`` synthetic records (a uniform subsample; its intervals say so). So the synthetic
table is streamed batch by batch (:func:`~privsynth.data.stream.validate_streaming`): every record is checked as
:func:`~privsynth.data.corpus.read_corpus` checks it, hashed into the corpus fingerprint and counted for the
variation check, and only the records the subsample picks are kept. The pick is the one :func:`run_audit` makes
on a whole table (:func:`pick_rows`, same seed), so an audit is the same whichever way it read the corpus.

Memory: the kept records, plus per record an 8-byte hash and its key (the fingerprint orders records by key),
about 20 bytes a record in Arrow's string layout: some 200 MB for 10 million records.

The real train and holdout are streamed the same way (:func:`read_real_for_audit`), kept as the audit's picks
plus what the audit computes over every real record: the pre-flight checks' row hashes (8 bytes a record) and,
when the audit scans for PII, the replay scan's needles (every identifier value and every PII span found in the
real texts; that part grows with the identifiers). Real records are private: what this module holds stays in
the audit's process and reaches only the audit's aggregates, as with a table read whole.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from privsynth.audit.pii import Needles
from privsynth.audit.preflight import (
    Preflight,
    check_schemas,
    preflight_columns,
    preflight_hashes,
)
from privsynth.audit.preflight import row_hashes as preflight_row_hashes
from privsynth.audit.replay import ReplayScanner
from privsynth.data.corpus import Corpus, parquet_dataset, schema_path
from privsynth.data.fingerprint import fingerprint_digest, row_hashes
from privsynth.data.schema import Schema, load_schema
from privsynth.data.stream import BATCH_ROWS, table_batches, validate_streaming
from privsynth.data.validate import Limits
from privsynth.errors import ConfigError, CorpusReadError
from privsynth.variation import cell_counts, recount_from


def pick_rows(total: int, rows: int, seed: int) -> np.ndarray | None:
    """Positions (sorted) of the ``rows`` records an audit compares among ``total``; None: all of them."""
    if total <= rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))


def _picked(pick: np.ndarray | None, records: pd.DataFrame, first: int) -> pd.DataFrame:
    """The records of a batch (numbered from ``first``) that the pick holds."""
    if pick is None:
        return records
    return records.iloc[pick[(pick >= first) & (pick < first + len(records))] - first]


@dataclass(frozen=True)
class AuditedSynthetic:
    """What an audit needs of a synthetic corpus it did not hold whole."""

    corpus: Corpus  #: the records the audit compares (its subsample), with the corpus' schema and root
    total: int  #: records in the whole corpus
    fingerprint: str  #: :func:`~privsynth.data.fingerprint.corpus_fingerprint` of the whole corpus
    variation: dict[str, Any] | None  #: :func:`~privsynth.variation.recount` of the whole corpus, if asked
    rows: int  #: the subsample size it was read with (the audit's ``max_rows``)
    seed: int  #: the subsample's seed


def _count_rows(folder: Path, batch_rows: int) -> int:
    """Records in the table without holding it: Parquet says so in its footers; other formats are counted."""
    schema_file = schema_path(folder)
    table = schema_file.parent / load_schema(schema_file).table
    if table.suffix.lower() == ".parquet" and table.exists():
        try:
            if table.is_dir():
                return int(parquet_dataset(table).count_rows())
            return int(pq.ParquetFile(table).metadata.num_rows)
        except (OSError, ValueError, pa.ArrowException):
            pass  # the validating pass below names what is wrong with the file
    return sum(len(batch) for batch in table_batches(table, batch_rows))


def read_for_audit(
    folder: Path | str,
    *,
    rows: int,
    seed: int,
    asked: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    batch_rows: int = BATCH_ROWS,
) -> AuditedSynthetic:
    """Stream the synthetic corpus at ``folder``: validate it, fingerprint it, recount ``asked``, keep the pick.

    Raises :class:`~privsynth.errors.CorpusValidationError` listing every problem, as ``read_corpus`` does.
    """
    folder = Path(folder)
    schema = load_schema(schema_path(folder))
    total_guess = _count_rows(folder, batch_rows)
    pick = pick_rows(total_guess, rows, seed)
    kept: list[pd.DataFrame] = []
    hashes: list[np.ndarray] = []
    keys: list[pa.Array] = []
    counts: list[int] = [0] * len((asked or {}).get("cells", []))

    def take(records: pd.DataFrame, first: int, root: Path) -> None:
        if len(chosen := _picked(pick, records, first)):
            kept.append(chosen)
        hashes.append(row_hashes(records, schema, root))
        keys.append(pa.array(records[schema.key].astype(str).tolist(), type=pa.large_string()))
        if asked:
            for i, n in enumerate(cell_counts(records, asked)):
                counts[i] += n

    summary = validate_streaming(folder, limits=limits, batch_rows=batch_rows, on_batch=take)
    root = Path(summary.root)
    if summary.records != total_guess:  # the table changed between the two passes
        raise CorpusReadError(
            f"{folder}: the table changed while it was read ({total_guess}, then {summary.records} records); "
            "audit a corpus no process is writing to"
        )
    # keys are valid UTF-8 text, whose byte order is their code point order: Arrow sorts them as pandas would
    order = pc.array_sort_indices(pa.concat_arrays(keys), order="ascending").to_numpy() if keys else np.zeros(0, int)
    every = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    picked = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=list(schema.columns))
    return AuditedSynthetic(
        corpus=Corpus(records=picked, schema=schema, root=root),
        total=summary.records,
        fingerprint=fingerprint_digest(schema, every[order] if len(every) else every),
        variation=recount_from(counts, summary.records, asked) if asked else None,
        rows=rows,
        seed=seed,
    )


@dataclass(frozen=True)
class AuditedReal:
    """What an audit needs of the real train and holdout (see the module doc)."""

    train: Corpus  #: the train records the audit compares (the pick of ``max_rows`` with the audit's seed)
    holdout: Corpus  #: the holdout records it compares (seed + 1)
    train_total: int
    holdout_total: int
    preflight: Preflight  #: the holdout checks, over every record
    replay: ReplayScanner | None  #: over every record's identifiers and texts; None when no PII scan runs
    rows: int  #: the picks' size it was read with (the audit's ``max_rows``)
    seed: int  #: train's pick seed (holdout's is seed + 1)


@dataclass
class _Side:
    """One real side being read: its pick, its records seen so far, its hashes and needles."""

    pick: np.ndarray | None
    columns: list[str]  #: the pre-flight's columns
    scan: Callable[[pd.DataFrame], Needles] | None
    offset: int = 0  #: where the side's records are numbered from when there are no pre-flight columns
    seen: int = 0
    kept: list[pd.DataFrame] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)
    needles: Needles = field(default_factory=Needles)

    def take(self, records: pd.DataFrame) -> None:
        """Add the side's next records (in table order)."""
        if len(chosen := _picked(self.pick, records, self.seen)):
            self.kept.append(chosen)
        self.hashes.append(preflight_row_hashes(records, self.columns, first=self.offset + self.seen))
        if self.scan is not None:
            self.needles.extend(self.scan(records))
        self.seen += len(records)

    def on_batch(self, records: pd.DataFrame, _first: int, _root: Path) -> None:
        """:func:`validate_streaming`'s callback for a table that is this side alone."""
        self.take(records)

    def records(self, schema: Schema) -> pd.DataFrame:
        return pd.concat(self.kept, ignore_index=True) if self.kept else pd.DataFrame(columns=list(schema.columns))

    def every_hash(self) -> np.ndarray:
        return np.concatenate(self.hashes) if self.hashes else np.zeros(0, dtype=np.uint64)


def _real(
    schema: Schema, roots: tuple[Path, Path], sides: tuple[_Side, _Side], scan: bool, rows: int, seed: int
) -> AuditedReal:
    train, holdout = sides
    needles = Needles()
    needles.extend(train.needles)
    needles.extend(holdout.needles)  # train's before holdout's, as in the concatenated whole tables
    return AuditedReal(
        train=Corpus(records=train.records(schema), schema=schema, root=roots[0]),
        holdout=Corpus(records=holdout.records(schema), schema=schema, root=roots[1]),
        train_total=train.seen,
        holdout_total=holdout.seen,
        preflight=preflight_hashes(train.every_hash(), holdout.every_hash()),
        replay=needles.scanner(schema) if scan else None,
        rows=rows,
        seed=seed,
    )


def read_real_for_audit(
    *,
    train: Path | str,
    holdout: Path | str,
    rows: int,
    seed: int,
    scan: Callable[[pd.DataFrame, Schema], Needles] | None = None,
    limits: Limits | None = None,
    batch_rows: int = BATCH_ROWS,
) -> AuditedReal:
    """Stream a real train and holdout corpus (``--train``/``--holdout``): validate, pick, hash, gather needles.

    ``scan(records, schema)`` gathers a batch's replay needles (:func:`~privsynth.audit.pii.find_needles`); None
    when the audit runs no PII scan.
    """
    folders = (Path(train), Path(holdout))
    schemas = [load_schema(schema_path(f)) for f in folders]
    check_schemas(schemas[0], schemas[1])
    sides: list[_Side] = []
    roots = []
    for number, (folder, schema) in enumerate(zip(folders, schemas, strict=True)):
        total = _count_rows(folder, batch_rows)
        offset = sides[0].seen if sides else 0  # the holdout numbered after train (see preflight.row_hashes)
        columns = preflight_columns(schema, list(schema.columns))
        side = _Side(pick_rows(total, rows, seed + number), columns, None, offset)
        if scan is not None:
            side.scan = functools.partial(_scan_with, scan, schema)
        summary = validate_streaming(folder, limits=limits, batch_rows=batch_rows, on_batch=side.on_batch)
        if summary.records != total:
            raise CorpusReadError(f"{folder}: the table changed while it was read; audit a corpus no process writes to")
        sides.append(side)
        roots.append(Path(summary.root))
    return _real(schemas[0], (roots[0], roots[1]), (sides[0], sides[1]), scan is not None, rows, seed)


def read_split_for_audit(
    corpus: Path | str,
    *,
    train_keys: Sequence[str],
    holdout_keys: Sequence[str],
    rows: int,
    seed: int,
    scan: Callable[[pd.DataFrame, Schema], Needles] | None = None,
    limits: Limits | None = None,
    batch_rows: int = BATCH_ROWS,
) -> AuditedReal:
    """Stream the corpus a model was fitted on and split it by the model's recorded keys (``--model``)."""
    folder = Path(corpus)
    schema = load_schema(schema_path(folder))
    named = [str(k) for k in train_keys] + [str(k) for k in holdout_keys]
    sizes = (len(train_keys), len(named) - len(train_keys))
    # one index over every named key, looked up per batch (a set per batch would be rebuilt for every batch)
    index = pd.Index(named)
    if not index.is_unique:
        raise ConfigError(
            "the model's split names a record twice; it is damaged: fit again, or pass --train and --holdout"
        )
    del named
    columns = preflight_columns(schema, list(schema.columns))
    finder = None if scan is None else functools.partial(_scan_with, scan, schema)
    sides = (
        _Side(pick_rows(sizes[0], rows, seed), columns, finder),
        _Side(pick_rows(sizes[1], rows, seed + 1), columns, finder, offset=sizes[0]),
    )

    def take(records: pd.DataFrame, _first: int, _root: Path) -> None:
        where = index.get_indexer(records[schema.key].astype(str))
        for number, side in enumerate(sides):
            mask = (where >= 0) & ((where >= sizes[0]) == bool(number))
            if mask.any():
                side.take(records[mask])

    summary = validate_streaming(folder, limits=limits, batch_rows=batch_rows, on_batch=take)
    if (sides[0].seen, sides[1].seen) != sizes:
        raise ConfigError(
            f"--corpus does not hold every record the model's split names ({sides[0].seen}/{sizes[0]} train, "
            f"{sides[1].seen}/{sizes[1]} holdout found): pass the corpus the model was fit on"
        )
    root = Path(summary.root)
    return _real(schema, (root, root), (sides[0], sides[1]), scan is not None, rows, seed)


def _scan_with(scan: Callable[[pd.DataFrame, Schema], Needles], schema: Schema, records: pd.DataFrame) -> Needles:
    return scan(records, schema)


__all__ = [
    "AuditedReal",
    "AuditedSynthetic",
    "pick_rows",
    "read_for_audit",
    "read_real_for_audit",
    "read_split_for_audit",
]
