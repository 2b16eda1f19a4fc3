"""Sampling conditions (``--where``): a column fixed to a value, or held in a range.

``diagnosis=pneumonia`` and ``age=70`` fix a column (the generator conditions on it); ``age>=65``,
``age<80``, ``visit_date>=2023-01-01`` hold a numerical or date column in a range, by rejection: records are drawn
from the model as usual and those outside the range are set aside, so the kept ones follow the model's
distribution given the range. Conditions are post-processing of a DP model: they spend nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from privsynth.errors import ConfigError

_RANGE = re.compile(r"^(?P<name>[^<>=!]+?)\s*(?P<op>>=|<=|>|<)\s*(?P<value>.+)$")


@dataclass(frozen=True)
class Range:
    """``column OP value`` with OP one of ``>=``, ``>``, ``<=``, ``<``."""

    column: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value}"

    def threshold(self, dtype: Any) -> Any:
        """The value in the column's type (a number, or a timestamp for date columns)."""
        try:
            if pd.api.types.is_datetime64_any_dtype(dtype):
                stamp = pd.Timestamp(self.value)
                if stamp is pd.NaT:
                    raise ValueError(self.value)
                if stamp.tzinfo is not None:  # corpora hold naive UTC (validation converts time zones)
                    stamp = stamp.tz_convert("UTC").tz_localize(None)
                return stamp
            number = float(self.value)
        except (TypeError, ValueError):
            raise ConfigError(f"--where {self}: expected a number or an ISO 8601 date after '{self.op}'") from None
        if number != number:  # NaN
            raise ConfigError(f"--where {self}: expected a number after '{self.op}'")
        return number

    def mask(self, values: pd.Series) -> pd.Series:
        """Which values satisfy the range (missing values never do)."""
        limit = self.threshold(values.dtype)
        compare = {
            ">=": values.__ge__,
            ">": values.__gt__,
            "<=": values.__le__,
            "<": values.__lt__,
        }[self.op]
        return compare(limit).fillna(False).astype(bool)


def parse_conditions(items: list[str]) -> dict[str, Any]:
    """``COL=VALUE`` (``COL=`` asks for a missing value) and ``COL>=V``-style ranges into a mapping.

    A column may have one ``=`` condition, or up to two range bounds (``--where "age>=65" --where "age<80"``):
    a column with two bounds maps to a tuple of two :class:`Range`.

    >>> parse_conditions(["diagnosis=pneumonia", "age>=65"])
    {'diagnosis': 'pneumonia', 'age': Range(column='age', op='>=', value='65')}
    """
    out: dict[str, Any] = {}
    for item in items:
        ranged = _RANGE.match(item) if "=" not in item.partition(">")[0].partition("<")[0] else None
        if ranged is not None:
            cond = Range(ranged["name"].strip(), ranged["op"], ranged["value"].strip())
            previous = out.get(cond.column)
            if previous is None:
                out[cond.column] = cond
            elif isinstance(previous, Range) and previous.op[0] != cond.op[0]:
                out[cond.column] = (previous, cond)
            else:
                raise ConfigError(
                    f"--where gives column '{cond.column}' more than one lower or upper bound, or both "
                    "a value and a range"
                )
            continue
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(
                f"--where {item!r}: use COLUMN=VALUE or a range such as COLUMN>=VALUE, e.g. --where diagnosis=pneumonia"
            )
        if name in out:
            raise ConfigError(f"--where names column '{name}' twice")
        out[name] = value if value != "" else None
    return out


def split_conditions(conditions: Mapping[str, Any]) -> tuple[dict[str, Any], list[Range]]:
    """Fixed values (for the generators) and ranges (for rejection)."""
    fixed = {k: v for k, v in conditions.items() if not isinstance(v, Range | tuple)}
    ranges = [r for v in conditions.values() for r in (v if isinstance(v, tuple) else (v,)) if isinstance(r, Range)]
    return fixed, ranges


def describe(conditions: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ready conditions for provenance (ranges as text, e.g. ``'age>=65'``)."""
    out: dict[str, Any] = {}
    for key, value in conditions.items():
        if isinstance(value, tuple):
            out[key] = " and ".join(str(v) for v in value)
        elif isinstance(value, Range):
            out[key] = str(value)
        else:
            out[key] = value
    return out


__all__ = ["Range", "describe", "parse_conditions", "split_conditions"]
