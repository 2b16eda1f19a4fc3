"""Auditing what lies in folders: the one entry point ``privsynth audit`` and ``privsynth run`` share.

The real records come either from the corpus a model was fitted on, split as the model recorded it (train: the
records DP-SGD saw; holdout: people kept out), or from explicit train and holdout corpora (any tool's output).
The canaries of a model fitted with ``--canaries`` and the surrogate registry of a privsynth synthetic corpus are
picked up when present. Writes ``audit.json`` and ``report.html`` into ``out``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from privsynth.audit.inputs import claimed_guarantee, split_from_model, split_keys
from privsynth.audit.pii import Needles, find_needles
from privsynth.audit.reading import AuditedReal, read_for_audit, read_real_for_audit, read_split_for_audit
from privsynth.audit.registry import read_registry
from privsynth.audit.report import write_report
from privsynth.audit.run import (
    SYNTHETIC_SEED_OFFSET,
    AuditConfig,
    Collaborators,
    audit_read,
    pii_scanner,
    real_in_memory,
    write_audit,
)
from privsynth.data.corpus import Corpus
from privsynth.data.layout import load_canaries, load_provenance
from privsynth.data.schema import Schema
from privsynth.errors import ConfigError


@dataclass(frozen=True)
class AuditOutcome:
    """The audit document and where it and its report were written."""

    result: dict[str, Any]
    audit_json: Path
    report: Path


def read_real(
    cfg: AuditConfig,
    tools: Collaborators,
    *,
    model: Path | None = None,
    corpus: Path | Corpus | None = None,
    train: Path | None = None,
    holdout: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditedReal:
    """Train and holdout as the audit needs them: from a model's recorded split of ``corpus``, or given explicitly.

    Folders are streamed (only the audit's picks, the pre-flight's hashes and the replay needles are kept); a
    corpus already in memory (``privsynth run``) is used as it is.
    """
    say = progress if progress is not None else (lambda _m: None)
    scan = None
    if cfg.pii and tools.pii is not None:
        scanner, engine = tools.pii, tools.engine

        def scan(records: pd.DataFrame, schema: Schema) -> Needles:
            return find_needles(records, schema, scanner, engine)

    say("reading the real records" + (" and gathering their identifiers for the replay scan" if cfg.pii else ""))
    if model is not None:
        if corpus is None:
            raise ConfigError("--model needs --corpus (the real corpus it was fit on)")
        if isinstance(corpus, Corpus):
            return real_in_memory(*split_from_model(corpus, model), cfg, tools, say)
        keys = split_keys(model)
        return read_split_for_audit(
            corpus, train_keys=keys["train"], holdout_keys=keys["holdout"], rows=cfg.max_rows, seed=cfg.seed, scan=scan
        )
    if train is None or holdout is None:
        raise ConfigError("pass --train and --holdout, or --model and --corpus")
    return read_real_for_audit(train=train, holdout=holdout, rows=cfg.max_rows, seed=cfg.seed, scan=scan)


def audit_folders(
    synthetic: Path,
    out: Path,
    *,
    model: Path | None = None,
    corpus: Path | Corpus | None = None,
    train: Path | None = None,
    holdout: Path | None = None,
    config: AuditConfig | None = None,
    collaborators: Collaborators | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditOutcome:
    """Audit a synthetic corpus folder against real records; write ``audit.json`` and ``report.html``.

    Corpora in folders are read batch by batch (:mod:`privsynth.audit.reading`): memory holds the records the
    audit compares (``max_rows`` a side), not the corpora.
    """
    cfg = config if config is not None else AuditConfig()
    tools = collaborators if collaborators is not None else Collaborators()
    if cfg.pii and tools.pii is None:
        tools = dataclasses.replace(tools, pii=pii_scanner(cfg))
    real = read_real(cfg, tools, model=model, corpus=corpus, train=train, holdout=holdout, progress=progress)
    provenance = load_provenance(synthetic)
    asked = provenance.get("variation")
    streamed = read_for_audit(synthetic, rows=cfg.max_rows, seed=cfg.seed + SYNTHETIC_SEED_OFFSET, asked=asked)
    key = streamed.corpus.schema.key
    result = audit_read(
        real,
        streamed,
        config=cfg,
        collaborators=tools,
        # the audited records' own surrogates, and hashes of every other record's (not the registry whole)
        registry=read_registry(synthetic, key, streamed.corpus.records.get(key, ())),
        claimed=claimed_guarantee(synthetic, model),
        scrubbed=provenance.get("text_scrubbed"),  # the spans sampling replaced before this scan (synthetic only)
        canaries=load_canaries(model) if model is not None else None,
        progress=progress,
    )
    if streamed.variation is not None:  # controlled variation: what sampling asked against what the records hold
        result["variation"] = streamed.variation
    audit_json = write_audit(result, out)
    return AuditOutcome(result=result, audit_json=audit_json, report=write_report(result, out))


__all__ = ["AuditOutcome", "audit_folders", "read_real"]
