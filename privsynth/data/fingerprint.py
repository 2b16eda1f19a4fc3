"""A content fingerprint of a corpus: the same records give the same fingerprint in any file format.

The ledger store keys cumulative spend by it. It is a hash of canonical values (image cells by the SHA-256 of
their bytes, so moving files does not change it), sorted by record key. A corpus with one record more or less
has another fingerprint: name sources explicitly (``--source``) to group versions of one dataset.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from privsynth.data.corpus import Corpus
from privsynth.data.images import read_cell_bytes
from privsynth.data.schema import ColumnKind
from privsynth.data.validate import Limits


def corpus_fingerprint(corpus: Corpus) -> str:
    """``sha256:<hex>`` of the canonical records (schema columns and kinds included)."""
    frame = corpus.records.copy()
    limits = Limits().images
    for name in corpus.schema.names(ColumnKind.IMAGE):
        frame[name] = [
            None if v is None else hashlib.sha256(read_cell_bytes(corpus.root, v, limits)).hexdigest()
            for v in frame[name]
        ]
    frame = frame.sort_values(corpus.schema.key, kind="stable").reset_index(drop=True)
    digest = hashlib.sha256()
    for name, spec in corpus.schema.columns.items():
        digest.update(f"{name}\x1f{spec.kind.value}\x1e".encode())
    if len(frame):
        rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
        digest.update(rows.tobytes())
    return f"sha256:{digest.hexdigest()}"
