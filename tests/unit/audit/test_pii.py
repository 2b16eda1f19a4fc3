"""Tables of positive and negative cases for the offline PII detectors, the replay scan and classification."""

from __future__ import annotations

import subprocess
import sys
import threading

import pandas as pd
import pytest

from privsynth.audit.pii import audit_pii
from privsynth.audit.replay import ReplayScanner
from privsynth.data.corpus import Corpus
from privsynth.data.schema import Schema, schema_from_dict
from privsynth.pii.engine import PiiScanner


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner()


def entities(scanner: PiiScanner, text: str) -> set[tuple[str, str]]:
    return {(d.entity, text[d.start : d.end]) for d in scanner.scan(text)}


@pytest.mark.parametrize(
    ("text", "entity", "span"),
    [
        ("Seen today, MRN 40392817, stable.", "MEDICAL_RECORD_NUMBER", "40392817"),
        ("Medical record number: AB-1234567", "MEDICAL_RECORD_NUMBER", "AB-1234567"),
        ("Lives in Springfield, IL 62704 since May.", "US_ZIP_CODE", "62704"),
        ("zip code 90210-1234", "US_ZIP_CODE", "90210-1234"),
        ("Address: 5938 Juan Throughway Apt. 948, West Corey", "STREET_ADDRESS", "5938 Juan Throughway Apt. 948"),
        ("moved to 12 Oak Street last year", "STREET_ADDRESS", "12 Oak Street"),
        ("VIN 1M8GDM9AXKP042788 on file", "VIN", "1M8GDM9AXKP042788"),
        ("a 93-year-old woman", "AGE_OVER_89", "93"),
        ("aged 101 at admission", "AGE_OVER_89", "101"),
        ("Accompanied by her daughter Valerie Calderon.", "PERSON", "Valerie Calderon"),
        ("Smith, John was seen", "PERSON", "Smith, John"),
        ("Ms. Calderon reports pain", "PERSON", "Ms. Calderon"),
        ("write to ryan.chang51@yahoo.com today", "EMAIL_ADDRESS", "ryan.chang51@yahoo.com"),
        ("SSN 042-34-8377", "US_SSN", "042-34-8377"),
        ("call (413) 446-0409", "PHONE_NUMBER", "(413) 446-0409"),
        ("card 4111 1111 1111 1111", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("from 192.168.10.20", "IP_ADDRESS", "192.168.10.20"),
    ],
)
def test_detects(scanner: PiiScanner, text: str, entity: str, span: str) -> None:
    assert (entity, span) in entities(scanner, text)


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("an 80-year-old man", "AGE_OVER_89"),
        ("BP 120/74, glucose 96 mg/dL", "US_ZIP_CODE"),
        ("ABCDEFGHJKLMNPRST is not a VIN without digits", "VIN"),
        ("The chest is clear and the heart is normal.", "PERSON"),
        ("took 40392817 steps", "MEDICAL_RECORD_NUMBER"),
        ("contact ryan.chang51@yahoo.com", "URL"),  # the e-mail's domain is not reported as a URL
    ],
)
def test_does_not_detect(scanner: PiiScanner, text: str, entity: str) -> None:
    assert entity not in {e for e, _ in entities(scanner, text)}


def test_detectors_are_listed(scanner: PiiScanner) -> None:
    names = scanner.detectors
    assert names[0].startswith("blank-spacy")
    for expected in (
        "MrnRecognizer",
        "UsZipRecognizer",
        "StreetAddressRecognizer",
        "VinRecognizer",
        "AgeOver89Recognizer",
        "NameDictionaryRecognizer",
        "OfflineEmailRecognizer",
    ):
        assert expected in names


