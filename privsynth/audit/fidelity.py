"""Fidelity metrics: k-way marginal total variation distance between coded tables.

TVD of two distributions is half the L1 distance of their probability vectors (0: identical, 1: disjoint).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from privsynth.audit.discretize import Discretizer


def _keys(codes: pd.DataFrame, columns: tuple[str, ...], cards: list[int]) -> np.ndarray:
    key = np.zeros(len(codes), dtype=np.int64)
    for name, card in zip(columns, cards, strict=True):
        key = key * card + codes[name].to_numpy()
    return key


def marginal_tvd(real: pd.DataFrame, synthetic: pd.DataFrame, disc: Discretizer, k: int) -> float:
    """Mean TVD over all k-way marginals of the coded columns.

    >>> import pandas as pd
    >>> from privsynth.data.schema import schema_from_dict
    >>> s = schema_from_dict({"key": "id", "columns": {"id": {"kind": "key"}, "c": {"kind": "categorical"}}},
    ...                      source="doc")
    >>> real = pd.DataFrame({"id": ["1", "2"], "c": ["a", "b"]})
    >>> d = Discretizer().fit(real, s)
    >>> marginal_tvd(d.transform(real), d.transform(pd.DataFrame({"c": ["a", "a"]})), d, 1)
    0.5
    """
    columns = disc.columns
    if len(columns) < k or len(real) == 0 or len(synthetic) == 0:
        return float("nan")
    scores = []
    for subset in itertools.combinations(columns, k):
        cards = [disc.cardinality(c) for c in subset]
        size = int(np.prod(cards))
        p = np.bincount(_keys(real, subset, cards), minlength=size) / len(real)
        q = np.bincount(_keys(synthetic, subset, cards), minlength=size) / len(synthetic)
        scores.append(0.5 * float(np.abs(p - q).sum()))
    return float(np.mean(scores))
