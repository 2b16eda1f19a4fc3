"""Auditing what lies in folders: the one entry point ``privsynth audit`` and ``privsynth run`` share.

The real records come either from the corpus a model was fitted on, split as the model recorded it (train: the
records DP-SGD saw; holdout: people kept out), or from explicit train and holdout corpora (any tool's output).
The canaries of a model fitted with ``--canaries`` and the surrogate registry of a privsynth synthetic corpus are
picked up when present. Writes ``audit.json`` and ``report.html`` into ``out``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privsynth.audit.inputs import claimed_guarantee, split_from_model
from privsynth.audit.reading import read_for_audit
from privsynth.audit.report import write_report
from privsynth.audit.run import SYNTHETIC_SEED_OFFSET, AuditConfig, Collaborators, run_audit, write_audit
from privsynth.data.corpus import Corpus, read_corpus
from privsynth.data.layout import load_canaries, load_provenance, load_registry
from privsynth.errors import ConfigError


@dataclass(frozen=True)
class AuditOutcome:
    """The audit document and where it and its report were written."""

    result: dict[str, Any]
    audit_json: Path
    report: Path


def real_records(
    *,
    model: Path | None = None,
    corpus: Path | Corpus | None = None,
    train: Path | None = None,
    holdout: Path | None = None,
) -> tuple[Corpus, Corpus]:
    """Train and holdout: from a model's recorded split of ``corpus``, or given explicitly."""
    if model is not None:
        if corpus is None:
            raise ConfigError("--model needs --corpus (the real corpus it was fit on)")
        real = corpus if isinstance(corpus, Corpus) else read_corpus(corpus)
        return split_from_model(real, model)
    if train is None or holdout is None:
        raise ConfigError("pass --train and --holdout, or --model and --corpus")
    return read_corpus(train), read_corpus(holdout)


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
    """Audit a synthetic corpus folder against real records; write ``audit.json`` and ``report.html``."""
    real_train, real_holdout = real_records(model=model, corpus=corpus, train=train, holdout=holdout)
    cfg = config if config is not None else AuditConfig()
    asked = load_provenance(synthetic).get("variation")
    # streamed: only the records the audit compares are held, however large the synthetic corpus
    streamed = read_for_audit(synthetic, rows=cfg.max_rows, seed=cfg.seed + SYNTHETIC_SEED_OFFSET, asked=asked)
    result = run_audit(
        real_train,
        real_holdout,
        streamed,
        config=cfg,
        collaborators=collaborators,
        registry=load_registry(synthetic),
        claimed=claimed_guarantee(synthetic, model),
        canaries=load_canaries(model) if model is not None else None,
        progress=progress,
    )
    if streamed.variation is not None:  # controlled variation: what sampling asked against what the records hold
        result["variation"] = streamed.variation
    audit_json = write_audit(result, out)
    return AuditOutcome(result=result, audit_json=audit_json, report=write_report(result, out))


__all__ = ["AuditOutcome", "audit_folders", "real_records"]
