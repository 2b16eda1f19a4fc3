"""Writing a release: gate first, then everything into a temporary folder renamed into place, or nothing.

A release folder holds the synthetic corpus (Parquet + PNG files, ``data/``), ``datasheet.md``, a Hugging Face
card (``README.md``), ``croissant.json``, an aggregate-only ``audit-summary.json`` and ``manifest.json`` (SHA-256 of
every file, provenance, ledger, gate decision), optionally signed. Real record values never enter it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from privsynth._version import __version__
from privsynth.audit.report import check_rows
from privsynth.data.atomic import atomic_dir
from privsynth.data.corpus import read_corpus, write_corpus
from privsynth.data.fingerprint import corpus_fingerprint
from privsynth.data.integrity import sha256_file
from privsynth.data.layout import load_provenance
from privsynth.data.schema import PUBLIC_FIELDS, ColumnKind
from privsynth.errors import ConfigError, ReleaseRefusedError
from privsynth.gate import GateDecision, Policy, gate
from privsynth.release.disclosure import FIDELITY_DISCLOSED, attack_points, outside_guarantee, published
from privsynth.release.documents import ReleaseFacts, check_croissant, croissant, dataset_card, datasheet, dumps
from privsynth.release.hf import write_hf_view
from privsynth.release.info import ReleaseInfo
from privsynth.release.manifest import file_table, sign_manifest, write_manifest

PACKAGES = ("torch", "opacus", "numpy", "pandas", "scikit-learn", "faiss-cpu", "presidio-analyzer", "pydantic")


@dataclass(frozen=True)
class ReleaseResult:
    """Where the release went and what the gate said."""

    folder: Path
    decision: GateDecision
    files: int
    signed: bool


def audit_summary(audit: dict[str, Any]) -> dict[str, Any]:
    """The aggregate part of an audit worth publishing: checks and headline numbers, no examples, no paths.

    Counts of real records (train, holdout, rows audited, membership-attack sample sizes, attack trials) are left
    out: they are exact counts of the private corpus, which no release carries. So are the report's distance
    histograms (figures for reviewers), and every number is rounded (:func:`~privsynth.release.disclosure.published`),
    since an exact fraction of real records names its denominator.
    """
    keep: dict[str, Any] = {
        k: audit[k]
        for k in ("version", "privsynth_version", "created", "unit_of_privacy", "checks", "limitations")
        if k in audit
    }
    keep["inputs"] = {"synthetic": audit.get("inputs", {}).get("synthetic")}
    keep["memorization"] = audit.get("memorization", {})
    keep["pii"] = audit.get("pii", {})  # its examples, replay needles and replay counts: dropped by published()
    keep["attacks"] = attack_points(audit.get("attacks", {}))  # trials and sample sizes: dropped by published()
    fidelity = audit.get("fidelity", {})
    keep["fidelity"] = {k: v for k, v in fidelity.items() if k in FIDELITY_DISCLOSED}  # only scores named as such
    published_summary: dict[str, Any] = published(keep)
    return published_summary


def _without_values(decision: dict[str, Any]) -> dict[str, Any]:
    """A gate decision with the audit's numbers removed (pass/fail and check names only)."""
    out = dict(decision)
    for key in ("reasons", "warnings", "evaluated"):
        out[key] = [
            {k: v for k, v in finding.items() if k not in ("value", "message")} for finding in decision.get(key, [])
        ]
    return out