@pytest.mark.parametrize(
    ("needles", "text", "kinds"),
    [
        ([("person", "Ann Lee")], "met LEE, Ann today", ["person"]),
        ([("person", "Ann Lee")], "met lee ann today", ["person"]),
        ([("person", "Ann Lee")], "annalee was there", []),
        ([("ssn", "123-45-6789")], "ssn 123 45 6789", ["ssn"]),
        ([("ssn", "123-45-6789")], "id 91234567890", []),
        ([("email", "a.b@x.org")], "A.B@X.ORG wrote", ["email"]),
        ([("phone", "(413) 446-0409")], "call 413.446.0409", ["phone"]),
    ],
)
def test_replay_matches_normalised_values_on_word_boundaries(needles, text, kinds) -> None:
    replay = ReplayScanner()
    for kind, value in needles:
        replay.add(kind, [value])
    replay.finalize()
    assert [h.kind for h in replay.find(text)] == kinds


def _person_schema(**extra: dict[str, str]) -> Schema:
    """Key, a person's name, any ``extra`` columns, a note."""
    columns = {
        "id": {"kind": "key"},
        "name": {"kind": "identifier", "pii": "person"},
        **extra,
        "note": {"kind": "text"},
    }
    return schema_from_dict({"key": "id", "columns": columns}, source="t")


def test_surrogates_explain_generated_pii_and_real_values_do_not(scanner: PiiScanner) -> None:
    schema = _person_schema()
    real = Corpus(
        pd.DataFrame({"id": ["r1"], "name": ["Valerie Calderon"], "note": ["Valerie Calderon seen."]}, dtype=object),
        schema,
        root=None,
    )  # type: ignore[arg-type]
    synthetic = Corpus(
        pd.DataFrame(
            {
                "id": ["s1", "s2"],
                "name": ["Maria Lopez", "Dan Price"],
                "note": ["Maria Lopez was seen.", "Follow-up with Valerie Calderon."],
            },
            dtype=object,
        ),
        schema,
        root=None,  # type: ignore[arg-type]
    )
    registry = pd.DataFrame({"id": ["s1", "s2"], "person": ["Maria Lopez", "Dan Price"]})
    report = audit_pii(real, synthetic, scanner=scanner, registry=registry, ocr="off")
    assert report.replay["person"].unexplained == 1
    assert report.columns["note"]["PERSON"].generated >= 1
    assert report.columns["note"]["PERSON"].unexplained >= 1


def test_a_real_name_span_made_only_of_the_records_own_surrogate_name_is_generated() -> None:
    from privsynth.audit.pii import _name_groups, _own_name

    identity = pd.Series(
        {
            "first_name": "Jane",
            "last_name": "Chapman",
            "person": "Jane Chapman",
            "email": "jane.oliver@example.com",
            "address": "5800 Oliver Hill, Mccartyview, NH 82990",
            "other_first_name": "Dan",
            "other_last_name": "Price",
            "other_person": "Dan Price",
            "other_other": "ID-616e999439e2",
        }
    )
    names = _name_groups(identity)
    assert sorted(map(sorted, names)) == [["chapman", "jane"], ["dan", "price"]]
    assert _own_name("chapman, ms", names)  # a title plus the surrogate's surname
    assert _own_name("Jane Chapman", names) and _own_name("Dr. Jane Chapman", names)
    assert _own_name("Mr. Price", names) and _own_name("Dan Price", names)  # its other person (a relative)
    assert not _own_name("valerie chapman", names)  # a real first name the surrogate does not carry
    assert not _own_name("Jane Price", names)  # two fake persons' words make nobody's name
    assert not _own_name("Oliver Hill", names)  # words of its fake street and e-mail are no name of its own
    assert not _own_name("ms.", names)  # nothing but a title explains nothing


