from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from privsynth.audit.pii.engine import PiiScanner
from privsynth.data.corpus import read_corpus
from privsynth.data.demo import demo_schema
from privsynth.data.schema import schema_from_dict
from privsynth.generators.text.placeholders import CorpusIdentifiers, fill_placeholders, mask_record_text
from privsynth.generators.text.tokens import EOS, FIRST_PLACEHOLDER, Vocabulary


def test_tokenizer_is_bytes_plus_schema_placeholders_and_learns_nothing_from_data() -> None:
    a = Vocabulary.for_schema(demo_schema())
    b = Vocabulary.for_schema(demo_schema())
    assert a == b  # depends on the (public) schema only: no state fitted on any text
    text = "Caf\u00e9 <PERSON> seen <DATE:visit_date|iso>, <VAL:glucose> mg/dL <NOT_A_PLACEHOLDER>"
    ids = a.encode(text)
    assert all(i < 256 or i >= FIRST_PLACEHOLDER for i in ids)
    assert a.decode([*ids, EOS, 65]) == text
    assert a.id_of("PERSON") in ids and "VAL:glucose" in a.placeholders


def test_placeholders_round_trip_with_the_records_own_identity(demo_dir: Path) -> None:
    corpus = read_corpus(demo_dir)
    scanner = PiiScanner()
    row = corpus.records.iloc[0]
    masked = mask_record_text(row["note"], row, corpus.schema, scanner.scan(row["note"]))
    first, last = row["name"].split(" ", 1)[0], row["name"].split(" ")[-1]
    for secret in (row["mrn"], last, str(row["visit_date"].date())):
        assert secret not in masked
    assert "<MRN>" in masked and "<DATE:visit_date|iso>" in masked and "<VAL:age>" in masked
    identity = pd.Series(
        {
            "person": "Ada Byron",
            "first_name": "Ada",
            "last_name": "Byron",
            "mrn": "11112222",
            "date_of_birth": "1950-01-02",
        }
    )
    others = pd.Series({"person": "Eve Other"})
    synthetic = row.copy()
    synthetic["age"], synthetic["visit_date"] = 70, pd.Timestamp("2022-02-02")
    filled = fill_placeholders(masked, synthetic, identity, others)
    assert "11112222" in filled and "2022-02-02" in filled and "70-year-old" in filled
    assert row["mrn"] not in filled and first not in filled.split("Ada")[0]
    assert any(n in filled for n in ("Ada Byron", "Byron, Ada", "Byron"))


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("Seen with her brother Jamal Okonkwo-Reyes today.", "Jamal Okonkwo-Reyes"),
        ("Called OKONKWO-REYES, JAMAL about results.", "OKONKWO-REYES, JAMAL"),
        ("SSN on file 512-44-9081.", "512-44-9081"),
    ],
)
def test_every_corpus_identifier_is_masked_even_when_detectors_miss_it(text: str, hidden: str) -> None:
    schema = schema_from_dict(
        {
            "key": "id",
            "columns": {
                "id": {"kind": "key"},
                "name": {"kind": "identifier", "pii": "person"},
                "ssn": {"kind": "identifier", "pii": "ssn"},
                "note": {"kind": "text"},
            },
        },
        source="t",
    )
    records = pd.DataFrame(
        {
            "id": ["a", "b"],
            "name": ["Ann Lee", "Jamal Okonkwo-Reyes"],
            "ssn": ["111-22-3333", "512-44-9081"],
            "note": [text, "x"],
        },
        dtype=object,
    )
    masked = mask_record_text(text, records.iloc[0], schema, [], CorpusIdentifiers(records, schema))
    assert hidden.lower() not in masked.lower()
    assert "<OTHER_" in masked


def test_placeholders_with_digits_in_their_type_are_tokens_and_are_filled() -> None:
    vocab = Vocabulary.for_schema(demo_schema())
    ids = vocab.encode("aged <AGE_OVER_89> years")
    assert vocab.id_of("AGE_OVER_89") in ids
    filled = fill_placeholders(
        "aged <AGE_OVER_89> years", pd.Series(dtype=object), pd.Series(dtype=object), pd.Series(dtype=object)
    )
    assert "<" not in filled and "90" in filled


def test_public_text_reader_names_what_to_fix(tmp_path: Path) -> None:
    from privsynth.errors import ConfigError
    from privsynth.generators.text.pretrain import read_public_texts

    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait, a long enough paragraph".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_public_texts([tmp_path / "latin1.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no public \.txt files"):
        read_public_texts([tmp_path / "empty"])
    (tmp_path / "short.txt").write_text("tiny\n\nalso tiny", encoding="utf-8")
    with pytest.raises(ConfigError, match="20 characters"):
        read_public_texts([tmp_path / "short.txt"])
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.txt").write_text("A paragraph of public prose, long enough.\n\nAnd a second one here too.")
    documents, sources = read_public_texts([tmp_path / "ok"])
    assert len(documents) == 2 and sources[0]["file"] == "a.txt" and len(sources[0]["sha256"]) == 64


def test_a_public_corpus_is_masked_with_the_schemas_placeholders(demo_dir: Path) -> None:
    from privsynth.generators.text.pretrain import public_corpus_documents

    corpus = read_corpus(demo_dir)
    documents, placeholders = public_corpus_documents(corpus, "note")
    assert placeholders == Vocabulary.for_schema(corpus.schema).placeholders
    names = set(corpus.records["name"])
    assert not any(name in doc for doc in documents for name in names)
    assert any("<PERSON" in doc or "<MRN>" in doc for doc in documents)
