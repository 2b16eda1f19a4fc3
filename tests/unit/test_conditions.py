"""--where parsing: values, missing values and ranges."""

from __future__ import annotations

import pandas as pd
import pytest

from privsynth.conditions import Range, describe, parse_conditions, split_conditions
from privsynth.errors import ConfigError


def test_values_ranges_and_missing() -> None:
    parsed = parse_conditions(["diagnosis=pneumonia", "age>=65", "age<80", "bmi=", "note=a<b"])
    assert parsed["diagnosis"] == "pneumonia" and parsed["bmi"] is None and parsed["note"] == "a<b"
    assert parsed["age"] == (Range("age", ">=", "65"), Range("age", "<", "80"))
    fixed, ranges = split_conditions(parsed)
    assert set(fixed) == {"diagnosis", "bmi", "note"} and [str(r) for r in ranges] == ["age>=65", "age<80"]
    assert describe(parsed)["age"] == "age>=65 and age<80"


@pytest.mark.parametrize("items", [["age>=1", "age>2"], ["age=3", "age>2"], ["age=1", "age=2"], ["nonsense"], ["=3"]])
def test_contradictory_or_malformed_conditions_are_refused(items: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_conditions(items)


def test_a_range_masks_numbers_and_dates_and_never_keeps_missing_values() -> None:
    numbers = pd.Series([1, 5, None, 9], dtype="Int64")
    assert Range("x", ">", "4").mask(numbers).tolist() == [False, True, False, True]
    dates = pd.Series(pd.to_datetime(["2020-01-01", "2023-06-01", None]))
    assert Range("d", ">=", "2023-01-01").mask(dates).tolist() == [False, True, False]
