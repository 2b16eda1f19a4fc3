"""What a fit is told is public is checked before anything is spent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from privsynth.config import load_config
from privsynth.data.corpus import read_corpus, write_corpus
from privsynth.data.demo import write_demo_corpus
from privsynth.errors import ConfigError
from privsynth.generators.public_inputs import check_public_inputs
from privsynth.generators.text.generator import TextConfig
from privsynth.generators.text.overlap import copied_texts, public_ngrams
from privsynth.generators.text.pretrain import pretrain_text
from privsynth.privacy.store import LedgerStore
from privsynth.synthesizer import Synthesizer

SMALL = Path(__file__).resolve().parents[3] / "configs" / "small.yaml"


@pytest.fixture(scope="module")
def fitted(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LedgerStore]:
    """A model DP-fitted on the demo corpus, and the ledger store whose key made its fingerprint."""
    store = LedgerStore(tmp_path_factory.mktemp("store") / "ledger.sqlite")
    folder = tmp_path_factory.mktemp("fitted") / "model"
    Synthesizer(load_config(SMALL)).fit(read_corpus(demo_dir), epsilon=3.0, store=store).save(folder)
    return folder, store


def _check(corpus, *, text: TextConfig, fingerprint: str = "hmac-sha256:this") -> None:
    image = load_config(SMALL).image
    check_public_inputs(corpus, text=text, image=image, fingerprint=fingerprint)


def test_a_checkpoint_fitted_on_this_corpus_is_refused_another_corpus_is_not(
    demo_dir: Path, fitted: tuple[Path, LedgerStore]
) -> None:
    # Before: text.pretrained / image.pretrained accepted a model DP-fitted on the same source, whose spend this
    # run never counts.
    corpus = read_corpus(demo_dir)
    fitted_model, store = fitted
    provenance = json.loads((fitted_model / "text-note" / "text.json").read_text())["provenance"]
    assert provenance["dp_fit"] and provenance["fingerprint"].startswith("hmac-sha256:")
    same = load_config(SMALL).text.model_copy(update={"pretrained": fitted_model / "text-note"})
    with pytest.raises(ConfigError, match="this same corpus"):
        _check(corpus, text=same, fingerprint=provenance["fingerprint"])
    inherited = check_public_inputs(
        corpus, text=same, image=load_config(SMALL).image, fingerprint="hmac-sha256:another-corpus"
    )
    assert [p["run_id"] for p in inherited] == [provenance["run_id"]]  # accepted, with its spend to compose
    image = load_config(SMALL).image.model_copy(update={"pretrained": fitted_model / "image-scan"})
    with pytest.raises(ConfigError, match="this same corpus"):
        check_public_inputs(corpus, text=load_config(SMALL).text, image=image, fingerprint=provenance["fingerprint"])
    # end to end, with the store that keyed the first fit: the refusal comes before anything is spent
    spent = len(store.rows())
    config = load_config(SMALL).model_copy(update={"text": same})
    with pytest.raises(ConfigError, match="this same corpus"):
        Synthesizer(config).fit(corpus, epsilon=2.0, store=store)
    assert len(store.rows()) == spent


def test_a_checkpoint_of_unknown_provenance_is_refused(demo_dir: Path, tmp_path: Path) -> None:
    # Before: public_pretraining was read but never enforced.
    corpus = read_corpus(demo_dir)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "text.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ConfigError, match="not marked as public pretraining"):
        _check(corpus, text=TextConfig(pretrained=folder))


def test_public_pretraining_text_holding_private_notes_is_refused(demo_dir: Path, tmp_path: Path) -> None:
    # Before: pretrain-text had no overlap check at all.
    corpus = read_corpus(demo_dir)
    config = load_config(SMALL).text
    honest = ["A paragraph of public prose that says nothing about any patient at all, long enough to count."] * 3
    pretrain_text(honest, config, tmp_path / "honest", steps=1)
    _check(corpus, text=config.model_copy(update={"pretrained": tmp_path / "honest"}))
    leaked = honest + [
        n.replace(name, "Someone Else")
        for n, name in zip(corpus.records["note"][:5], corpus.records["name"][:5], strict=True)
    ]
    pretrain_text(leaked, config, tmp_path / "leaked", steps=1)
    with pytest.raises(ConfigError, match="is not public: some private texts") as refused:
        _check(corpus, text=config.model_copy(update={"pretrained": tmp_path / "leaked"}))
    assert not re.search(r"\d+ of \d+|%", str(refused.value))  # no private count or share
    (tmp_path / "leaked" / "public-ngrams.safetensors").unlink()
    with pytest.raises(ConfigError, match="lacks public-ngrams"):
        _check(corpus, text=config.model_copy(update={"pretrained": tmp_path / "leaked"}))


def test_a_public_corpus_is_compared_with_every_private_record_on_word_ngrams(demo_dir: Path, tmp_path: Path) -> None:
    # Before: only exact texts of 40+ characters, and only against the bounded training split.
    corpus = read_corpus(demo_dir)
    public = read_corpus(write_demo_corpus(tmp_path / "public", n=120, seed=1001))  # other invented people
    config = load_config(SMALL).text
    _check(corpus, text=config.model_copy(update={"public_corpus": tmp_path / "public"}))
    # three private notes slipped in with the patient's name and one word changed: not exact copies
    private = corpus.records.tail(3)  # the holdout or records bounding drops: still private
    edited = [
        n.replace(name, "Pat Doe").replace("Plan", "Plans")
        for n, name in zip(private["note"], private["name"], strict=True)
    ]
    records = public.records.copy()
    records.loc[records.index[:3], "note"] = edited
    write_corpus(public.with_records(records), tmp_path / "leaky")
    with pytest.raises(ConfigError, match="is not public: some private texts"):
        _check(corpus, text=config.model_copy(update={"public_corpus": tmp_path / "leaky"}))
    # all three edited copies are found (the message names no count: it is a statistic of the private texts)
    leaky = read_corpus(tmp_path / "leaky").records["note"]
    assert copied_texts(corpus.records["note"], public_ngrams(leaky)).copied == 3


def test_honest_notes_of_the_same_template_are_not_copies(demo_dir: Path, tmp_path: Path) -> None:
    private = read_corpus(demo_dir).records["note"].dropna().tolist()
    public = read_corpus(write_demo_corpus(tmp_path / "p", n=400, seed=99)).records["note"].dropna().tolist()
    overlap = copied_texts(private, public_ngrams(public))
    assert overlap.copied == 0 and overlap.checked > 0.9 * len(private)
    assert copied_texts(private, public_ngrams(public + private[:4])).copied == 4


def test_short_private_texts_are_checked_whole_and_repeated_ones_are_said_unchecked(caplog) -> None:
    # Found in review: texts with fewer than 3 own 8-grams (a one-line review) were skipped, so a "public" copy
    # of a short-text corpus passed with nothing checked, and said nothing.
    import logging

    from privsynth.generators.public_inputs import _refuse_copies

    private = [f"Great blender number {i}, sturdy and quiet." for i in range(30)] + ["Works as described."] * 5
    honest = [f"Nice kettle model {i}, boils fast." for i in range(30)]
    overlap = copied_texts(private, public_ngrams(honest))
    assert (overlap.copied, overlap.checked, overlap.unchecked) == (0, 30, 5)
    copied = copied_texts(private, public_ngrams(honest + [t.upper() + " " for t in private[:7]]))
    assert copied.copied == 7  # the same words in the same order, case and punctuation aside
    with pytest.raises(ConfigError, match="is not public"):
        _refuse_copies(copied, "text.public_corpus p")
    repeated = ["Works as described."] * 8 + ["Fine."]
    with caplog.at_level(logging.WARNING):
        _refuse_copies(copied_texts(repeated, public_ngrams(repeated)), "text.public_corpus p")
    assert "cannot tell whether this source holds them" in caplog.text
    assert not re.search(r"\d+ of \d+", caplog.text)


def test_a_checkpoint_dp_fitted_on_another_corpus_has_its_spend_composed(
    fitted: tuple[Path, LedgerStore], tmp_path: Path
) -> None:
    # Found in review: a checkpoint fitted on a corpus that shares people with this one (any other fingerprint)
    # was accepted without its spend counting here. Nothing can tell the corpora are disjoint, so it is composed.
    from privsynth.privacy.ledger import PrivacyLedger

    fitted_model, _ = fitted
    first = PrivacyLedger.from_state_dict(json.loads((fitted_model / "ledger.json").read_text()))
    other = read_corpus(write_demo_corpus(tmp_path / "other", n=150, seed=11))
    config = load_config(SMALL)
    config = config.model_copy(
        update={"text": config.text.model_copy(update={"pretrained": fitted_model / "text-note"})}
    )
    second = Synthesizer(config).fit(other, epsilon=8.0)
    inherited = [e for e in second.ledger_.entries if "inherited" in e.note]
    assert [e.mechanism for e in inherited] == [e.mechanism for e in first.entries]
    assert second.ledger_.epsilon <= 8.0 and second.ledger_.projected_epsilon([]) == second.ledger_.epsilon
    with pytest.raises(Exception, match="would bring epsilon"):
        Synthesizer(config).fit(other, epsilon=1.0)  # the inherited spend alone passes this target


def test_a_ner_model_that_is_not_on_disk_is_refused_before_anything_is_spent(demo_dir: Path, tmp_path: Path) -> None:
    corpus = read_corpus(demo_dir)
    config = load_config(SMALL).text
    with pytest.raises(ConfigError, match=r"text\.spacy_model .* cannot be loaded"):
        _check(corpus, text=config.model_copy(update={"spacy_model": str(tmp_path / "en_core_web_lg")}))