def test_the_records_own_surrogate_in_any_written_form_is_generated(scanner: PiiScanner) -> None:
    """A fluent note writes its surrogate as "Smith, Jane", "DOB 02/15/1941" and "a 92-year-old" (its age field)."""
    schema = _person_schema(age={"kind": "numerical"})
    real = Corpus(
        pd.DataFrame({"id": ["r1"], "name": ["Valerie Calderon"], "age": [40], "note": ["Seen."]}), schema, None
    )  # type: ignore[arg-type]
    note = "Lopez, Maria, a 92-year-old woman. DOB 02/15/1932; contact by phone."
    synthetic = Corpus(
        pd.DataFrame({"id": ["s1", "s2"], "name": ["Maria Lopez", "Dan Price"], "age": [92, 50], "note": [note, note]}),
        schema,
        None,  # type: ignore[arg-type]
    )
    registry = pd.DataFrame(
        {
            "id": ["s1", "s2"],
            "first_name": ["Maria", "Dan"],
            "last_name": ["Lopez", "Price"],
            "person": ["Maria Lopez", "Dan Price"],
            "date_of_birth": ["1932-02-15", "1974-06-01"],
        }
    )
    report = audit_pii(real, synthetic, scanner=scanner, registry=registry, ocr="off", include_examples=True)
    # record s1's note is its own surrogate throughout; the same note on record s2 is someone else's identity
    unexplained = {e["text"] for e in report.examples}
    assert unexplained == {"Lopez, Maria", "02/15/1932", "92"}
    assert report.unexplained == 3


