"""Controlled variation when sampling: rebalanced categories and scenario grids (post-processing, no budget).

- ``--rebalance COLUMN`` (uniform over the column's categories) or ``--rebalance COLUMN=a:0.3,b:0.7`` asks for
  a category mix other than the model's: each record's category is fixed first, in exactly the asked proportions
  (largest-remainder rounding), and the rest of the record is drawn from the model given it.
- ``--grid COL1,COL2 --per-cell K`` asks for K records of every combination of the columns' categories, so rare
  combinations appear at all (scenario coverage, test suites).

Both only choose which conditions the model is sampled under, cell by cell: they read the fitted model's DP profile
(its released categories), never the real records, and spend nothing. The category ``__other__`` (categories too
rare to release under DP) is never a cell. The synthetic corpus' provenance records what was asked and what came
out (:func:`achieved`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from privsynth.errors import ConfigError
from privsynth.profile.model import OTHER, BooleanProfile, CategoricalProfile, Profile

#: Most cells a grid may ask for (each is one conditional draw from the model).
MAX_CELLS = 10_000


@dataclass(frozen=True)
class Cell:
    """Records drawn under one set of fixed column values."""

    conditions: dict[str, Any]
    count: int


@dataclass(frozen=True)
class Variation:
    """What was asked: a rebalanced column (with target shares) or a grid of columns (with a count per cell)."""

    kind: str  # "rebalance" or "grid"
    columns: tuple[str, ...]
    shares: dict[str, float] = field(default_factory=dict)
    per_cell: int = 0

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for provenance."""
        if self.kind == "rebalance":
            return {"rebalance": self.columns[0], "shares": self.shares or "uniform"}
        return {"grid": list(self.columns), "per_cell": self.per_cell}


def parse_rebalance(spec: str) -> Variation:
    """``COLUMN`` (uniform) or ``COLUMN=a:0.3,b:0.7`` (shares, normalised).

    >>> parse_rebalance("diagnosis=flu:1,cold:3").shares
    {'flu': 0.25, 'cold': 0.75}
    """
    column, _, rest = spec.partition("=")
    column = column.strip()
    if not column:
        raise ConfigError(f"--rebalance {spec!r}: name a column, e.g. --rebalance diagnosis or diagnosis=a:0.3,b:0.7")
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        name, sep, value = part.rpartition(":")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name or not weight > 0 or not np.isfinite(weight):
            raise ConfigError(
                f"--rebalance {spec!r}: '{part}' is not CATEGORY:SHARE with a positive share (e.g. pneumonia:0.3)"
            )
        shares[name] = weight
    total = sum(shares.values())
    return Variation("rebalance", (column,), {k: v / total for k, v in shares.items()} if shares else {})


def parse_grid(columns: str, per_cell: int) -> Variation:
    """``COL1,COL2`` with ``per_cell`` records for every combination."""
    names = tuple(c.strip() for c in columns.split(",") if c.strip())
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"--grid {columns!r}: give distinct column names separated by commas, e.g. sex,diagnosis")
    if per_cell < 1:
        raise ConfigError("--per-cell must be at least 1")
    return Variation("grid", names, per_cell=per_cell)


def categories(profile: Profile, column: str) -> list[Any]:
    """The released categories of a categorical or boolean column (never ``__other__``), from the DP profile."""
    spec = profile.columns.get(column)
    if isinstance(spec, CategoricalProfile):
        found: list[Any] = [c for c in spec.categories if c != OTHER]
    elif isinstance(spec, BooleanProfile):
        found = [True, False]
    else:
        kinds = sorted(n for n, c in profile.columns.items() if isinstance(c, CategoricalProfile | BooleanProfile))
        raise ConfigError(f"'{column}' is not a categorical or boolean column of the model; choose among {kinds}")
    if not found:
        raise ConfigError(f"'{column}': no category of it was released by the DP profile (all are __other__)")
    return found


def split_counts(n: int, shares: Sequence[float]) -> list[int]:
    """``n`` split in proportion to ``shares``, exactly (largest remainder; ties to the first).

    >>> split_counts(10, [1 / 3, 1 / 3, 1 / 3])
    [4, 3, 3]
    """
    raw = np.asarray(shares, dtype=float) * n
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return [int(c) for c in counts]


