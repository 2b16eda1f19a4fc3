"""PII out before training, surrogates in at sampling.

Before a text is trained on, every occurrence of its record's own identifier values (the patient's name in any
order or casing, SSN, MRN, e-mail, phone, address, date of birth), its record's own dates and numbers, and every
PII span the (data-independent) detectors find, is replaced by a typed placeholder. Nothing from other records
is used: that keeps one person's removal from changing anyone else's training text. The model learns ``<PERSON>`` and
``<VAL:glucose>``, never a name or a lab value. At sampling, placeholders are filled from the synthetic record:
its surrogate identity and its own fields, so the name in the note is the name in the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from privsynth.data.schema import ColumnKind, PiiType, Schema
from privsynth.pii.detection import Detection

#: Detected entity -> the placeholder of its kind (an identifier of someone other than the record's own person).
DETECTED = {
    "PERSON": "OTHER_PERSON",
    "PHONE_NUMBER": "OTHER_PHONE",
    "EMAIL_ADDRESS": "OTHER_EMAIL",
    "STREET_ADDRESS": "OTHER_ADDRESS",
    "US_ZIP_CODE": "OTHER_ADDRESS",
    "US_SSN": "OTHER_ID",
    "MEDICAL_RECORD_NUMBER": "OTHER_ID",
    "US_PASSPORT": "OTHER_ID",
    "US_DRIVER_LICENSE": "OTHER_ID",
    "US_BANK_NUMBER": "OTHER_ID",
    "US_ITIN": "OTHER_ID",
    "MEDICAL_LICENSE": "OTHER_ID",
    "US_NPI": "OTHER_ID",
    "URL": "URL",
    "IP_ADDRESS": "IP_ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "VIN": "VIN",
    "AGE_OVER_89": "AGE_OVER_89",
}
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_US = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    name: str
    priority: int


def _words(value: str) -> list[str]:
    return [w for w in re.split(r"\s+", value.strip()) if w]


def _find(text: str, needle: str) -> Iterable[tuple[int, int]]:
    if len(needle) < 2:
        return
    pattern = re.compile(r"(?<![\w])" + re.escape(needle) + r"(?![\w])", re.IGNORECASE)
    for m in pattern.finditer(text):
        yield m.start(), m.end()


def _number_forms(value: float, integer: bool) -> list[str]:
    if integer:
        return [str(round(value))]
    forms = {f"{value:.1f}", f"{value:.2f}".rstrip("0").rstrip("."), f"{value:g}"}
    return sorted(forms, key=len, reverse=True)


def _dates(text: str) -> Iterable[tuple[int, int, str, pd.Timestamp]]:
    for m in _ISO.finditer(text):
        try:
            yield m.start(), m.end(), "iso", pd.Timestamp(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
    for m in _US.finditer(text):
        try:
            yield m.start(), m.end(), "us", pd.Timestamp(int(m.group(3)), int(m.group(1)), int(m.group(2)))
        except ValueError:
            continue


def mask_record_text(text: str, record: pd.Series, schema: Schema, detections: Sequence[Detection]) -> str:
    """``text`` with the record's identity, dates, values and every detected PII span as placeholders.

    Only the record itself and data-independent detectors decide what is masked: masking *other* records'
    identifier values here would make removing one person change other people's training texts, breaking the
    per-person sensitivity DP-SGD relies on. A name of another person that the detectors miss is protected
    by DP-SGD like any other rare string (and the audit's replay scan looks for it in the output).
    """
    spans = _own_identity_spans(text, record, schema)
    for column, spec in schema.columns.items():
        value = record.get(column)
        if _missing(value):
            continue
        if spec.kind is ColumnKind.NUMERICAL:
            for form in _number_forms(float(value), spec.integer):
                if len(form) >= 2:  # single digits ("type 2") are too ambiguous to link to a field
                    spans += [_Span(s, e, f"VAL:{column}", 3) for s, e in _find(text, form)]
        elif spec.kind is ColumnKind.CATEGORICAL and len(str(value)) >= 4:
            spans += [_Span(s, e, f"CAT:{column}", 2) for s, e in _find(text, str(value).replace("_", " "))]
    own_dates = {
        column: pd.Timestamp(record[column]).normalize()
        for column in schema.names(ColumnKind.DATETIME)
        if column in record and pd.notna(record[column])
    }
    for start, end, fmt, stamp in _dates(text):  # the birth date's own <DOB> span outranks these
        match = next((c for c, d in own_dates.items() if d == stamp), None)
        name = f"DATE:{match}|{fmt}" if match is not None else f"DATE:{fmt}"
        spans.append(_Span(start, end, name, 4))
    for d in detections:
        if d.entity in DETECTED:
            spans.append(_Span(d.start, d.end, DETECTED[d.entity], 1))
    return _apply(text, spans)


def mask_identity(text: str, record: pd.Series, schema: Schema) -> str:
    """``text`` with only its record's own identifier values (name, SSN, MRN, contact, birth date) as placeholders.

    For audits that compare real and synthetic text by content: a synthetic note's identity is a fresh fake drawn
    from the same public name lists as any real corpus' names, so leaving it in would make notes "close" because
    two fakes share a surname, which says nothing about memorisation (replay of real identifiers is the PII
    audit's job). Dates, values and categories are kept.
    """
    return _apply(text, _own_identity_spans(text, record, schema))


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _own_identity_spans(text: str, record: pd.Series, schema: Schema) -> list[_Span]:
    """Spans of the record's own identifier values, its birth date (in either format) included."""
    spans: list[_Span] = []
    for column, spec in schema.columns.items():
        value = record.get(column)
        if spec.kind is not ColumnKind.IDENTIFIER or spec.pii is None or _missing(value):
            continue
        spans += _identity_spans(text, str(value), spec.pii)
        if spec.pii is PiiType.DATE_OF_BIRTH:
            try:
                born = pd.Timestamp(str(value)).normalize()
            except ValueError:
                continue
            spans += [_Span(a, b, f"DOB:{fmt}", 5) for a, b, fmt, stamp in _dates(text) if stamp == born]
    return spans


def _identity_spans(text: str, value: str, pii: PiiType) -> list[_Span]:
    out: list[_Span] = []
    if pii is PiiType.PERSON:
        words = _words(value)
        if len(words) >= 2:
            first, last = " ".join(words[:-1]), words[-1]
            out += [_Span(s, e, "PERSON", 9) for s, e in _find(text, f"{first} {last}")]
            out += [_Span(s, e, "PERSON_REV", 9) for s, e in _find(text, f"{last}, {first}")]
            out += [_Span(s, e, "PERSON_REV", 9) for s, e in _find(text, f"{last} {first}")]
            out += [_Span(s, e, "LAST_NAME", 6) for s, e in _find(text, last) if len(last) >= 3]
            out += [_Span(s, e, "FIRST_NAME", 6) for s, e in _find(text, first) if len(first) >= 3]
        return out
    names = {
        PiiType.FIRST_NAME: "FIRST_NAME",
        PiiType.LAST_NAME: "LAST_NAME",
        PiiType.SSN: "SSN",
        PiiType.MRN: "MRN",
        PiiType.EMAIL: "EMAIL",
        PiiType.PHONE: "PHONE",
        PiiType.ADDRESS: "ADDRESS",
        PiiType.ZIP: "ZIP",
    }
    if pii in names:
        out += [_Span(s, e, names[pii], 8) for s, e in _find(text, value)]
        if pii is PiiType.ADDRESS:  # the street part alone ("12 Oak Street")
            street = value.split(",")[0]
            out += [_Span(s, e, "ADDRESS", 7) for s, e in _find(text, street)]
    return out


def _apply(text: str, spans: list[_Span]) -> str:
    """Replace non-overlapping spans, longest and highest-priority first."""
    chosen: list[_Span] = []
    for span in sorted(spans, key=lambda s: (-s.priority, -(s.end - s.start), s.start)):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    out, last = [], 0
    for span in sorted(chosen, key=lambda s: s.start):
        out.append(text[last : span.start])
        out.append(f"<{span.name}>")
        last = span.end
    out.append(text[last:])
    return "".join(out)


_FILL = re.compile(r"<([A-Z][A-Z0-9_]*(?::[A-Za-z0-9_.\-]+)?(?:\|[a-z]+)?)>")


def _format_date(value: object, fmt: str) -> str:
    stamp = pd.Timestamp(value)
    return stamp.strftime("%Y-%m-%d") if fmt == "iso" else stamp.strftime("%m/%d/%Y")


def fill_placeholders(text: str, record: pd.Series, identity: pd.Series, others: pd.Series) -> str:
    """Replace placeholders with the synthetic record's own values, identity and fresh fakes for other people."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        base, _, fmt = name.partition("|")
        kind, _, column = base.partition(":")
        if kind == "VAL" and column in record and pd.notna(record[column]):
            v = record[column]
            return str(int(v)) if float(v).is_integer() else f"{float(v):.1f}"
        if kind == "CAT" and column in record and record[column] is not None:
            return str(record[column]).replace("_", " ")
        if kind == "DATE" and column in record and pd.notna(record[column]):
            return _format_date(record[column], fmt or "iso")
        if kind == "DATE":
            reference = next((record[c] for c in record.index if isinstance(record[c], pd.Timestamp)), None)
            return _format_date(reference if reference is not None else pd.Timestamp("2024-01-01"), column or "iso")
        if kind == "DOB":
            return _format_date(identity.get("date_of_birth", "1970-01-01"), column or "iso")
        direct = {
            "PERSON": identity.get("person"),
            "FIRST_NAME": identity.get("first_name"),
            "LAST_NAME": identity.get("last_name"),
            "SSN": identity.get("ssn"),
            "MRN": identity.get("mrn"),
            "EMAIL": identity.get("email"),
            "PHONE": identity.get("phone"),
            "ADDRESS": identity.get("address"),
            "ZIP": identity.get("zip"),
            "PERSON_REV": f"{identity.get('last_name')}, {identity.get('first_name')}",
            "OTHER_PERSON": others.get("person"),
            "OTHER_PHONE": others.get("phone"),
            "OTHER_EMAIL": others.get("email"),
            "OTHER_ADDRESS": others.get("address"),
            "OTHER_ID": others.get("other"),
            "URL": others.get("url"),
            "IP_ADDRESS": others.get("ip_address"),
            "CREDIT_CARD": others.get("credit_card"),
            "IBAN": others.get("iban"),
            "VIN": others.get("vin"),
            "AGE_OVER_89": "90",
        }
        filled = direct.get(kind)
        return str(filled) if filled is not None else ""

    return _FILL.sub(value, text)
