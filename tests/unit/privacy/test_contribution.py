from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from privsynth.data.schema import ColumnKind, ColumnSpec, Schema
from privsynth.privacy.contribution import bound_contributions, sensitivity


def schema(m: int, entity: bool = True) -> Schema:
    return Schema(
        key="id",
        entity="who" if entity else None,
        max_records_per_entity=m,
        columns={"id": ColumnSpec(kind=ColumnKind.KEY), "who": ColumnSpec(kind=ColumnKind.KEY)},
    )


@settings(max_examples=50, deadline=None)
@given(owners=st.lists(st.integers(0, 6), min_size=1, max_size=60), m=st.integers(1, 4), seed=st.integers(0, 9))
def test_at_most_m_records_per_person_and_deterministic(owners: list[int], m: int, seed: int) -> None:
    frame = pd.DataFrame({"id": [str(i) for i in range(len(owners))], "who": [str(o) for o in owners]})
    kept = bound_contributions(frame, schema(m), rng=np.random.default_rng(seed))
    counts = kept["who"].value_counts()
    assert counts.max() <= m
    # nobody loses records below the bound
    for who, total in frame["who"].value_counts().items():
        assert counts[who] == min(total, m)
    assert kept.equals(bound_contributions(frame, schema(m), rng=np.random.default_rng(seed)))
    assert list(kept.index) == sorted(kept.index)


def test_without_entity_nothing_changes_and_sensitivity_is_one() -> None:
    frame = pd.DataFrame({"id": ["1", "2"], "who": ["a", "a"]})
    assert bound_contributions(frame, schema(1, entity=False), rng=np.random.default_rng(0)).equals(frame)
    assert sensitivity(schema(3, entity=False)) == 1
    assert sensitivity(schema(3)) == 3


def test_removing_one_person_leaves_everyone_elses_choice_alone_in_distribution() -> None:
    # Neighbouring corpora stay neighbours: which of B's records are kept must not depend on whether A is there.
    frame = pd.DataFrame({"id": [str(i) for i in range(6)], "who": ["A", "A", "A", "B", "B", "B"]})
    without_a = frame[frame["who"] == "B"]
    kept_with = [
        tuple(bound_contributions(frame, schema(1), rng=np.random.default_rng(s)).query("who == 'B'")["id"])
        for s in range(600)
    ]
    kept_without = [
        tuple(bound_contributions(without_a, schema(1), rng=np.random.default_rng(s))["id"]) for s in range(600)
    ]
    share_with = pd.Series(kept_with).value_counts(normalize=True).sort_index()
    share_without = pd.Series(kept_without).value_counts(normalize=True).sort_index()
    assert list(share_with.index) == list(share_without.index) == [("3",), ("4",), ("5",)]
    assert (share_with - share_without).abs().max() < 0.08  # both uniform over B's three records
