"""Surrogate identities: fake direct identifiers for synthetic records, seeded per record.

Identifier columns are never modelled. Each synthetic record gets one coherent fake identity (name, SSN, e-mail,
phone, address, MRN, date of birth...) drawn from Faker's public word lists with randomness derived from
``(seed, record index, field)`` alone, so record ``i`` gets the same identity whatever else is sampled. The
identity is consistent with the record's own fields where the schema makes that possible: a column named
``sex``/``gender`` picks the first name, a column named ``age`` and the record's first date fix the date of
birth. Later stages (text) reuse the same identity so the name in the note is the name in the table.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from faker.providers.address.en_US import Provider as AddressProvider
from faker.providers.internet.en_US import Provider as InternetProvider
from faker.providers.person.en_US import Provider as PersonProvider

from privsynth.data.schema import ColumnKind, PiiType, Schema

_FEMALE = np.array(list(PersonProvider.first_names_female), dtype=object)
_MALE = np.array(list(PersonProvider.first_names_male), dtype=object)
_LAST = np.array(list(PersonProvider.last_names), dtype=object)
_SUFFIX = np.array(list(AddressProvider.street_suffixes), dtype=object)
_CITY_SUFFIX = np.array(list(AddressProvider.city_suffixes), dtype=object)
_STATES = np.array(list(AddressProvider.states_abbr), dtype=object)
_DOMAINS = np.array(list(InternetProvider.free_email_domains), dtype=object)
_FAMOUS_SSNS = {"078-05-1120", "123-45-6789", "219-09-9999"}
_REFERENCE = dt.date(2025, 1, 1)

IDENTITY_FIELDS = (
    "first_name",
    "last_name",
    "person",
    "sex",
    "ssn",
    "email",
    "phone",
    "address",
    "zip",
    "mrn",
    "date_of_birth",
    "ip_address",
    "url",
    "credit_card",
    "iban",
    "account",
    "license",
    "vin",
    "other",
)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-mixed 64-bit hash of each element."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniform(seed: int, index: np.ndarray, field: int) -> np.ndarray:
    """Uniform [0, 1) numbers that depend only on (seed, record index, field).

    >>> a = uniform(1, np.arange(3), 0); b = uniform(1, np.array([2]), 0)
    >>> bool(a[2] == b[0]), bool((a >= 0).all() and (a < 1).all())
    (True, True)
    """
    with np.errstate(over="ignore"):
        key = (
            np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
            + index.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)
            + np.uint64(field) * np.uint64(0x8CB92BA72F3D8DD7)
        )
    return (_mix(_mix(key)) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class _Draw:
    """Per-field uniform draws for a block of records."""

    def __init__(self, seed: int, index: np.ndarray) -> None:
        self.seed, self.index, self.field = seed, index, 0

    def u(self) -> np.ndarray:
        self.field += 1
        return uniform(self.seed, self.index, self.field)

    def ints(self, low: int, high: int) -> np.ndarray:
        """Integers in [low, high)."""
        return (low + np.floor(self.u() * (high - low))).astype(np.int64)

    def pick(self, options: np.ndarray) -> np.ndarray:
        return options[self.ints(0, len(options))]

    def digits(self, count: int) -> np.ndarray:
        return np.array([f"{v:0{count}d}" for v in self.ints(0, 10**count)], dtype=object)


def _sex_values(records: pd.DataFrame) -> np.ndarray | None:
    for name in records.columns:
        if name.lower() in {"sex", "gender"}:
            text = records[name].astype(str).str.strip().str.lower()
            return np.where(text.str.startswith(("f", "w")), "F", np.where(text.str.startswith("m"), "M", "?"))
    return None


def _reference_dates(records: pd.DataFrame, schema: Schema | None) -> np.ndarray:
    dates = np.full(len(records), np.datetime64(_REFERENCE, "D"))
    if schema is None:
        return dates
    for name in schema.names(ColumnKind.DATETIME):
        if name in records.columns:
            values = pd.to_datetime(records[name], errors="coerce").to_numpy().astype("datetime64[D]")
            return np.where(np.isnat(values), dates, values)
    return dates


def surrogate_identities(
    n: int, *, seed: int, records: pd.DataFrame | None = None, schema: Schema | None = None, start: int = 0
) -> pd.DataFrame:
    """One fake identity per synthetic record (rows ``start`` .. ``start + n - 1``)."""
    index = np.arange(start, start + n)
    draw = _Draw(seed, index)
    frame = records if records is not None else pd.DataFrame(index=range(n))
    sex = _sex_values(frame) if records is not None else None
    coin = np.where(draw.u() < 0.5, "F", "M")
    sex = coin if sex is None else np.where(np.isin(sex, ["F", "M"]), sex, coin)
    first = np.where(sex == "F", draw.pick(_FEMALE), draw.pick(_MALE))
    last = draw.pick(_LAST)
    letters = np.vectorize(lambda s: "".join(c for c in s.lower() if c.isalpha()), otypes=[object])
    email = letters(first) + "." + letters(last) + draw.ints(1, 100).astype(str).astype(object) + "@"
    email = email + draw.pick(_DOMAINS)
    area = draw.ints(1, 900)
    area = np.where(area == 666, 667, area)
    ssn = np.array(
        [f"{a:03d}-{g:02d}-{s:04d}" for a, g, s in zip(area, draw.ints(1, 100), draw.ints(1, 10_000), strict=True)],
        dtype=object,
    )
    ssn = np.where(np.isin(ssn, list(_FAMOUS_SSNS)), "321-54-9876", ssn)
    phone = np.array(
        [
            f"({a}) {e}-{s:04d}"
            for a, e, s in zip(draw.ints(201, 990), draw.ints(201, 1000), draw.ints(0, 10_000), strict=True)
        ],
        dtype=object,
    )
    zips = draw.digits(5)
    city = draw.pick(_LAST).astype(str) + draw.pick(_CITY_SUFFIX).astype(str)
    address = (
        draw.ints(1, 9999).astype(str).astype(object)
        + " "
        + draw.pick(_LAST)
        + " "
        + draw.pick(_SUFFIX)
        + ", "
        + city.astype(object)
        + ", "
        + draw.pick(_STATES)
        + " "
        + zips
    )
    ages = None
    if records is not None and "age" in records.columns:
        ages = pd.to_numeric(records["age"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    years = np.where(np.isnan(ages), draw.ints(18, 90), ages) if ages is not None else draw.ints(18, 90)
    reference = _reference_dates(frame, schema)
    days = (np.asarray(years, dtype=np.float64) * 365.25 + draw.ints(1, 365)).astype(np.int64)
    birth = (reference - days.astype("timedelta64[D]")).astype(str).astype(object)
    hexes = np.array([f"{v:012x}" for v in draw.ints(0, 2**48)], dtype=object)
    return pd.DataFrame(
        {
            "first_name": first,
            "last_name": last,
            "person": first + " " + last,
            "sex": sex,
            "ssn": ssn,
            "email": email,
            "phone": phone,
            "address": address,
            "zip": zips,
            "mrn": draw.digits(8),
            "date_of_birth": birth,
            "ip_address": "192.0.2." + draw.ints(1, 255).astype(str).astype(object),  # TEST-NET-1: never routable
            "url": "https://example.org/u/" + hexes,
            "credit_card": np.array([_luhn("4000" + d) for d in draw.digits(11)], dtype=object),
            "iban": "XX00TEST" + draw.digits(10),
            "account": draw.digits(10),
            "license": draw.pick(np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ"), dtype=object)) + draw.digits(7),
            "vin": "1FAKE" + np.array([h[:12].upper() for h in hexes], dtype=object),
            "other": "ID-" + hexes,
        }
    )


def _luhn(partial: str) -> str:
    """Append the Luhn check digit (test cards start with 4000: never real)."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        digit = int(ch)
        if i % 2 == 0:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return partial + str((10 - total % 10) % 10)


