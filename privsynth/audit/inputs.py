"""Inputs of an audit that come from privsynth artifacts: the model's split and the claimed guarantee."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from privsynth.data.corpus import Corpus
from privsynth.data.layout import MODEL_LEDGER, PROVENANCE, SPLIT
from privsynth.errors import ConfigError


def split_from_model(corpus: Corpus, model: Path) -> tuple[Corpus, Corpus]:
    """Train and holdout records of ``corpus`` as recorded by the model at fit time."""
    split = split_keys(model)
    keys = corpus.records[corpus.schema.key].astype(str)
    train = corpus.with_records(corpus.records[keys.isin(set(split["train"])).to_numpy()])
    holdout = corpus.with_records(corpus.records[keys.isin(set(split["holdout"])).to_numpy()])
    if len(train) != len(split["train"]) or len(holdout) != len(split["holdout"]):
        raise ConfigError(
            f"--corpus does not hold every record the model's split names ({len(train)}/{len(split['train'])} train, "
            f"{len(holdout)}/{len(split['holdout'])} holdout found): pass the corpus the model was fit on"
        )
    return train, holdout


def split_keys(model: Path) -> dict[str, list[str]]:
    """The record keys of the model's train and holdout (``internal/split.json``, owner-only)."""
    split_file = model / SPLIT
    if not split_file.is_file():
        raise ConfigError(f"{model} has no recorded split (internal/split.json); pass --train and --holdout")
    split = json.loads(split_file.read_text(encoding="utf-8"))
    keys = {side: [str(k) for k in split[side]] for side in ("train", "holdout")}
    named = keys["train"] + keys["holdout"]
    if len(set(named)) != len(named):  # a key twice, or on both sides: not a split privsynth wrote
        raise ConfigError(f"{split_file} names a record twice; it is damaged: fit again, or pass --train and --holdout")
    return keys


def claimed_guarantee(synthetic: Path, model: Path | None) -> dict[str, Any]:
    """The (epsilon, delta) and ledger a synthetic corpus claims: from its provenance, else the model's ledger."""
    provenance = synthetic / PROVENANCE
    if provenance.is_file():
        data = json.loads(provenance.read_text(encoding="utf-8"))
        return {
            "epsilon": data.get("epsilon"),
            "delta": data.get("delta"),
            "source": "synthetic.json",
            "ledger": data.get("ledger"),
        }
    if model is not None and (model / MODEL_LEDGER).is_file():
        ledger = json.loads((model / MODEL_LEDGER).read_text(encoding="utf-8"))
        return {
            "epsilon": ledger.get("epsilon"),
            "delta": ledger.get("delta"),
            "source": "model ledger",
            "ledger": ledger,
        }
    return {"epsilon": None, "delta": None, "source": "none (not a privsynth output)"}
