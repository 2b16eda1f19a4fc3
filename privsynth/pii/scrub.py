"""Identifier-like spans a text model wrote of its own accord, replaced by the record's registered fakes.

A fitted text model writes identities through placeholders (``<PERSON>``, ``<MRN>``...), filled at sampling from
the synthetic record's surrogate identity and its registered fakes for other people. Nothing stops it from also
writing a name, an SSN-like number or a phone number outside a placeholder: a name from the backbone's public
pretraining, two fakes run together ("Peggy Franklin Grant Ochoa" read as "Franklin Grant"), digits that look like
an SSN. Each such span the PII scanner finds, and that is not part of the record's own surrogate identity or of its
registered fakes for other people, is replaced by the registered fake of its kind (the other person's name, the
other phone...), exactly as the same span in a training text became an ``<OTHER_...>`` placeholder.

Privacy: post-processing. It reads the synthetic records, their surrogate identities and the public scanner
(patterns and Faker's public name lists), never a real record. It does not replace the audit: the audit still
scans what is released for every real identifier (the replay scan), which a scrub, reading no real data, cannot
know of. The count of replaced spans depends on the synthetic texts only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from privsynth.pii.detection import Detection
from privsynth.pii.placeholders import DETECTED, fill_placeholders

if TYPE_CHECKING:
    from privsynth.pii.engine import PiiScanner

log = logging.getLogger(__name__)

#: Detected kinds a scrub replaces: identifiers, each with a registered fake of its kind (an age over 89 is the
#: record's own field, not an identifier of anyone).
SCRUBBED = set(DETECTED) - {"AGE_OVER_89"}
#: Courtesy titles a name span may start with ("Mr. <LAST_NAME>"): not part of anyone's identity.
TITLES = {"mr", "ms", "mrs", "miss", "dr", "mx"}
#: Scans of a text at most: the texts a round changed are scanned again.
ROUNDS = 6
#: Surrogate fields that hold a person's name (``other_`` twins in ``others``).
NAME_FIELDS = ("first_name", "last_name", "person")


def _norm(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def _words(value: str) -> set[str]:
    return {w for w in (_norm(part) for part in re.split(r"[\s,]+", value)) if w}


class _Allowed:
    """What one record's text may hold: its surrogate identity and its registered fakes for other people."""

    def __init__(self, record: pd.Series, identity: pd.Series, others: pd.Series) -> None:
        values = [v for v in (*identity.to_numpy(), *others.to_numpy()) if isinstance(v, str) and v]
        # the record's own fields (its modelled columns, never a text) as placeholders write them: a category, a
        # whole number, a date
        values += [str(v) for v in record.to_numpy() if isinstance(v, str) and v]
        values += [
            str(int(v))
            for v in record.to_numpy()
            if isinstance(v, int | float | np.integer | np.floating) and float(v).is_integer()
        ]
        values += [
            pd.Timestamp(v).strftime(form)
            for v in record.to_numpy()
            if isinstance(v, pd.Timestamp)
            for form in ("%Y-%m-%d", "%m/%d/%Y")
        ]
        self.values = {_norm(v) for v in values} - {""}
        # each fake person's name words apart: "Smith, Jane" is the record's own, "Jane Ochoa" across two is not
        self.names = [
            set().union(*(_words(str(row.get(f))) for f in NAME_FIELDS if isinstance(row.get(f), str)))
            for row in (identity, others)
        ]

    def explains(self, entity: str, span: str) -> bool:
        key = _norm(span)
        if key in self.values:  # the record's own value: its fake's name, its category "Georgia"...
            return True
        if entity == "PERSON":
            words = _words(span) - TITLES
            return bool(words) and any(words <= name for name in self.names)
        return len(key) >= 4 and any(key in v for v in self.values)  # part of one: "878-0639" of its phone


def _clusters(found: Sequence[Detection]) -> list[list[Detection]]:
    """Detections grouped where they overlap, in text order."""
    groups: list[list[Detection]] = []
    end = -1
    for d in sorted(found, key=lambda d: (d.start, -d.end)):
        if groups and d.start < end:
            groups[-1].append(d)
            end = max(end, d.end)
        else:
            groups.append([d])
            end = d.end
    return groups