_FIELD_OF = {
    PiiType.PERSON: "person",
    PiiType.FIRST_NAME: "first_name",
    PiiType.LAST_NAME: "last_name",
    PiiType.EMAIL: "email",
    PiiType.PHONE: "phone",
    PiiType.SSN: "ssn",
    PiiType.MRN: "mrn",
    PiiType.ADDRESS: "address",
    PiiType.ZIP: "zip",
    PiiType.DATE_OF_BIRTH: "date_of_birth",
    PiiType.IP_ADDRESS: "ip_address",
    PiiType.URL: "url",
    PiiType.CREDIT_CARD: "credit_card",
    PiiType.IBAN: "iban",
    PiiType.ACCOUNT: "account",
    PiiType.LICENSE: "license",
    PiiType.VIN: "vin",
    PiiType.OTHER: "other",
}


def identity_field(pii: PiiType) -> str:
    """The identity field a PII type is filled from."""
    return _FIELD_OF[pii]


def fill_identifiers(records: pd.DataFrame, schema: Schema, identities: pd.DataFrame) -> pd.DataFrame:
    """Add every identifier column of the schema to synthetic ``records`` from their ``identities``."""
    out = records.copy()
    for name, spec in schema.columns.items():
        if spec.kind is ColumnKind.IDENTIFIER and spec.pii is not None:
            out[name] = identities[identity_field(spec.pii)].to_numpy()
    return out