def _audit_notes(scanner: PiiScanner, names: list[str], notes: list[str], registry: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """The PII audit of synthetic records s1, s2... with these names and notes, against one real record."""
    schema = _person_schema()
    real = Corpus(pd.DataFrame({"id": ["r1"], "name": ["Valerie Calderon"], "note": ["Seen."]}), schema, None)  # type: ignore[arg-type]
    keys = [f"s{i + 1}" for i in range(len(names))]
    synthetic = Corpus(pd.DataFrame({"id": keys, "name": names, "note": notes}), schema, None)  # type: ignore[arg-type]
    frame = pd.DataFrame({"id": keys, **registry})
    return audit_pii(real, synthetic, scanner=scanner, registry=frame, ocr="off", include_examples=True)


def test_another_records_date_or_name_explains_nothing_but_its_street_address_does(scanner: PiiScanner) -> None:
    """Could a real patient's date of birth pass as a fake? Not because some other record's fake has that date.

    With ten million records every date of a century is some record's surrogate birth date, and most common names
    some record's surrogate name: only distinctive fakes (a street address, a reserved URL) explain a span found in
    another record's text, and they are counted apart from the record's own.
    """
    # record s1's own surrogate name and date of birth, written in record s2's note
    note = "Maria Lopez, DOB 1932-02-15. Lives at 5938 Juan Throughway, West Corey, NH 03301."
    registry = {
        "person": ["Maria Lopez", "Dan Price"],
        "date_of_birth": ["1932-02-15", "1974-06-01"],
        "address": ["5938 Juan Throughway", "12 Oak Street"],
    }
    report = _audit_notes(scanner, ["Maria Lopez", "Dan Price"], ["Seen.", note], registry)
    note_counts = report.columns["note"]
    assert note_counts["DATE_TIME"].unexplained == 1 and note_counts["DATE_TIME"].other_record == 0
    assert note_counts["PERSON"].unexplained == 1 and note_counts["PERSON"].other_record == 0
    assert note_counts["STREET_ADDRESS"].other_record == 1 and note_counts["STREET_ADDRESS"].unexplained == 0
    assert {e["text"] for e in report.examples} >= {"1932-02-15", "Maria Lopez"}


def test_a_real_first_name_before_the_records_own_surrogate_surname_is_unexplained(scanner: PiiScanner) -> None:
    registry = {"person": ["Maria Lopez"], "last_name": ["Lopez"]}
    report = _audit_notes(scanner, ["Maria Lopez"], ["Ms. Lopez seen with Valerie Lopez."], registry)
    assert report.columns["note"]["PERSON"].generated >= 1  # Ms. Lopez: the record's own surname
    assert "Valerie Lopez" in {e["text"] for e in report.examples}


def test_a_name_made_of_words_of_the_records_fake_street_is_not_its_own(scanner: PiiScanner) -> None:
    """Only the record's surrogate names explain a name span, not the words its fake street is named after.

    Faker's streets are a surname and a suffix, and the suffixes include surnames (Hill, Park, Wells): a real
    "Valerie Hill" must not pass as the record's own because its fake street is "12 Valerie Hill", neither as a
    detected name nor as a replayed real one.
    """
    registry = {"person": ["Maria Lopez"], "address": ["12 Valerie Hill, Mccartyview, NH 82990"]}
    note = "Mr. Valerie was seen. Ms. Lopez too. Accompanied by her daughter Valerie Hill."
    schema = _person_schema()
    real = Corpus(pd.DataFrame({"id": ["r1"], "name": ["Valerie Hill"], "note": ["Seen."]}), schema, None)  # type: ignore[arg-type]
    synthetic = Corpus(pd.DataFrame({"id": ["s1"], "name": ["Maria Lopez"], "note": [note]}), schema, None)  # type: ignore[arg-type]
    frame = pd.DataFrame({"id": ["s1"], **registry})
    report = audit_pii(real, synthetic, scanner=scanner, registry=frame, ocr="off", include_examples=True)
    detected = {e["text"] for e in report.examples if e["check"] == "detector"}
    assert detected == {"Mr. Valerie", "Valerie Hill"}
    assert report.columns["note"]["PERSON"].generated == 1  # Ms. Lopez
    assert report.replay["person"].unexplained == 1  # the real patient Valerie Hill, replayed
    # written as part of its own address, those words are the record's own; the same words after it are not
    note = "Lives at 12 Valerie Hill, Mccartyview, NH 82990 with her daughter Valerie Hill."
    synthetic = Corpus(pd.DataFrame({"id": ["s1"], "name": ["Maria Lopez"], "note": [note]}), schema, None)  # type: ignore[arg-type]
    report = audit_pii(real, synthetic, scanner=scanner, registry=frame, ocr="off", include_examples=True)
    assert report.columns["note"]["PERSON"].generated == 1 and report.columns["note"]["PERSON"].unexplained == 1
    assert report.replay["person"].generated == 1 and report.replay["person"].unexplained == 1


def test_a_span_is_the_records_own_only_as_whole_words_of_its_values() -> None:
    """A real ZIP code inside the record's own card number, or a real surname inside its fake city, is not its own."""
    from privsynth.audit.pii import _within
    from privsynth.audit.replay import normalise, spaced

    written = {"(421) 310-3262", "4000311337785086", "Jacksonville", "debra.manning38@hotmail.com", "Jane Chapman"}
    own, own_written = {normalise(v) for v in written}, {spaced(v) for v in written}

    def mine(span: str) -> bool:
        return _within(normalise(span), own, spaced(span), own_written)

    assert mine("310-3262") and mine("(421) 310-3262")  # its own phone, whole or its local number
    assert mine("Chapman") and mine("jane chapman")
    assert not mine("77850")  # five digits inside its own card number: a real ZIP code would pass as its own
    assert not mine("Jackson")  # a real surname inside its fake city
    assert not mine("debra.ma")  # part of its own e-mail


def test_a_scanner_keeps_no_word_of_the_texts_it_scanned() -> None:
    """spaCy keeps every new string it tokenizes: a scanner that lives on (a Ray worker keeps it between an audit's
    scans) would hold the real names and numbers it read, unless each scan forgets them."""
    scanner = PiiScanner()
    vocabulary = scanner._engine[0].nlp_engine._blank.vocab.strings
    texts = ["Seen by Dr. Quillbright, MRN 48151623, re Zorvathian syndrome.", "Call Yelvaine on 555-013-7788."]
    words = ("Quillbright", "Zorvathian", "Yelvaine", "48151623")
    assert all(word not in vocabulary for word in words)
    found = scanner.scan_many(texts)
    assert found == [scanner.scan(text) for text in texts] and any(found)  # same detections either way
    assert [word for word in words if word in vocabulary] == []
    # positive control: the same pipeline outside the scanner keeps them
    scanner._engine[0].nlp_engine._blank(texts[0])
    assert "Quillbright" in vocabulary


def test_spans_the_sampling_scrub_replaced_are_reported_and_a_policy_can_warn_on_their_rate() -> None:
    # the PII scan reads texts after the scrub: without this a model writing foreign names and one that does not
    # would look alike to the gate
    from pathlib import Path

    from privsynth.audit.checks import BY_NAME
    from privsynth.audit.pii import scrubbed_at_sampling
    from privsynth.gate import gate, load_policy

    scrubbed = scrubbed_at_sampling({"note": 30, "summary": 120}, 1000)
    assert scrubbed == {"columns": {"note": 30, "summary": 120}, "records": 1000, "rate": 0.12}
    assert scrubbed_at_sampling({}, 1000)["rate"] is None  # no text column scrubbed: nothing to judge
    check = BY_NAME["pii_scrubbed_rate"]
    assert check.extract({"pii": {"scrubbed": scrubbed}}) == 0.12
    assert check.extract({"pii": {}}) is None and check.extract({}) is None
    policy = load_policy(Path(__file__).parents[3] / "audits" / "default.yaml")
    assert policy.checks["pii_scrubbed_rate"].severity.value == "soft"  # a warning: the texts are clean after it
    scanned = {"unexplained": 0, "scanned_cells": 1000, "replay_unexplained": 0}
    decision = gate(policy, {"pii": {**scanned, "scrubbed": scrubbed}}, None)
    assert any(w.check == "pii_scrubbed_rate" and w.value == 0.12 for w in decision.warnings)
    calm = gate(policy, {"pii": {**scanned, "scrubbed": scrubbed_at_sampling({"note": 3}, 2000)}}, None)
    assert not any(w.check == "pii_scrubbed_rate" for w in calm.warnings)


def test_the_datasheet_says_how_many_spans_the_sampling_scrub_replaced() -> None:
    from privsynth.release.documents import _scrubbed

    line = _scrubbed({"note": 3, "summary": 0})
    assert line.startswith("- After sampling, identifier-like spans") and "3 in `note`, 0 in `summary`" in line
    assert line.endswith(".\n") and _scrubbed({}) == ""


def test_importing_the_scanner_leaves_transformers_out_and_transformers_still_imports_after() -> None:
    """Presidio imports transformers.pipeline (and torchvision) for an engine privsynth never builds: 3.8 of the
    7.1 s a fresh process took to import it, paid by every audit and every Ray worker that scans."""
    code = (
        "import sys\n"
        "from privsynth.pii.engine import PiiScanner\n"
        "found = PiiScanner().scan('Seen today, MRN 40392817, stable.')\n"
        "assert [d.entity for d in found] == ['MEDICAL_RECORD_NUMBER'], found\n"
        "assert not {'transformers', 'torchvision'} & set(sys.modules), 'imported with Presidio'\n"
        "from privsynth.pii.presidio import PIPELINE_HOLDERS, hf_pipeline\n"
        # Presidio's Hugging Face engine and recognizer still work: their pipeline imports at first use
        "assert all(sys.modules[m].hf_pipeline is hf_pipeline for m in PIPELINE_HOLDERS)\n"
        "from presidio_analyzer.nlp_engine.huggingface_token_pipe import is_available\n"
        "assert is_available()\n"
        "import transformers.pipelines\n"  # hidden only while Presidio imported
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_transformers_is_hidden_only_from_the_thread_importing_presidio() -> None:
    from privsynth.pii.presidio import HideTransformers

    finder = HideTransformers()
    with pytest.raises(ModuleNotFoundError, match="hidden while Presidio imports"):
        finder.find_spec("transformers.pipelines", None)
    assert finder.find_spec("transformers_extra", None) is None  # another package whose name starts alike
    seen: list[object] = []
    other = threading.Thread(target=lambda: seen.append(finder.find_spec("transformers", None)))
    other.start()
    other.join()
    assert seen == [None]
