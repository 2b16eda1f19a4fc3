"""Reading a synthetic corpus for an audit: only the records the audit compares stay in memory (issue 21).

``privsynth sample --n 100000000`` writes a table of parts that no machine should hold whole, yet the audit
compares at most ``max_rows`` synthetic records (a uniform subsample; its intervals say so). So the synthetic
table is streamed batch by batch (:func:`~privsynth.data.stream.validate_streaming`): every record is checked as
:func:`~privsynth.data.corpus.read_corpus` checks it, hashed into the corpus fingerprint and counted for the
variation check, and only the records the subsample picks are kept. The pick is the one :func:`run_audit` makes
on a whole table (:func:`pick_rows`, same seed), so an audit is the same whichever way it read the corpus.

Memory: the kept records, plus per record an 8-byte hash and its key (the fingerprint orders records by key),
about 20 bytes a record in Arrow's string layout: some 200 MB for 10 million records.

Synthetic records only: this reads nothing real (the real train and holdout come from the corpus the model was
fitted on, which its fit held in memory whole).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from privsynth.data.corpus import Corpus, parquet_dataset, schema_path
from privsynth.data.fingerprint import fingerprint_digest, row_hashes
from privsynth.data.schema import load_schema
from privsynth.data.stream import BATCH_ROWS, table_batches, validate_streaming
from privsynth.data.validate import Limits
from privsynth.errors import CorpusReadError
from privsynth.variation import cell_counts, recount_from


def pick_rows(total: int, rows: int, seed: int) -> np.ndarray | None:
    """Positions (sorted) of the ``rows`` records an audit compares among ``total``; None: all of them."""
    if total <= rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))


@dataclass(frozen=True)
class AuditedSynthetic:
    """What an audit needs of a synthetic corpus it did not hold whole."""

    corpus: Corpus  #: the records the audit compares (its subsample), with the corpus' schema and root
    total: int  #: records in the whole corpus
    fingerprint: str  #: :func:`~privsynth.data.fingerprint.corpus_fingerprint` of the whole corpus
    variation: dict[str, Any] | None  #: :func:`~privsynth.variation.recount` of the whole corpus, if asked


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
        if pick is None:
            kept.append(records)
        else:
            inside = pick[(pick >= first) & (pick < first + len(records))] - first
            if len(inside):
                kept.append(records.iloc[inside])
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
    )


__all__ = ["AuditedSynthetic", "pick_rows", "read_for_audit"]
