"""A structural summary of a corpus for its owner: counts and kinds, never record values.

The summary is computed from real records without differential privacy, so it is for the data owner's screen
and internal logs, not for release.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from privsynth.data.corpus import Corpus
from privsynth.data.schema import PUBLIC_FIELDS


@dataclass(frozen=True)
class ColumnSummary:
    """One column: kind, PII type, how many values are missing, what is declared public."""

    name: str
    kind: str
    pii: str | None
    missing: int
    declared_public: tuple[str, ...]


@dataclass(frozen=True)
class CorpusSummary:
    """Counts and kinds of a corpus (internal: derived from real records without DP)."""

    root: str
    table: str
    records: int
    entities: int | None
    max_records_per_entity_found: int | None
    unit_of_privacy: str
    columns: tuple[ColumnSummary, ...]

    def kinds(self) -> dict[str, int]:
        """Number of columns of each kind."""
        out: dict[str, int] = {}
        for col in self.columns:
            out[col.kind] = out.get(col.kind, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``--json``)."""
        return asdict(self) | {"kinds": self.kinds()}


def summarize(corpus: Corpus) -> CorpusSummary:
    """Summarise a validated corpus."""
    schema, records = corpus.schema, corpus.records
    entities = per_entity = None
    if schema.entity is not None:
        counts = records[schema.entity].value_counts()
        entities, per_entity = len(counts), int(counts.max())
    columns = tuple(
        ColumnSummary(
            name=name,
            kind=spec.kind.value,
            pii=spec.pii.value if spec.pii is not None else None,
            missing=int(records[name].isna().sum()),
            declared_public=tuple(f for f in PUBLIC_FIELDS if getattr(spec, f) is not None),
        )
        for name, spec in schema.columns.items()
    )
    return CorpusSummary(
        root=str(corpus.root),
        table=schema.table,
        records=len(records),
        entities=entities,
        max_records_per_entity_found=per_entity,
        unit_of_privacy=schema.unit_of_privacy,
        columns=columns,
    )
