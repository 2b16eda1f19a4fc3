"""The sampling-time scrub: identifier spans a text model wrote outside its placeholders become registered fakes."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from privsynth.pii.engine import default_scanner
from privsynth.pii.scrub import SCRUBBED, scrub_text, scrub_texts
from privsynth.pii.surrogates import surrogate_identities


def _people(n: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    records = pd.DataFrame({"id": [f"S{i}" for i in range(n)], "age": np.arange(40, 40 + n)})
    return records, surrogate_identities(n, seed=11), surrogate_identities(n, seed=12)


def _unexplained(text: str, identity: pd.Series, others: pd.Series) -> list[str]:
    """Identifier spans of ``text`` that are not the record's own or its registered fakes (the check of
    benchmarks/demo_modalities.py, written again: the scrub must leave none)."""
    allowed_values = {str(v).lower() for v in (*identity.to_numpy(), *others.to_numpy()) if isinstance(v, str)}
    names = [
        {w.lower() for f in ("first_name", "last_name") for w in str(row[f]).split()} for row in (identity, others)
    ]
    out = []
    for d in default_scanner().scan(text):
        if d.entity not in SCRUBBED:
            continue
        span = text[d.start : d.end]
        words = {w.strip(".,").lower() for w in span.replace(",", " ").split()} - {"mr.", "ms.", "mr", "ms", "dr"}
        if d.entity == "PERSON" and any(words <= name for name in names):
            continue
        if span.lower() in allowed_values or any(span.lower() in v for v in allowed_values if len(span) >= 4):
            continue
        out.append(span)
    return out


def test_a_name_the_model_wrote_becomes_the_records_registered_other_person_and_its_own_stays() -> None:
    records, identities, others = _people()
    me, other = identities.iloc[0], others.iloc[0]
    text = f"Seen on Monday: {me['person']}, accompanied by her daughter Sarah Smith. SSN 536-22-8471."
    assert _unexplained(text, me, other)  # the positive control: the scanner finds the foreign name and SSN
    scrubbed, replaced = scrub_text(text, default_scanner().scan(text), records.iloc[0], me, other)
    assert replaced == 2
    assert "Sarah Smith" not in scrubbed and "536-22-8471" not in scrubbed
    assert f"{me['person']}, accompanied by her daughter {other['person']}." in scrubbed
    assert str(other["other"]) in scrubbed  # the SSN-like number: the registered fake identifier
    assert _unexplained(scrubbed, me, other) == []
    again, count = scrub_text(scrubbed, default_scanner().scan(scrubbed), records.iloc[0], me, other)
    assert (again, count) == (scrubbed, 0)  # nothing left to replace: a scrubbed text is a fixed point


def test_two_fakes_run_together_become_one_registered_name() -> None:
    # "Peggy Franklin Grant Ochoa": the name detector reads "Franklin Grant" across the record's fake and its
    # other person's, a third person to any reader
    records, identities, others = _people()
    me, other = identities.iloc[1], others.iloc[1]
    text = f"2022-09-28: {me['person']} {other['person']} {me['person']} {other['person']}, 45-year-old."
    scrubbed = scrub_texts([text], records.iloc[[1]], identities.iloc[[1]], others.iloc[[1]])[0][0]
    assert _unexplained(scrubbed, me, other) == []
    assert scrubbed.startswith("2022-09-28: ") and scrubbed.endswith(", 45-year-old.")


def test_texts_without_foreign_identifiers_are_left_exactly_as_they_were() -> None:
    records, identities, others = _people()
    texts = [
        f"{identities.iloc[0]['person']} (MRN {identities.iloc[0]['mrn']}) presented with cough.",
        "",
        f"Accompanied by {others.iloc[2]['person']}; contact {others.iloc[2]['phone']}. BP 120/80.",
    ]
    assert scrub_texts(texts, records, identities, others) == (texts, 0)


def test_the_records_own_fields_stay_and_the_log_says_how_many_without_a_span(caplog: pytest.LogCaptureFixture) -> None:
    # a number filled from the record (its account field, 12345678) reads as a bank number to the detectors
    records, identities, others = _people(2)
    records["account"] = [12345678, 87654321]
    records.index = [7, 3]  # frames are read by position, whatever their index
    identities.index, others.index = [5, 1], [9, 2]
    texts = ["Account 12345678 noted, then seen by Sarah Smith.", "Account 87654321."]
    found = default_scanner().scan(texts[0])
    assert any(texts[0][d.start : d.end] == "12345678" for d in found)  # the positive control
    with caplog.at_level(logging.INFO, logger="privsynth.pii.scrub"):
        out, replaced = scrub_texts(texts, records, identities, others, column="note")
    assert replaced == 1
    assert out[0] == f"Account 12345678 noted, then seen by {others.iloc[0]['person']}." and out[1] == texts[1]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "1 identifier-like span" in logged and "Sarah" not in logged and "Smith" not in logged


def test_a_place_mended_in_a_later_round_is_counted_once() -> None:
    # the first round replaces the foreign name; the second finds the replacement run into the next word (a
    # scanner that reads "<fake> Ochoa" as one name) and mends it: still one place the model wrote an identifier
    from privsynth.pii.detection import Detection

    records, identities, others = _people()
    text = "Seen with Sarah Smith Ochoa today."
    rounds: list[str] = []

    class TwoRounds:
        def scan_many(self, texts):  # type: ignore[no-untyped-def]
            (current,) = texts
            rounds.append(current)
            if len(rounds) == 1:
                start = current.index("Sarah Smith")
                return [[Detection("PERSON", start, start + len("Sarah Smith"), 0.9)]]
            if "Ochoa" in current:
                start = current.index("Seen with ") + len("Seen with ")
                return [[Detection("PERSON", start, current.index(" today"), 0.9)]]
            return [[]]

    out, replaced = scrub_texts([text], records.iloc[[0]], identities.iloc[[0]], others.iloc[[0]], scanner=TwoRounds())  # type: ignore[arg-type]
    assert out == [f"Seen with {others.iloc[0]['person']} today."]
    assert len(rounds) == 3 and replaced == 1  # replaced in rounds 1 and 2, the same place: counted once
