"""Person-level privacy: bound each person's contribution before anything else touches the records.

When the schema names an ``entity`` column, one person may own several records. Keeping at most
``max_records_per_entity`` of them (chosen at random) bounds what one person can change: every count moves by at
most that many, so noise is scaled by it and the guarantee protects whole people. Which records are kept depends
only on that person's own records and the random draw, never on other people (neighbours stay neighbours); the
draw comes from the fit's private streams, so nobody can tell which of a person's records were used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from privsynth.data.schema import Schema


def sensitivity(schema: Schema) -> int:
    """How many records one unit of privacy can add or remove (1 without an entity column)."""
    return schema.max_records_per_entity if schema.entity is not None else 1


def bound_contributions(records: pd.DataFrame, schema: Schema, *, rng: np.random.Generator) -> pd.DataFrame:
    """Keep at most ``max_records_per_entity`` records per entity, chosen uniformly at random by ``rng``.

    The original row order is kept. Without an entity column the records are returned as they are.

    >>> from privsynth.data.schema import ColumnKind, ColumnSpec
    >>> s = Schema(key="id", entity="who", columns={"id": ColumnSpec(kind=ColumnKind.KEY),
    ...            "who": ColumnSpec(kind=ColumnKind.KEY)})
    >>> frame = pd.DataFrame({"id": ["1", "2", "3", "4"], "who": ["a", "a", "a", "b"]})
    >>> bound_contributions(frame, s, rng=np.random.default_rng(0))["who"].tolist()
    ['a', 'b']
    """
    if schema.entity is None:
        return records
    order = rng.permutation(len(records))
    shuffled = records.iloc[order]
    keep = shuffled.groupby(schema.entity, sort=False).cumcount() < schema.max_records_per_entity
    return shuffled[keep.to_numpy()].sort_index()
