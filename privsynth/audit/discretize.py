"""Discretisation of tabular columns for marginal metrics, fitted on the real training records.

Numbers and dates fall into (up to) 10 train-quantile bins, categories into the train's 10 most frequent values
plus 'other'; missing values get their own code. The same fitted bins apply to every compared table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from privsynth.data.schema import ColumnKind, Schema
from privsynth.profile.grids import to_days

TABULAR = (ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL, ColumnKind.DATETIME, ColumnKind.BOOLEAN)


@dataclass
class Discretizer:
    """Per-column codes fitted on the real training table."""

    bins: int = 10
    top: int = 10
    edges_: dict[str, np.ndarray] = field(default_factory=dict)
    levels_: dict[str, list[str]] = field(default_factory=dict)
    kinds_: dict[str, ColumnKind] = field(default_factory=dict)

    def fit(self, train: pd.DataFrame, schema: Schema) -> Discretizer:
        """Learn bins and top categories from ``train``."""
        for name, spec in schema.columns.items():
            if spec.kind not in TABULAR or name not in train.columns:
                continue
            self.kinds_[name] = spec.kind
            if spec.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
                values = _numbers(train[name], spec.kind)
                values = values[~np.isnan(values)]
                qs = np.quantile(values, np.linspace(0, 1, self.bins + 1)[1:-1]) if values.size else np.array([])
                self.edges_[name] = np.unique(qs)
            elif spec.kind is ColumnKind.CATEGORICAL:
                counts = train[name].dropna().astype(str).value_counts()
                self.levels_[name] = list(counts.index[: self.top])
        return self

    @property
    def columns(self) -> list[str]:
        """Columns the discretizer codes."""
        return list(self.kinds_)

    def cardinality(self, name: str) -> int:
        """Number of codes of a column (missing included)."""
        kind = self.kinds_[name]
        if kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
            return len(self.edges_[name]) + 2
        if kind is ColumnKind.CATEGORICAL:
            return len(self.levels_[name]) + 2
        return 3

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Integer codes per column; the last code of every column means 'missing'."""
        out = {}
        for name, kind in self.kinds_.items():
            missing_code = self.cardinality(name) - 1
            if name not in frame.columns:
                out[name] = np.full(len(frame), missing_code)
                continue
            column = frame[name]
            if kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
                values = _numbers(column, kind)
                codes = np.searchsorted(self.edges_[name], values, side="right")
                out[name] = np.where(np.isnan(values), missing_code, codes)
            elif kind is ColumnKind.CATEGORICAL:
                index = {v: i for i, v in enumerate(self.levels_[name])}
                other = len(index)
                out[name] = np.array(
                    [missing_code if _missing(v) else index.get(str(v), other) for v in column], dtype=np.int64
                )
            else:
                b = column.astype("boolean")
                out[name] = np.where(b.isna().to_numpy(), 2, b.fillna(False).to_numpy(dtype=int))
        return pd.DataFrame(out).astype(np.int64)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _numbers(column: pd.Series, kind: ColumnKind) -> np.ndarray:
    if kind is ColumnKind.DATETIME:
        return to_days(pd.to_datetime(column, errors="coerce").to_numpy())
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