def _fake(entity: str, record: pd.Series, identity: pd.Series, others: pd.Series) -> str:
    """The record's registered fake of a detected kind (a ZIP code alone for a ZIP code, not a whole address)."""
    if entity == "US_ZIP_CODE" and isinstance(others.get("zip"), str):
        return str(others["zip"])
    return fill_placeholders(f"<{DETECTED[entity]}>", record, identity, others)


def scrub_text(
    text: str, found: Sequence[Detection], record: pd.Series, identity: pd.Series, others: pd.Series
) -> tuple[str, int]:
    """``text`` with its unexplained identifier spans replaced; returns it and how many places were.

    ``record`` holds the record's own modelled fields only (categories, numbers, dates), never a text column: a
    span found anywhere in a text would be part of that text.

    Overlapping detections are one place: the name detector reads "Franklin Grant" across "Peggy Franklin Grant
    Ochoa" (the record's fake and its other person's, run together), which reads as a third person. A place with an
    unexplained detection is written as its longest explained detection ("Peggy Franklin"), or, where none is, as the
    record's registered fake of the longest detection's kind.
    """
    allowed = _Allowed(record, identity, others)
    out, last, replaced = [], 0, 0
    for group in _clusters([d for d in found if d.entity in SCRUBBED]):
        verdicts = [allowed.explains(d.entity, text[d.start : d.end]) for d in group]
        if all(verdicts):
            continue
        explained = [d for d, ok in zip(group, verdicts, strict=True) if ok]
        longest = max(explained or group, key=lambda d: (d.end - d.start, d.score))
        start, end = min(d.start for d in group), max(d.end for d in group)
        written = text[longest.start : longest.end] if explained else _fake(longest.entity, record, identity, others)
        if written == text[start:end]:  # inside an explained span ("Oliver Hill" in its fake street address)
            continue
        out += [text[last:start], written]
        last, replaced = end, replaced + 1
    return "".join(out) + text[last:], replaced


def scrub_texts(
    texts: Sequence[str],
    fields: pd.DataFrame,
    identities: pd.DataFrame,
    others: pd.DataFrame,
    *,
    scanner: PiiScanner | None = None,
    column: str = "text",
) -> tuple[list[str], int]:
    """:func:`scrub_text` for every text of a sample (row ``i`` of each frame is text ``i``'s record).

    ``fields`` holds the records' modelled columns (what placeholders fill), no text column. Returns the texts and
    the number of places the model wrote an unexplained identifier (synthetic texts only: recorded in
    ``synthetic.json``, read by the audit): the first scan's replacements. Later rounds mend what a replacement ran
    into ("Peggy <fake> Ochoa"), the same place again, so they are not counted twice.
    """
    from privsynth.pii.engine import default_scanner

    scanner = scanner or default_scanner()
    out = list(texts)
    pending = [i for i, t in enumerate(texts) if t]
    total = 0
    # a replacement can meet a neighbouring name ("Peggy <fake> Ochoa"): the texts changed are scanned again
    for round_ in range(ROUNDS):
        found = scanner.scan_many([out[i] for i in pending])
        changed = []
        for i, hits in zip(pending, found, strict=True):
            out[i], replaced = scrub_text(out[i], hits, fields.iloc[i], identities.iloc[i], others.iloc[i])
            total += replaced if round_ == 0 else 0
            if replaced:
                changed.append(i)
        pending = changed
        if not pending:
            break
    if pending:  # the audit's detectors still count what is left
        log.info(
            "text '%s': %d text(s) still changed in the last of %d scrub rounds (not scanned again)",
            column,
            len(pending),
            ROUNDS,
        )
    if total:
        log.info(
            "text '%s': %d identifier-like span(s) the model wrote outside its placeholders replaced by the "
            "records' registered fakes",
            column,
            total,
        )
    return out, total


__all__ = ["SCRUBBED", "scrub_text", "scrub_texts"]