def plan_cells(variation: Variation, profile: Profile, n: int | None) -> list[Cell]:
    """The cells to sample: conditions and counts (``n`` is the total for a rebalance; a grid sets its own)."""
    if variation.kind == "rebalance":
        (column,) = variation.columns
        known = categories(profile, column)
        if n is None:
            raise ConfigError("--rebalance needs --n (the number of records to split across categories)")
        if variation.shares:
            labels = {str(c): c for c in known}
            unknown = sorted(set(variation.shares) - set(labels))
            if unknown:
                raise ConfigError(
                    f"--rebalance {column}: {unknown} not among the model's categories {sorted(labels)} "
                    "(__other__ cannot be asked for)"
                )
            asked = [(labels[k], v) for k, v in variation.shares.items()]
        else:
            asked = [(c, 1.0 / len(known)) for c in known]
        counts = split_counts(n, [share for _, share in asked])
        return [Cell({column: value}, count) for (value, _), count in zip(asked, counts, strict=True) if count > 0]
    grids = [categories(profile, column) for column in variation.columns]
    cells = int(np.prod([len(g) for g in grids]))
    if cells > MAX_CELLS:
        raise ConfigError(f"--grid gives {cells} cells (more than {MAX_CELLS}); use fewer columns")
    if n is not None and n != cells * variation.per_cell:
        raise ConfigError(
            f"--grid gives {cells} cells x {variation.per_cell} = {cells * variation.per_cell} records; leave out --n "
            "(or make it equal)"
        )
    return [
        Cell(dict(zip(variation.columns, values, strict=True)), variation.per_cell)
        for values in itertools.product(*grids)
    ]


def achieved(records: pd.DataFrame, cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Per cell: the conditions, the records asked and the records that came out holding them."""
    out = []
    for cell in cells:
        mask = np.logical_and.reduce([(records[c] == v).to_numpy() for c, v in cell.conditions.items()])
        out.append({"conditions": _jsonable(cell.conditions), "asked": cell.count, "achieved": int(mask.sum())})
    return out


def recount(records: pd.DataFrame, asked: Mapping[str, Any]) -> dict[str, Any]:
    """What a synthetic corpus holds against what its sampling asked (``synthetic.json``'s ``variation``).

    Counted again on the records themselves (the provenance's own counts are not trusted), per cell: the
    records asked and found, and their shares of the corpus. Synthetic records only: public post-processing.

    >>> frame = pd.DataFrame({"dx": ["flu", "flu", "cold", "flu"]})
    >>> asked = {"rebalance": "dx", "shares": "uniform", "cells": [
    ...     {"conditions": {"dx": "flu"}, "asked": 2}, {"conditions": {"dx": "cold"}, "asked": 2}]}
    >>> [(c["asked"], c["achieved"]) for c in recount(frame, asked)["cells"]]
    [(2, 3), (2, 1)]
    """
    return recount_from(cell_counts(records, asked), len(records), asked)


def cell_counts(records: pd.DataFrame, asked: Mapping[str, Any]) -> list[int]:
    """Per asked cell, the records holding its conditions (add them up over batches of a table)."""
    counts = []
    for cell in asked.get("cells", []):
        conditions = cell.get("conditions", {})
        present = all(c in records.columns for c in conditions)
        mask = (
            np.logical_and.reduce([(records[c].astype(str) == str(v)).to_numpy() for c, v in conditions.items()])
            if present and conditions
            else np.zeros(len(records), dtype=bool)
        )
        counts.append(int(np.count_nonzero(mask)))
    return counts


def recount_from(counts: Sequence[int], records: int, asked: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`recount`'s document from the per-cell counts of a corpus of ``records`` records."""
    total = max(records, 1)
    cells = [
        {
            "conditions": dict(cell.get("conditions", {})),
            "asked": int(cell.get("asked", 0)),
            "achieved": count,
            "asked_share": int(cell.get("asked", 0)) / total,
            "achieved_share": count / total,
        }
        for cell, count in zip(asked.get("cells", []), counts, strict=True)
    ]
    described = {k: v for k, v in asked.items() if k != "cells"}
    return {**described, "records": records, "cells": cells}


def _jsonable(conditions: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (bool(v) if isinstance(v, bool | np.bool_) else str(v)) for k, v in conditions.items()}


__all__ = [
    "Cell",
    "Variation",
    "achieved",
    "categories",
    "cell_counts",
    "parse_grid",
    "parse_rebalance",
    "plan_cells",
    "recount",
    "recount_from",
    "split_counts",
]
