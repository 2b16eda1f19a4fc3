"""What a DP profile says came out degraded, and what to do: read from the profile alone (post-processing, free).

Used by ``privsynth fit`` for its end-of-fit summary. A finding names a column and a fix, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass

from privsynth.data.schema import ColumnKind, Schema
from privsynth.profile.model import CategoricalProfile, NumericalProfile, Profile, Source, TextProfile

#: A DP range wider than this many orders of magnitude is taken for noise (real columns rarely span more).
WIDE_DECADES = 6.0
#: Bounds seen only with windows of this many grid bins or more (a decade of magnitudes, 8 months) are coarse.
COARSE_WIDTH = 8


#: Why a column whose DP range was never seen is left out (see :func:`unplaced_columns`).
UNPLACED = "its DP range could not be told from the noise at any window width (any bounds would be a guess)"


@dataclass(frozen=True)
class Finding:
    """One degraded column: what came out and how to fix it."""

    column: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.column}: {self.problem}; {self.fix}"


def degraded_columns(profile: Profile, schema: Schema) -> list[Finding]:
    """Columns the DP profile shows as degraded (only '__other__', always missing, a range that is noise)."""
    found: list[Finding] = []
    for name, column in profile.columns.items():
        spec = schema.columns.get(name)
        if spec is None or (column.source is Source.PUBLIC and not isinstance(column, NumericalProfile | TextProfile)):
            continue
        if column.missing_rate >= 0.99 and not (spec.nullable and spec.kind is ColumnKind.IMAGE):
            found.append(Finding(name, "generated as always missing", "raise epsilon, or leave it out of the corpus"))
            continue
        if isinstance(column, CategoricalProfile) and column.source is Source.DP and not column.categories:
            found.append(
                Finding(
                    name,
                    "no category cleared the DP threshold, so every value is '__other__'",
                    "declare its domain in schema.yaml from a public codebook, or raise epsilon",
                )
            )
        elif isinstance(column, NumericalProfile) and column.source is Source.DP and not column.range_detected:
            found.append(
                Finding(
                    name,
                    f"{UNPLACED}, so it is left out of samples",
                    "declare bounds (or date_range) in schema.yaml from a public codebook, or raise epsilon",
                )
            )
        elif (
            isinstance(column, NumericalProfile)
            and column.source is Source.DP
            and (column.range_width or 1) >= COARSE_WIDTH
        ):
            found.append(
                Finding(
                    name,
                    f"its DP range was seen only in windows of {column.range_width} grid bins, so the bounds may be "
                    f"{'a decade' if column.kind == 'numerical' else f'{column.range_width} months'} or more too wide",
                    "declare bounds (or date_range) in schema.yaml from a public codebook, or raise epsilon",
                )
            )
        elif isinstance(column, NumericalProfile) and column.source is Source.DP and column.kind == "numerical":
            low, high = column.bounds
            span = max(abs(low), abs(high)) / max(min(abs(low), abs(high)), 1e-6) if low * high > 0 else None
            if (span is not None and span > 10**WIDE_DECADES) or max(abs(low), abs(high)) > 1e9:
                found.append(
                    Finding(
                        name,
                        f"its DP range [{low:.3g}, {high:.3g}] is mostly noise",
                        "declare bounds in schema.yaml from a public codebook, or raise epsilon",
                    )
                )
    return found


def unplaced_columns(profile: Profile) -> dict[str, str]:
    """Numbers and dates whose DP range was never seen, with why: the fit leaves them out of its samples.

    When no window of the public grid cleared the noise (:func:`privsynth.profile.ranges.detect_range`), the
    profile's bounds are the most significant window of pure noise, which can sit decades away from the data
    (a BMI drawn around -1e7 at 300 people). Sampling inside such bounds would be valid and meaningless, so the
    column is not generated at all; the fit's summary says so and how to fix it. Read from the DP profile
    alone: post-processing, free.
    """
    return {
        name: f"{UNPLACED}; declare bounds (or date_range) in schema.yaml from a public codebook, or raise epsilon"
        for name, column in profile.columns.items()
        if isinstance(column, NumericalProfile) and column.source is Source.DP and not column.range_detected
    }


__all__ = ["UNPLACED", "Finding", "degraded_columns", "unplaced_columns"]