def _versions() -> dict[str, str]:
    out = {"privsynth": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def decide(audit: dict[str, Any], policy: Policy, synthetic: Path) -> tuple[GateDecision, dict[str, Any]]:
    """The gate's decision for a synthetic corpus and its audit (the ledger comes from the corpus' provenance)."""
    provenance = load_provenance(synthetic)
    return gate(policy, audit, provenance.get("ledger")), provenance


def write_release(
    *,
    synthetic: Path,
    audit: dict[str, Any],
    policy: Policy,
    policy_path: Path | None,
    info: ReleaseInfo,
    out: Path,
    sign_key: Path | None = None,
    force: bool = False,
) -> ReleaseResult:
    """Gate, then write the release atomically. Raises :class:`ReleaseRefusedError` when the gate refuses."""
    info.require_complete("release information", policy.release_class.value)
    corpus = read_corpus(synthetic)
    fingerprint = corpus_fingerprint(corpus)
    audited = audit.get("inputs", {}).get("synthetic_fingerprint")
    if audited != fingerprint:
        raise ConfigError(
            "the audit was not run on this synthetic corpus (fingerprints differ); audit it with 'privsynth audit' "
            "before releasing"
        )
    decision, provenance = decide(audit, policy, synthetic)
    if not decision.passed:
        raise ReleaseRefusedError(
            f"the gate refused the release under policy '{policy.name}': "
            + "; ".join(r.message for r in decision.reasons),
            [r.message for r in decision.reasons],
        )
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    schema = corpus.schema
    publish = policy.publish_audit_statistics
    declared_public = [
        n
        for n, c in schema.columns.items()
        if c.kind is not ColumnKind.IDENTIFIER and any(getattr(c, f) is not None for f in PUBLIC_FIELDS)
    ]
    dumped = decision.model_dump(mode="json")
    gate_record = published(dumped) if publish else _without_values(dumped)
    with atomic_dir(out, force=force, private=False) as tmp:  # a release is meant to be shared
        write_corpus(corpus, tmp / "data", table_format="parquet", image_files=True, private=False)
        table = tmp / "data" / "records.parquet"
        hf_features = write_hf_view(read_corpus(tmp / "data"), tmp)  # load_dataset(bundle): Image, ClassLabel
        facts = ReleaseFacts(
            records=len(corpus),
            schema=schema,
            table_file="records.parquet",
            table_sha256=sha256_file(table),
            image_files=sum(1 for _ in (tmp / "data").rglob("*.png")),
            created=created,
            privsynth_version=__version__,
            ledger=provenance.get("ledger") or {},
            generators=list(provenance.get("generators", [])),
            omitted_columns=dict(provenance.get("omitted_columns", {})),
            model_run_id=provenance.get("model_run_id"),
            sample_seed=provenance.get("seed"),
            source_fingerprint=provenance.get("source"),
            checks=published(check_rows(audit, dumped)),
            hf_features=hf_features,
            gate=gate_record,
            declared_public=declared_public,
            public_data=list(provenance.get("public_data", [])),
            publish_audit_statistics=publish,
            text_scrubbed={str(c): int(n) for c, n in (provenance.get("text_scrubbed") or {}).items()},
            outside_guarantee=outside_guarantee(
                publish_audit_statistics=publish,
                declared_public=declared_public,
                public_data=list(provenance.get("public_data", [])),
                canary_audit=bool(audit.get("attacks", {}).get("one_run")),
                schema_inferred=bool(provenance.get("schema_inferred", False)),
            ),
        )
        (tmp / "datasheet.md").write_text(datasheet(info, facts), encoding="utf-8")
        (tmp / "README.md").write_text(dataset_card(info, facts), encoding="utf-8")
        document = croissant(info, facts)
        (tmp / "croissant.json").write_text(dumps(document), encoding="utf-8")
        check_croissant(document, str(tmp / "croissant.json"))
        if publish:
            (tmp / "audit-summary.json").write_text(dumps(audit_summary(audit)), encoding="utf-8")
        files = file_table(tmp)
        manifest: dict[str, Any] = {
            "format": "privsynth-release",
            "version": 1,
            "created": created,
            "title": info.title,
            "release_version": info.version,
            "release_class": policy.release_class.value,
            "governance": info.governance.model_dump(mode="json"),
            "unit_of_privacy": schema.unit_of_privacy,
            "ledger": facts.ledger,
            "gate": gate_record,
            "outside_guarantee": facts.outside_guarantee,
            "policy": {
                "name": policy.name,
                "version": policy.version,
                "sha256": sha256_file(policy_path) if policy_path is not None else None,
            },
            "model_run_id": provenance.get("model_run_id"),
            "seeds": {"sample": provenance.get("seed")},
            "text_sampling": provenance.get("text_sampling"),  # how each text column was drawn (the sample's own)
            "text_scrubbed": provenance.get("text_scrubbed"),  # spans the sampling scrub replaced, per text column
            "config_sha256": hashlib.sha256(
                json.dumps(provenance.get("config", {}), sort_keys=True).encode()
            ).hexdigest(),
            "packages": _versions(),
            "files": files,
        }
        write_manifest(tmp, manifest)
        if sign_key is not None:
            sign_manifest(tmp, sign_key)
    return ReleaseResult(folder=out, decision=decision, files=len(files), signed=sign_key is not None)
