"""UCI Adult for benchmarks: load both files, drop missing rows and fnlwgt, split i.i.d., public codebook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]

# The Adult codebook (adult.names) plus the documented integer ranges: public metadata every method gets.
CATEGORIES: dict[str, list[str]] = {
    "workclass": [
        "Private",
        "Self-emp-not-inc",
        "Self-emp-inc",
        "Federal-gov",
        "Local-gov",
        "State-gov",
        "Without-pay",
        "Never-worked",
    ],
    "education": [
        "Bachelors",
        "Some-college",
        "11th",
        "HS-grad",
        "Prof-school",
        "Assoc-acdm",
        "Assoc-voc",
        "9th",
        "7th-8th",
        "12th",
        "Masters",
        "1st-4th",
        "10th",
        "Doctorate",
        "5th-6th",
        "Preschool",
    ],
    "marital_status": [
        "Married-civ-spouse",
        "Divorced",
        "Never-married",
        "Separated",
        "Widowed",
        "Married-spouse-absent",
        "Married-AF-spouse",
    ],
    "occupation": [
        "Tech-support",
        "Craft-repair",
        "Other-service",
        "Sales",
        "Exec-managerial",
        "Prof-specialty",
        "Handlers-cleaners",
        "Machine-op-inspct",
        "Adm-clerical",
        "Farming-fishing",
        "Transport-moving",
        "Priv-house-serv",
        "Protective-serv",
        "Armed-Forces",
    ],
    "relationship": ["Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried"],
    "race": ["White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black"],
    "sex": ["Female", "Male"],
    "native_country": [
        "United-States",
        "Cambodia",
        "England",
        "Puerto-Rico",
        "Canada",
        "Germany",
        "Outlying-US(Guam-USVI-etc)",
        "India",
        "Japan",
        "Greece",
        "South",
        "China",
        "Cuba",
        "Iran",
        "Honduras",
        "Philippines",
        "Italy",
        "Poland",
        "Jamaica",
        "Vietnam",
        "Mexico",
        "Portugal",
        "Ireland",
        "France",
        "Dominican-Republic",
        "Laos",
        "Ecuador",
        "Taiwan",
        "Haiti",
        "Columbia",
        "Hungary",
        "Guatemala",
        "Nicaragua",
        "Scotland",
        "Thailand",
        "Yugoslavia",
        "El-Salvador",
        "Trinadad&Tobago",
        "Peru",
        "Hong",
        "Holand-Netherlands",
    ],
    "income": ["<=50K", ">50K"],
}
RANGES: dict[str, tuple[int, int]] = {
    "age": (17, 90),
    "education_num": (1, 16),
    "capital_gain": (0, 99999),
    "capital_loss": (0, 4356),
    "hours_per_week": (1, 99),
}
# Public bins for methods that need every column categorical (MST, AIM): each whole number of the codebook range
# is its own category, except capital gains/losses whose ranges (100,000 and 4,357 values) are binned on fixed
# public edges, chosen before looking at the data.
BINS: dict[str, list[float]] = {
    "age": [x - 0.5 for x in range(17, 92)],
    "education_num": [x - 0.5 for x in range(1, 18)],
    "capital_gain": [0, 1, 1000, 2000, 3000, 4000, 5000, 7500, 10000, 15000, 20000, 50000, 100000],
    "capital_loss": [0, 1, 500, 1000, 1500, 1750, 2000, 2250, 2500, 3000, 4357],
    "hours_per_week": [x - 0.5 for x in range(1, 101)],
}
TARGET = "income"


def load_adult(folder: Path) -> pd.DataFrame:
    """Both files together, rows with '?' dropped, fnlwgt dropped, labels without the trailing dot."""
    frames = []
    for name, skip in (("adult.data.gz", 0), ("adult.test.gz", 1)):
        frame = pd.read_csv(
            folder / name, header=None, names=COLUMNS, skipinitialspace=True, skiprows=skip, na_values=["?"], dtype=str
        )
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True).dropna().drop(columns=["fnlwgt"])
    data["income"] = data["income"].str.rstrip(".")
    for name in RANGES:
        data[name] = data[name].astype(int)
    return data.reset_index(drop=True)


def split(data: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """I.i.d. split: train 50 %, holdout 25 %, oracle 25 % (never de-duplicated: duplicates are people)."""
    order = np.random.default_rng(seed).permutation(len(data))
    a, b = len(data) // 2, (3 * len(data)) // 4
    parts = (order[:a], order[a:b], order[b:])
    return tuple(data.iloc[p].reset_index(drop=True) for p in parts)  # type: ignore[return-value]


def schema_dict() -> dict[str, object]:
    """The schema privsynth gets, with the codebook declared public."""
    columns: dict[str, dict[str, object]] = {"id": {"kind": "key"}}
    for name in COLUMNS:
        if name == "fnlwgt":
            continue
        if name in RANGES:
            columns[name] = {"kind": "numerical", "integer": True, "bounds": list(RANGES[name]), "nullable": False}
        else:
            columns[name] = {"kind": "categorical", "domain": CATEGORIES[name], "nullable": False}
    return {"table": "records.parquet", "key": "id", "columns": columns}
