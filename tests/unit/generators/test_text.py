from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from privsynth.data.corpus import read_corpus
from privsynth.data.demo import demo_schema
from privsynth.data.schema import schema_from_dict
from privsynth.generators.text.tokens import EOS, FIRST_PLACEHOLDER, PLACEHOLDER_BYTES, Vocabulary, public_word_pieces
from privsynth.pii.engine import PiiScanner
from privsynth.pii.placeholders import fill_placeholders, mask_record_text


def test_tokenizer_is_bytes_plus_schema_placeholders_and_learns_nothing_from_data(tmp_path: Path) -> None:
    from privsynth.config import load_config
    from privsynth.data.corpus import Corpus
    from privsynth.synthesizer import Synthesizer

    schema = schema_from_dict(
        {"key": "id", "columns": {"id": {"kind": "key"}, "note": {"kind": "text", "max_length": 60}}}, source="t"
    )
    notes = [f"zqx {i % 9} frobnicated the quuxes of blorp {i % 5}" for i in range(80)]
    corpus = Corpus(
        records=pd.DataFrame({"id": [f"r{i}" for i in range(80)], "note": notes}), schema=schema, root=tmp_path
    )
    config = load_config(Path(__file__).parents[3] / "configs" / "small.yaml")
    config = config.model_copy(update={"text": config.text.model_copy(update={"words": 300})})
    fitted = Synthesizer(config).fit(corpus, epsilon=50.0).texts_["note"].vocab_
    # the schema and a public word list only: none of the corpus' frequent made-up words became a token
    assert fitted == Vocabulary.for_schema(schema, public_word_pieces(300))
    assert not {" zqx", " frobnicated", " blorp", "zqx"} & set(fitted.pieces)
    a = Vocabulary.for_schema(demo_schema())
    text = "Caf\u00e9 <PERSON> seen <DATE:visit_date|iso>, <VAL:glucose> mg/dL <NOT_A_PLACEHOLDER>"
    ids = a.encode(text)
    assert all(i < 256 or i >= FIRST_PLACEHOLDER for i in ids)
    assert a.decode([*ids, EOS, 65]) == text
    assert a.id_of("PERSON") in ids and "VAL:glucose" in a.placeholders


def test_word_pieces_are_public_and_lossless_and_shorten_text() -> None:
    pieces = public_word_pieces(500)
    assert pieces == public_word_pieces(500)  # read from a public file: the same whatever corpus is fitted
    assert {" the", " The", "the", "The"} <= set(pieces) and all(p.strip(" ").isalpha() for p in pieces)
    vocab = Vocabulary.for_schema(demo_schema(), pieces)
    assert vocab.size == FIRST_PLACEHOLDER + len(vocab.placeholders) + len(pieces)
    text = "The patient <PERSON> was seen; Caf\u00e9 crackles\nand  orthopnea, <VAL:glucose> mg/dL <NOT_ONE>"
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text  # byte fallback: nothing is lost or normalised
    assert len(ids) < len(text.encode("utf-8")) - 20
    assert vocab.id_of("PERSON") in ids and vocab.first_piece + pieces.index(" was") in ids
    assert sum(vocab.byte_lengths[i] for i in ids) >= len(text.encode("utf-8")) - 2 * len("<PERSON>")


def test_truncation_counts_bytes_not_tokens() -> None:
    vocab = Vocabulary.for_schema(demo_schema(), public_word_pieces(200))
    ids = vocab.encode("the the the the <PERSON>")
    assert vocab.truncate(ids, 8) == ids[:2]  # "the" is 3 bytes, " the" 4
    assert vocab.truncate(ids, 16 + PLACEHOLDER_BYTES) == ids
    assert vocab.truncate(ids, 15 + PLACEHOLDER_BYTES) == ids[:-1]


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


def test_removing_one_person_changes_no_one_elses_training_text() -> None:
    # Neighbouring corpora must stay neighbours: record a's note names person b, whom no detector knows. Masking
    # a's note with b's identifier values (the old CorpusIdentifiers) made a's training text depend on b's presence.
    from privsynth.data.corpus import Corpus
    from privsynth.generators.text.generator import TextGenerator

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
            "id": ["a", "b", "c"],
            "name": ["Ann Lee", "Zyqrix Vambleworth", "Cy Dunn"],
            "ssn": ["111-22-3333", "512-44-9081", "623-11-4410"],
            "note": ["Seen with her cousin Zyqrix Vambleworth today.", "x", "Follow-up for Cy Dunn."],
        },
        dtype=object,
    )
    everyone = Corpus(records=records, schema=schema, root=Path("."))
    without_b = everyone.with_records(records[records["id"] != "b"])
    vocab = Vocabulary.for_schema(schema)
    generator, scanner = TextGenerator(), PiiScanner()
    with_b = generator._training_sequences(everyone, "note", vocab, scanner)
    no_b = generator._training_sequences(without_b, "note", vocab, scanner)
    assert with_b[0] == no_b[0] and with_b[2] == no_b[1]  # a's and c's texts do not depend on b
    assert "Cy Dunn" not in vocab.decode(no_b[1])  # a record's own identity is still masked
    assert "<PERSON>" in vocab.decode(no_b[1])


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


