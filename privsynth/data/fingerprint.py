"""Content fingerprints of a corpus: the same records give the same fingerprint in any file format or column order.

:func:`corpus_fingerprint` is a plain hash of canonical values (image cells by the SHA-256 of their bytes, so
moving files does not change it; columns in name order with their kinds, rows sorted by record key; schema
formatting, comments and declared metadata play no part). A plain hash of a *private* corpus answers
membership questions for anyone who knows every record but one, so it is never stored or released: private
corpora are named by :func:`keyed_fingerprint`, an HMAC of it under the ledger store's secret key. Plain
fingerprints are for synthetic and public corpora (audit inputs, public pretraining data).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from privsynth.data.corpus import Corpus
from privsynth.data.images import read_cell_bytes
from privsynth.data.schema import ColumnKind, Schema
from privsynth.data.validate import Limits


class Keyer(Protocol):
    """Something holding a secret key that turns a plain digest into a keyed one (the ledger store)."""

    def keyed(self, digest: str) -> str:
        """``hmac-sha256:<hex>`` of ``digest``."""
        ...


def corpus_fingerprint(corpus: Corpus) -> str:
    """``sha256:<hex>`` of the canonical records: for synthetic and public corpora only (see the module doc)."""
    hashes = row_hashes(corpus.records, corpus.schema, corpus.root)
    order = corpus.records[corpus.schema.key].reset_index(drop=True).sort_values(kind="stable").index.to_numpy()
    return fingerprint_digest(corpus.schema, hashes[order] if len(hashes) else hashes)


def row_hashes(records: pd.DataFrame, schema: Schema, root: Path) -> np.ndarray:
    """One 64-bit hash per record of its canonical values (image cells by the SHA-256 of their bytes).

    A record's hash depends on that record alone, so a table read in batches gives the whole table's hashes.
    """
    frame = records.copy()
    limits = Limits().images
    for name in schema.names(ColumnKind.IMAGE):
        frame[name] = [
            None if v is None else hashlib.sha256(read_cell_bytes(root, v, limits)).hexdigest() for v in frame[name]
        ]
    if not len(frame):
        return np.zeros(0, dtype=np.uint64)
    return pd.util.hash_pandas_object(frame[sorted(schema.columns)], index=False).to_numpy(dtype=np.uint64)


def fingerprint_digest(schema: Schema, hashes: np.ndarray) -> str:
    """The fingerprint from every record's :func:`row_hashes` value, in the order of the records' keys."""
    digest = hashlib.sha256()
    for name in sorted(schema.columns):
        digest.update(f"{name}\x1f{schema.columns[name].kind.value}\x1e".encode())
    if len(hashes):
        digest.update(np.ascontiguousarray(hashes, dtype=np.uint64).tobytes())
    return f"sha256:{digest.hexdigest()}"


def keyed_fingerprint(corpus: Corpus, keyer: Keyer) -> str:
    """The private corpus' fingerprint under ``keyer``'s secret (``hmac-sha256:<hex>``): safe to store and release."""
    return keyer.keyed(corpus_fingerprint(corpus))
