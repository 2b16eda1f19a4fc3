"""A PII span found in a text (no Presidio import: what code that only reads detections needs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detection:
    """One PII span found in a text."""

    entity: str
    start: int
    end: int
    score: float


__all__ = ["Detection"]
