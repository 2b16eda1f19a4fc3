"""The surrogate registry as the PII audit reads it: the audited records' own fake identities, and all others'.

A synthetic corpus written by privsynth keeps, owner-only, the fake identity it gave each record
(``internal/surrogates.parquet``, a file or a folder of parts). The PII audit explains a detected name, e-mail or
date by the record's own surrogate, and a few distinctive kinds (:data:`CROSS_RECORD_FIELDS`) also by a surrogate
of any other record (an "other record" fake). The first needs only the audited records' rows; the second asks
whether a span is among those values of the whole registry, which :func:`read_registry` answers from 64-bit hashes
of the normalised values, read batch by batch: memory holds the audited records' rows and 8 bytes a registry
value, not the registry.

A hash collision would explain a span that is no surrogate. With ``n`` values its chance per span is about
``n / 2**64`` (5e-12 for ten million records of ten hashed columns each: five cross-record fields and their
``other_`` twins); an audit reports it nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from privsynth.audit.replay import normalise
from privsynth.data.layout import REGISTRY

#: Registry records per batch.
BATCH_ROWS = 100_000

#: Identity fields (:data:`privsynth.pii.surrogates.IDENTITY_FIELDS`) whose fakes may explain a PII span found in
#: *another* record's text. Only fakes a real identifier cannot equal by chance: reserved by construction (the
#: ``example.org`` URL, the ``XX00TEST`` IBAN), 48 random bits (the ``ID-`` value, and the VIN
#: after ``1FAKE``: about 4e-8 chances that a real one matches among ten million records) or drawn from more than
#: 1e15 values (a street address: house number, street, city, state and ZIP, whole; the address detector finds the
#: street part only, which then explains nothing in another record).
#:
#: Could an attacker learn one person's record if a field were added here? Names, dates of birth, ZIP codes, SSNs
#: (1e9 values), MRNs (1e8), phone numbers (6e9), e-mails and card, account and licence numbers are left out: ten
#: million records hold twenty million fakes, which cover most common names and every date of a century, so a real
#: patient's date of birth written by a model would pass as some other record's fake. So are the TEST-NET-1 IP
#: addresses: only 254 of them, and normalised (separators inside digit runs dropped) "192.0.2.4" is the date
#: "1/9/2024". No generator writes another record's identity (placeholders are filled from the record's own), so a
#: span explained only by another record is a coincidence or a copy; measured on the demo with the backbone: 3 of
#: 10,967 cells, all three dates, one of them "1/9/2024" as another record's IP address.
CROSS_RECORD_FIELDS = frozenset({"address", "url", "iban", "vin", "other"})


def explains_other_records(field: str) -> bool:
    """Whether a registry column's fakes may explain a span in another record (``other_x`` as ``x``)."""
    return str(field).removeprefix("other_") in CROSS_RECORD_FIELDS


def _value_hashes(values: Iterable[object]) -> np.ndarray:
    # as UTF-8 bytes, lone surrogates kept (a corpus read with surrogateescape can hold them): hashing str would
    # encode strictly and stop the audit on such a span
    normalised = [normalise(str(v)).encode("utf-8", "surrogatepass") for v in values if not _missing(v)]
    return pd.util.hash_pandas_object(pd.Series(normalised, dtype=object), index=False).to_numpy(dtype=np.uint64)


def _missing(value: object) -> bool:
    """None, NaN, NaT and pd.NA (a registry value that is absent, never hashed as the text "nan")."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array is a value, not a missing one
        return False


@dataclass(frozen=True)
class SurrogateRegistry:
    """The audited records' surrogate rows (indexed by key) and the hashes of every registry value."""

    own: pd.DataFrame
    hashes: np.ndarray  #: sorted, unique ``uint64`` hashes of every normalised value of a cross-record field

    def __contains__(self, span: object) -> bool:
        """Whether ``span`` (already normalised) is a value of a :data:`CROSS_RECORD_FIELDS` field of some record."""
        if not isinstance(span, str):
            return False
        wanted = _value_hashes([span])[0]
        at = int(np.searchsorted(self.hashes, wanted))
        return at < len(self.hashes) and self.hashes[at] == wanted

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, key: str) -> SurrogateRegistry | None:
        """A registry held in memory (``None`` where it has no ``key`` column, as a registry of another corpus)."""
        if key not in frame.columns:
            return None
        own = frame.set_index(key)
        return cls(own=own, hashes=_cross_record_hashes(own))


def _cross_record_hashes(frame: pd.DataFrame) -> np.ndarray:
    return _sorted_unique([_value_hashes(frame[c].tolist()) for c in frame.columns if explains_other_records(c)])


def _sorted_unique(parts: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(parts)).astype(np.uint64) if parts else np.zeros(0, dtype=np.uint64)


def read_registry(
    synthetic: Path, key: str, keys: Iterable[object], batch_rows: int = BATCH_ROWS
) -> SurrogateRegistry | None:
    """The registry of a synthetic corpus folder, batch by batch: the rows of ``keys`` and cross-record hashes.

    ``None`` where the corpus has no registry (another tool wrote it) or the registry has no ``key`` column.
    """
    path = synthetic / REGISTRY
    if not path.exists():
        return None
    dataset = pads.dataset(path, format="parquet")
    if key not in dataset.schema.names:
        return None
    wanted = set(keys)
    rows: list[pd.DataFrame] = []
    parts: list[np.ndarray] = []
    for batch in dataset.to_batches(batch_size=batch_rows):
        frame = batch.to_pandas()
        parts.append(_cross_record_hashes(frame.drop(columns=[key])))
        rows.append(frame[frame[key].isin(wanted)])
        if len(parts) >= 64:  # keep the pieces few: merge as we go
            parts = [_sorted_unique(parts)]
    own = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=dataset.schema.names)
    return SurrogateRegistry(own=own.set_index(key), hashes=_sorted_unique(parts))


__all__ = ["CROSS_RECORD_FIELDS", "SurrogateRegistry", "explains_other_records", "read_registry"]