def test_cached_sampling_follows_the_full_forward_pass() -> None:
    import torch

    from privsynth.generators.text.network import TextLM

    torch.manual_seed(0)
    network = TextLM(output_vocab=20, prefix_vocab=5, max_len=16, dim=16, layers=2, heads=2)
    network.eval()
    for parameter in network.parameters():  # sharper logits, so a near-zero temperature is an argmax
        parameter.data.mul_(8)
    start = torch.tensor([[21, 23, 3], [20, 24, 7]])
    out = network.generate(start, max_new=6, eos=19, generator=torch.Generator().manual_seed(0), temperature=1e-4)
    full = torch.cat([start, out], dim=1)
    positions = torch.arange(full.shape[1]).expand(2, -1).contiguous()
    greedy = network(full[:, :-1], positions[:, :-1]).argmax(dim=-1)[:, start.shape[1] - 1 :]
    for row in range(2):
        ended = (out[row] == 19).nonzero()
        stop = int(ended[0]) + 1 if len(ended) else out.shape[1]
        assert torch.equal(greedy[row, :stop], out[row, :stop])


def test_identity_masking_for_audits_hides_only_the_records_own_identity(demo_dir: Path) -> None:
    from privsynth.pii.placeholders import mask_identity

    corpus = read_corpus(demo_dir)
    row = corpus.records.iloc[0]
    masked = mask_identity(row["note"], row, corpus.schema)
    assert row["mrn"] not in masked and row["name"].split()[-1] not in masked and "<MRN>" in masked
    assert str(row["visit_date"].date()) in masked  # dates, values and words are content: kept
    words = [w for w in row["note"].split() if w.isalpha() and w.islower()]
    assert all(w in masked for w in words)


def test_a_pretrained_checkpoint_is_copied_token_by_token(tmp_path: Path) -> None:
    import json

    import torch
    from safetensors.torch import save_file

    from privsynth.generators.text.generator import META, WEIGHTS, _load_pretrained
    from privsynth.generators.text.network import TextLM

    theirs = Vocabulary(("PERSON",), (" the",))
    mine = Vocabulary(("MRN", "PERSON"), (" a", " the"))
    torch.manual_seed(0)
    public = TextLM(output_vocab=theirs.size, prefix_vocab=0, max_len=8, dim=16, layers=1, heads=2)
    save_file({k: v.contiguous() for k, v in public.state_dict().items()}, str(tmp_path / WEIGHTS))
    meta = {"public_pretraining": True, "placeholders": list(theirs.placeholders), "pieces": list(theirs.pieces)}
    (tmp_path / META).write_text(json.dumps(meta), encoding="utf-8")
    network = TextLM(output_vocab=mine.size, prefix_vocab=3, max_len=12, dim=16, layers=1, heads=2)
    fresh = network.tokens.weight.detach().clone()
    _load_pretrained(network, tmp_path, prefix_length=2, vocab=mine)
    rows, theirs_rows = mine.names(), theirs.names()
    for name in ("b:41", "<PERSON>", "p: the"):
        for layer in ("tokens", "head"):
            got = getattr(network, layer).weight[rows.index(name)]
            assert torch.equal(got, getattr(public, layer).weight[theirs_rows.index(name)])
    for name in ("<MRN>", "p: a"):  # unknown to the checkpoint: left as initialised
        assert torch.equal(network.tokens.weight[rows.index(name)], fresh[rows.index(name)])
    assert torch.equal(network.positions.weight[2:10], public.positions.weight[:8])  # shifted past the prefix


def _ner_model(folder: Path) -> Path:
    """A spaCy pipeline on disk that knows one name (an entity ruler: a stand-in for a user's NER model)."""
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "zorblax"}, {"LOWER": "quenti"}]}])
    nlp.to_disk(folder)
    return folder


def test_a_name_many_notes_share_is_masked_before_training_only_by_a_ner_model(tmp_path: Path) -> None:
    # A clinician named in every note is not the records' subject: DP bounds each record's influence, not that
    # of a name many records share, so only the masking protects it. Patterns and Faker's lists miss this one.
    from privsynth.data.corpus import Corpus
    from privsynth.errors import ConfigError
    from privsynth.generators.text.generator import TextConfig, TextGenerator
    from privsynth.pii.engine import scanner_for

    schema = schema_from_dict(
        {"key": "id", "columns": {"id": {"kind": "key"}, "note": {"kind": "text"}}},
        source="t",
    )
    notes = [f"Visit {i}: seen by Zorblax Quenti, stable." for i in range(3)]
    corpus = Corpus(
        records=pd.DataFrame({"id": ["a", "b", "c"], "note": notes}, dtype=object), schema=schema, root=tmp_path
    )
    plain = TextGenerator()._masked_texts(corpus, "note", scanner_for(TextConfig().spacy_model))
    assert all("Zorblax Quenti" in t for t in plain if t)
    model = str(_ner_model(tmp_path / "ner"))
    config = TextConfig(spacy_model=model)
    masked = TextGenerator(config)._masked_texts(corpus, "note", scanner_for(config.spacy_model))
    assert all(t and "Zorblax" not in t and "<OTHER_PERSON>" in t for t in masked)  # not the subject: another
    with pytest.raises(ConfigError, match="cannot be loaded"):
        scanner_for(str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="nothing is downloaded"):  # Presidio would download a package it lacks
        scanner_for("en_core_web_zz")
