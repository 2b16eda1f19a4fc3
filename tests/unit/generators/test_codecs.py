from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from privsynth.errors import ConfigError
from privsynth.generators.tabular.codecs import (
    BooleanCodec,
    CategoricalCodec,
    DatetimeCodec,
    NumericalCodec,
    codec_from_dict,
)
from privsynth.profile.grids import fine_edges, to_days


def numerical(integer: bool = True) -> NumericalCodec:
    return NumericalCodec(
        "x",
        bin_edges=[-0.5, 10.5, 20.5, 100.5],
        fine_edges=list(fine_edges(0, 100, 256, integer=True)),
        fine_counts=[1.0] * 101,
        integer=integer,
        bounds=(0.0, 100.0),
        nullable=True,
        missing_rate=0.1,
        records=100,
        count_noise=0.0,
    )


def test_numerical_sampling_stays_in_its_bin_and_bounds(rng: np.random.Generator) -> None:
    codec = numerical()
    tokens = np.array([[0], [1], [2], [3]] * 500)
    values = codec.decode(tokens, rng)
    assert str(values.dtype) == "Int64"
    v = values.to_numpy(dtype=float, na_value=np.nan)
    assert ((v[0::4] >= 0) & (v[0::4] <= 10)).all()
    assert ((v[1::4] >= 11) & (v[1::4] <= 20)).all()
    assert ((v[2::4] >= 21) & (v[2::4] <= 100)).all()
    assert np.isnan(v[3::4]).all()
    # within-bin sampling spreads over the bin instead of repeating one value
    assert len(set(v[2::4])) > 30


def test_numerical_encode_matches_bins() -> None:
    codec = numerical()
    tokens = codec.encode(pd.Series([0, 10, 11, 100, None], dtype="Int64"))
    assert tokens[:, 0].tolist() == [0, 0, 1, 2, 3]


def test_categorical_round_trip_and_other() -> None:
    codec = CategoricalCodec("c", categories=["a", "b"], has_other=True, nullable=True, counts=[5, 3], records=10)
    tokens = codec.encode(pd.Series(["a", "b", "zzz", None], dtype=object))
    assert tokens[:, 0].tolist() == [0, 1, 2, 3]
    assert codec.decode(tokens, np.random.default_rng(0)).tolist() == ["a", "b", "__other__", None]
    with pytest.raises(ConfigError, match="not a category the model knows"):
        codec.condition("zzz")


def test_boolean_and_datetime_round_trip(rng: np.random.Generator) -> None:
    b = BooleanCodec("b", nullable=True, p_true=0.3, records=10)
    tokens = b.encode(pd.Series([True, False, None], dtype="boolean"))
    assert b.decode(tokens, rng).tolist() == [True, False, pd.NA]
    days = to_days(np.array(["2020-01-01", "2020-12-31"], dtype="datetime64[ns]"))
    d = DatetimeCodec(
        "d",
        date_only=True,
        bin_edges=[days[0], days[1] + 1],
        fine_edges=[days[0], days[1] + 1],
        fine_counts=[10.0],
        integer=False,
        bounds=(days[0], days[1] + 1),
        nullable=False,
    )
    stamps = pd.Series(pd.to_datetime(["2020-03-02", "2020-07-15"]))  # a Monday and a Wednesday
    encoded = d.encode(stamps)
    decoded = d.decode(np.tile(encoded, (200, 1)), rng)
    assert (decoded == decoded.dt.normalize()).all()  # date_only: whole days
    assert decoded.min() >= pd.Timestamp("2020-01-01") and decoded.max() <= pd.Timestamp("2021-01-01")
    assert set(decoded.dt.weekday[0::2]) <= {0} and set(decoded.dt.weekday[1::2]) <= {2}


@pytest.mark.parametrize(
    "codec", [numerical(), CategoricalCodec("c", categories=["a"], has_other=False, nullable=False)]
)
def test_to_dict_round_trip(codec) -> None:
    again = codec_from_dict(codec.to_dict())
    assert again.to_dict() == codec.to_dict()


def test_prior_marks_noisy_tokens_unreliable() -> None:
    codec = CategoricalCodec(
        "c",
        categories=["big", "tiny"],
        has_other=False,
        nullable=False,
        counts=[5000, 20],
        records=5020,
        count_noise=10.0,
    )
    prior = codec.prior()[0]
    assert prior is not None
    assert prior.reliable().tolist() == [True, False]
    assert prior.p.sum() == pytest.approx(1.0)


def test_a_prior_over_many_noisy_categories_keeps_the_big_ones_share(rng: np.random.Generator) -> None:
    # Adult at n=1,600, epsilon 1: one country holds 91 % of records and 40 hold the rest; profile noise 20 per
    # count. Clipping the noise at zero gave every empty country ~8 records (the United States came out at 71 %);
    # projected onto the DP record total, the prior stays within a few points of the truth.
    true = np.array([1460.0, *([0.0] * 30), *([14.0] * 10)])
    shares = []
    for _ in range(50):
        noisy = np.clip(true + rng.normal(0, 20.0, size=len(true)), 0.0, None)
        codec = CategoricalCodec(
            "country",
            categories=[f"c{i}" for i in range(len(true))],
            has_other=False,
            nullable=False,
            counts=noisy.tolist(),
            records=1600,
            count_noise=20.0,
        )
        prior = codec.prior()[0]
        assert prior is not None and prior.p.sum() == pytest.approx(1.0)
        shares.append(prior.p[0])
    assert abs(float(np.mean(shares)) - 1460 / 1600) < 0.03
    clipped = np.clip(true + rng.normal(0, 20.0, size=len(true)), 0.0, None)
    assert clipped[0] / clipped.sum() < 0.8  # what the clipped counts alone would have said


def test_numbers_come_out_with_the_declared_decimals_inside_the_bounds(rng: np.random.Generator) -> None:
    """A column recorded to one decimal (the demo's wbc): continuous samples told synthetic rows apart at AUC 0.91."""
    from privsynth.data.schema import schema_from_dict

    body = numerical(integer=False).to_dict() | {"bounds": [0.04, 99.96], "decimals": 1}
    codec = codec_from_dict(body)
    values = codec.decode(np.array([[0], [1], [2]] * 500), rng).to_numpy(dtype=float)
    assert np.allclose(values * 10, np.round(values * 10)) and len(np.unique(values)) > 50
    assert values.min() >= 0.1 and values.max() <= 99.9  # rounded inwards: never outside the bounds
    narrow = codec_from_dict(body | {"bounds": [0.04, 0.06]}).decode(np.array([[0]] * 50), rng).to_numpy(dtype=float)
    assert ((narrow >= 0.04) & (narrow <= 0.06)).all()  # no recorded value fits: kept as drawn, inside the bounds
    plain = codec_from_dict(body | {"decimals": None}).decode(np.array([[1]] * 200), rng).to_numpy(dtype=float)
    assert not np.allclose(plain * 10, np.round(plain * 10))  # positive control: without it, any decimals
    with pytest.raises(ValueError, match="contradicts 'integer: true'"):
        schema_from_dict(
            {
                "key": "id",
                "columns": {"id": {"kind": "key"}, "x": {"kind": "numerical", "integer": True, "decimals": 2}},
            },
            source="t",
        )
