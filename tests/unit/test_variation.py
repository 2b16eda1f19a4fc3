"""Controlled variation: what is asked is parsed strictly and split exactly."""

from __future__ import annotations

import pytest

from privsynth.errors import ConfigError
from privsynth.variation import parse_grid, parse_rebalance, split_counts


def test_rebalance_shares_are_normalised_and_uniform_is_the_default() -> None:
    assert parse_rebalance("dx=a:2,b:2").shares == {"a": 0.5, "b": 0.5}
    assert parse_rebalance("dx").shares == {} and parse_rebalance("dx").describe()["shares"] == "uniform"
    assert parse_rebalance("time=a:b:1").shares == {"a:b": 1.0}  # the last colon separates the share


@pytest.mark.parametrize("spec", ["=a:1", "dx=a", "dx=a:0", "dx=a:-1", "dx=a:nan", "dx=:1"])
def test_bad_rebalance_specs_say_what_to_write(spec: str) -> None:
    with pytest.raises(ConfigError, match="--rebalance"):
        parse_rebalance(spec)


def test_grid_needs_distinct_columns_and_a_positive_count() -> None:
    assert parse_grid("sex, diagnosis", 3).columns == ("sex", "diagnosis")
    for columns, per_cell in (("", 1), ("a,a", 1), ("a", 0)):
        with pytest.raises(ConfigError):
            parse_grid(columns, per_cell)


@pytest.mark.parametrize("n", [1, 7, 100, 1001])
def test_counts_add_up_exactly_and_follow_the_shares(n: int) -> None:
    shares = [0.5, 0.3, 0.2]
    counts = split_counts(n, shares)
    assert sum(counts) == n
    assert all(abs(c - s * n) < 1 for c, s in zip(counts, shares, strict=True))
