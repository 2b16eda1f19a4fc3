"""Checks on what a fit is told is public, run before anything is spent.

Public inputs are trained on without noise, or start DP-SGD from weights whose spend this fit never counts, so
a mistake there bypasses the guarantee. Before the first mechanism, a fit refuses:

- a pretrained checkpoint (``text.pretrained``, ``image.pretrained``) that a DP fit produced *on this same corpus*
  (its provenance names the corpus' keyed fingerprint): fit again from scratch or from public pretraining instead.
  A checkpoint DP-fitted on *another* corpus is accepted, but that corpus may share people with this one (nothing
  here can tell), so its ledger's mechanisms are returned to be composed into this run's ledger;
- a checkpoint that is neither public pretraining (``privsynth pretrain-text``) nor a DP fit with provenance:
  nothing says what it learned from;
- public text (a pretraining checkpoint's text, ``text.public_corpus``) that holds texts of the private corpus,
  compared with *every* private record (holdout and records bounding drops included) on word n-grams
  (:mod:`privsynth.generators.text.overlap`).

The private texts are read only to decide; nothing of them is kept or shown (messages give counts).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from privsynth.data.corpus import Corpus
from privsynth.data.schema import ColumnKind
from privsynth.errors import ConfigError
from privsynth.generators.text.overlap import MIN_WORDS, Overlap, copied_texts, public_ngrams
from privsynth.privacy.ledger import PrivacyLedger

log = logging.getLogger(__name__)


def _meta(folder: Path, name: str, what: str) -> dict[str, Any]:
    path = folder / name
    if not path.is_file():
        raise ConfigError(f"{what} {folder} has no {name}: pass a folder written by privsynth")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(f"{what} {folder}: {name} is not readable JSON") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {folder}: {name} is not a JSON object")
    return data


def check_checkpoint(folder: Path, meta_name: str, *, what: str, fingerprint: str) -> dict[str, Any]:
    """Refuse a checkpoint fitted on this corpus, of unknown provenance, or whose spend cannot be composed."""
    meta = _meta(folder, meta_name, what)
    provenance = meta.get("provenance") or {}
    if meta.get("public_pretraining"):
        return meta
    if provenance.get("dp_fit"):
        if provenance.get("fingerprint") == fingerprint:
            raise ConfigError(
                f"{what} {folder} was fitted with DP on this same corpus (run {provenance.get('run_id')}): its "
                "spend is not part of this run's ledger, so starting from it would under-count. Fit from scratch "
                "or from a checkpoint trained on public data."
            )
        if not isinstance(provenance.get("ledger"), dict):
            raise ConfigError(
                f"{what} {folder} comes from a DP fit whose ledger it does not carry (an older privsynth): its "
                "spend cannot be composed with this run's. Fit it again with this version, or use public pretraining."
            )
        return meta
    raise ConfigError(
        f"{what} {folder} is not marked as public pretraining and carries no DP-fit provenance, so nothing says "
        "what it learned from. Write public checkpoints with 'privsynth pretrain-text' (text) or use a model "
        "privsynth fitted on another corpus."
    )


def _refuse_copies(overlap: Overlap, source: str) -> None:
    if overlap.unchecked > overlap.checked:  # no count in the log: both are exact statistics of the private texts
        log.warning(
            "%s: most private texts are too short (under %d words) or repeated word for word in other records for "
            "the overlap check; it cannot tell whether this source holds them: make sure it holds none",
            source,
            MIN_WORDS,
        )
    if overlap.copied:
        raise ConfigError(
            # no counts or shares: they are exact statistics of the private texts, and a message is a log
            f"{source} is not public: some private texts have most of their own word 8-grams in it. Public data "
            "is trained on without noise; never pass records of the corpus being fitted."
        )


def check_public_inputs(corpus: Corpus, *, text: Any, image: Any, fingerprint: str) -> list[dict[str, Any]]:
    """Every check above, for a fit of ``corpus`` with the ``text`` and ``image`` settings (before any spend).

    Returns the provenance (run id, ledger) of each DP-fitted checkpoint used, one per run, whose spend the fit
    must compose into its own ledger.
    """
    from privsynth.data.corpus import read_corpus
    from privsynth.generators.text.pretrain import PUBLIC_NGRAMS

    schema = corpus.schema
    texts = schema.names(ColumnKind.TEXT)
    private = [t for c in texts for t in corpus.records[c] if isinstance(t, str)]
    inherited: dict[str, dict[str, Any]] = {}
    if texts and getattr(text, "backbone", "byte") != "byte":
        from privsynth.generators.text.backbone import check_settings

        check_settings(text)  # the backbone is there and the settings fit it, before anything is spent
        if text.keyword_column is not None:
            from privsynth.generators.text.finetune import keyword_domain

            for column in texts:  # its categories are public (the schema's domain), or the fit stops here
                keyword_domain(schema, text.keyword_column, column)
    if texts and text.spacy_model:  # a NER model that is not on disk fails here, before anything is spent
        from privsynth.pii.engine import scanner_for

        scanner_for(text.spacy_model)
    if texts and text.pretrained is not None:
        meta = check_checkpoint(text.pretrained, "text.json", what="text.pretrained", fingerprint=fingerprint)
        _inherit(meta, inherited)
        if meta.get("public_pretraining"):
            path = text.pretrained / PUBLIC_NGRAMS
            if not path.is_file():
                raise ConfigError(
                    f"text.pretrained {text.pretrained} lacks {PUBLIC_NGRAMS}, which lets a fit check that its "
                    "public text holds no private record: write it again with this version's "
                    "'privsynth pretrain-text'"
                )
            hashes = np.sort(load_file(str(path))["hashes"].astype(np.int64))
            _refuse_copies(copied_texts(private, hashes), f"text.pretrained {text.pretrained}")
    if schema.names(ColumnKind.IMAGE) and image.pretrained is not None:
        meta = check_checkpoint(image.pretrained, "image.json", what="image.pretrained", fingerprint=fingerprint)
        _inherit(meta, inherited)
    if texts and text.public_corpus is not None:
        public = read_corpus(text.public_corpus)
        shared = [c for c in texts if c in public.records.columns]
        public_texts = [t for c in shared for t in public.records[c] if isinstance(t, str)]
        _refuse_copies(copied_texts(private, public_ngrams(public_texts)), f"text.public_corpus {text.public_corpus}")
    return list(inherited.values())


INHERITED_NOTE = (
    "inherited from a checkpoint DP-fitted on another corpus (run {run}): composed, since the corpora may share people"
)


def compose_inherited(ledger: PrivacyLedger, inherited: list[dict[str, Any]]) -> None:
    """Spend, in this run's ledger, the mechanisms of every DP-fitted checkpoint the fit starts from (once)."""
    for provenance in inherited:
        note = INHERITED_NOTE.format(run=provenance["run_id"])
        if any(e.note == note for e in ledger.entries):
            continue  # a resumed fit: already composed
        for entry in PrivacyLedger.from_state_dict(provenance["ledger"]).entries:
            ledger.spend(entry.stage, entry.mechanism, extra_delta=entry.extra_delta, note=note)


def _inherit(meta: dict[str, Any], into: dict[str, dict[str, Any]]) -> None:
    provenance = meta.get("provenance") or {}
    if provenance.get("dp_fit"):
        into[str(provenance.get("run_id"))] = provenance


__all__ = ["INHERITED_NOTE", "check_checkpoint", "check_public_inputs", "compose_inherited"]
