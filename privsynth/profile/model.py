"""The profile: per-column metadata generators need (categories, bounds, bins, lengths, missing rates).

Each column profile says where its numbers came from: ``public`` (declared in schema.yaml, exact, free), ``dp``
(learned under the ledger), or ``exact`` (read from the records without noise; only in internal profiles, which
generators refuse).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from privsynth.data.atomic import write_text_atomic
from privsynth.errors import ConfigError

PROFILE_VERSION = 1
OTHER = "__other__"  # token standing for every category not released by the DP histogram


class Source(StrEnum):
    """Where a column's metadata came from."""

    PUBLIC = "public"
    DP = "dp"
    EXACT = "exact"
    CONFIG = "config"


class _Column(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Source
    missing_rate: float = Field(ge=0, le=1)


class CategoricalProfile(_Column):
    """Released categories (most frequent first), their noisy counts, and whether an 'other' token is needed."""

    kind: Literal["categorical"] = "categorical"
    categories: tuple[str, ...]
    counts: tuple[float, ...]
    has_other: bool


class NumericalProfile(_Column):
    """Bounds, quantile bin edges, and a fine histogram inside the bounds (for within-bin sampling).

    Datetime columns use the same profile with values in days since 1970-01-01.
    """

    kind: Literal["numerical", "datetime"] = "numerical"
    integer: bool
    bounds: tuple[float, float]
    bin_edges: tuple[float, ...]
    fine_edges: tuple[float, ...]
    fine_counts: tuple[float, ...]
    #: For bounds learned under DP: the window (grid bins) at which the data were seen, and whether they were
    #: seen at all (see :mod:`privsynth.profile.ranges`); ``None`` for declared bounds and older profiles.
    range_width: int | None = None
    range_detected: bool = True


class BooleanProfile(_Column):
    """Share of true values among present ones."""

    kind: Literal["boolean"] = "boolean"
    p_true: float = Field(ge=0, le=1)


class TextProfile(_Column):
    """Length distribution in characters and a length generators may stop at."""

    kind: Literal["text"] = "text"
    max_length: int = Field(gt=0)
    length_edges: tuple[float, ...]
    length_counts: tuple[float, ...]
    length_quantiles: dict[str, float]


class ImageProfile(_Column):
    """Size and mode synthetic images are generated at."""

    kind: Literal["image"] = "image"
    size: tuple[int, int]
    mode: Literal["L", "RGB"]


ColumnProfile = Annotated[
    CategoricalProfile | NumericalProfile | BooleanProfile | TextProfile | ImageProfile,
    Field(discriminator="kind"),
]


class Profile(BaseModel):
    """Everything generators may know about the real corpus besides what they learn by DP-SGD."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = PROFILE_VERSION
    internal: bool = Field(description="True for exact profiles: never used by generators, never released.")
    records: int = Field(
        ge=0,
        description="Records after contribution bounding: in DP profiles, estimated from the noisy histograms "
        "(post-processing), never the exact count; exact only in internal profiles.",
    )
    units: int | None = Field(
        default=None, ge=1, description="The fit's DP count of units of privacy (sets sample rates and delta)."
    )
    sampler: str | None = Field(default=None, description="What drew the profile's noise.")
    unit_of_privacy: str
    max_records_per_entity: int
    noise_multiplier: float | None = Field(description="Noise std / sensitivity of every profiling query.")
    queries: int = Field(ge=0)
    columns: dict[str, ColumnProfile]
    ledger: dict[str, Any] | None = None

    def require_dp(self) -> None:
        """Refuse an internal (exact) profile where only DP or public metadata may be used."""
        if self.internal:
            raise ConfigError(
                "this profile is INTERNAL (exact values, no privacy); generators only use DP profiles. "
                "Run 'privsynth profile' without --internal."
            )


def save_profile(profile: Profile, path: Path) -> None:
    """Write a profile as JSON atomically; internal profiles are written owner-only (0600)."""
    payload = profile.model_dump(mode="json")
    if profile.internal:
        payload = {"WARNING": "INTERNAL: exact statistics of real records. Do not share or release."} | payload
    write_text_atomic(path, json.dumps(payload, indent=2), mode=0o600 if profile.internal else 0o644)


def load_profile(path: Path) -> Profile:
    """Read a profile written by :func:`save_profile`."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the profile ({type(exc).__name__})") from None
    payload.pop("WARNING", None)
    return Profile.model_validate(payload)
