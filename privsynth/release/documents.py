"""Release documents: ``datasheet.md`` (Gebru et al. sections), a Hugging Face dataset card and Croissant.

Everything here is written from :class:`ReleaseFacts` (what the run knows: counts, kinds, the ledger, the audit's
aggregate checks, the gate's decision) and :class:`~privsynth.release.info.ReleaseInfo` (what people state).
No record value of the real corpus is ever an input: column names and kinds, counts and privacy parameters only.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import yaml

from privsynth.data.schema import ColumnKind, Schema
from privsynth.errors import ConfigError
from privsynth.release.disclosure import NEVER_RELEASED, PUBLISHED_DECIMALS
from privsynth.release.hf import HF_TABLE
from privsynth.release.info import ReleaseInfo

CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
RAI_REQUIRED = (
    "rai:dataCollection",
    "rai:dataCollectionType",
    "rai:dataPreprocessingProtocol",
    "rai:dataUseCases",
    "rai:dataLimitations",
    "rai:personalSensitiveInformation",
    "rai:dataReleaseMaintenancePlan",
)
_DATATYPES = {
    ColumnKind.NUMERICAL: "sc:Float",
    ColumnKind.CATEGORICAL: "sc:Text",
    ColumnKind.DATETIME: "sc:Date",
    ColumnKind.BOOLEAN: "sc:Boolean",
    ColumnKind.TEXT: "sc:Text",
    ColumnKind.IMAGE: "sc:ImageObject",
    ColumnKind.IDENTIFIER: "sc:Text",
    ColumnKind.KEY: "sc:Text",
}


@dataclass(frozen=True)
class ReleaseFacts:
    """What the run knows about a release (no record values)."""

    records: int
    schema: Schema
    table_file: str
    table_sha256: str
    image_files: int
    created: str
    privsynth_version: str
    ledger: dict[str, Any]
    generators: list[str]
    omitted_columns: dict[str, str]
    model_run_id: str | None
    sample_seed: int | None
    source_fingerprint: str | None
    checks: list[dict[str, Any]]
    gate: dict[str, Any]
    declared_public: list[str] = field(default_factory=list)
    public_data: list[dict[str, Any]] = field(default_factory=list)
    publish_audit_statistics: bool = True
    outside_guarantee: list[str] = field(default_factory=list)
    hf_features: list[dict[str, Any]] = field(default_factory=list)
    #: identifier-like spans each text column's sampling scrub replaced (synthetic.json; synthetic texts only)
    text_scrubbed: dict[str, int] = field(default_factory=dict)


def _scrubbed(counts: dict[str, int]) -> str:
    """The datasheet's line on the sampling scrub (empty when no text column was scrubbed)."""
    if not counts:
        return ""
    spans = ", ".join(f"{n} in `{column}`" for column, n in counts.items())
    return (
        "- After sampling, identifier-like spans a text model wrote outside its placeholders were replaced by each "
        f"record's registered fakes (`text.scrub`): {spans}.\n"
    )


def _kinds(schema: Schema) -> str:
    lines = []
    for name, spec in schema.columns.items():
        extra = f", surrogate {spec.pii}" if spec.kind is ColumnKind.IDENTIFIER else ""
        lines.append(f"| `{name}` | {spec.kind}{extra} |")
    return "\n".join(lines)


def _public_data(items: list[dict[str, Any]]) -> str:
    if not items:
        return "none"
    described = []
    for item in items:
        what = item.get("fingerprint") or item.get("name") or "unnamed"
        steps = f", {item['steps']} steps" if item.get("steps") else ""
        described.append(f"{item.get('kind', 'public data')} `{what}` for `{item.get('generator', '?')}`{steps}")
    return "; ".join(described)


def _checks_table(checks: list[dict[str, Any]], *, values: bool) -> str:
    """Rows of the policy's checks (:func:`privsynth.audit.report.check_rows`), privacy first, then utility."""
    rows = []
    for c in sorted(checks, key=lambda c: c.get("kind") != "privacy"):
        if c.get("status") == "not in policy":
            continue
        value = (
            "n/a" if c.get("value") is None else f"{c['value']:.{PUBLISHED_DECIMALS}f}" if values else "not published"
        )
        threshold = "" if c.get("threshold") is None else f"{c['direction']} {c['threshold']:g}"
        rows.append(
            f"| `{c['name']}` | {c.get('kind', '')} | {value} | {threshold} | {c.get('severity') or ''} | {c['status']} |"
        )
    return "\n".join(rows) or "| (the policy names no audit check) | | | | | |"


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items) or "- nothing"


def privacy_statement(facts: ReleaseFacts) -> str:
    """One paragraph stating the guarantee exactly."""
    ledger = facts.ledger
    stages = ", ".join(sorted({e["stage"] for e in ledger.get("entries", [])}))
    return (
        f"Every record, text and image in this release was generated by models trained with differential privacy "
        f"on a private source corpus. Together, everything derived from that corpus satisfies "
        f"(epsilon = {ledger.get('epsilon', float('nan')):.4g}, delta = {ledger.get('delta', float('nan')):.3g})-"
        f"differential privacy, composed by one {str(ledger.get('accountant', '')).upper()} accountant over these "
        f"stages: {stages}. The unit of privacy is one {ledger.get('unit_of_privacy', 'record')}. Direct identifiers "
        "were never modelled: names, numbers and addresses in this release are fake surrogates. "
        f"Noise: {ledger.get('rng_note', '')}."
    )


def datasheet(info: ReleaseInfo, facts: ReleaseFacts) -> str:
    """``datasheet.md`` following Gebru et al., 'Datasheets for Datasets'."""
    creators = "; ".join(f"{c.name}" + (f" ({c.affiliation})" if c.affiliation else "") for c in info.creators)
    modalities = sorted({spec.kind.value for spec in facts.schema.columns.values()})
    failed_soft = [w["check"] for w in facts.gate.get("warnings", [])]
    omitted = "".join(f"\n- `{n}`: {why}" for n, why in facts.omitted_columns.items()) or " none."
    return f"""# Datasheet: {info.title}

Version {info.version} · created {facts.created} with privsynth {facts.privsynth_version} · release class
**{facts.gate.get("release_class", "?")}** under policy `{facts.gate.get("policy", "?")}` (v{facts.gate.get("policy_version", "?")}).

{info.description}

## Motivation

- **Purpose:** {info.motivation.purpose}
- **Created by:** {creators}
- **Funding:** {info.motivation.funding or "not stated"}

## Composition

- **Instances:** {facts.records} synthetic records, one row each, with their linked modalities ({", ".join(modalities)}).
- **Everything is synthetic.** No row, text or image is a real person's; identifiers are surrogates drawn per
  record, so the name in a note is the name in that record's table row.
- **Columns:**

| column | kind |
|---|---|
{_kinds(facts.schema)}

- **Columns left out** (no generator, never copied from real data):{omitted}
- **Files:** `data/{facts.table_file}` (SHA-256 `{facts.table_sha256}`){f" and {facts.image_files} image files under `data/images/`" if facts.image_files else ""}.

## Collection process

Synthesized by privsynth from a private source corpus (source `{facts.source_fingerprint or "not recorded"}`: a name,
or a keyed fingerprint that says nothing without the data owner's secret key), model run `{facts.model_run_id or "unknown"}`,
sampling seed {facts.sample_seed} (sampling only; the fit's randomness: {facts.ledger.get("rng", "not recorded")}, see Noise below).
Generators: {", ".join(facts.generators) or "none"}.

{privacy_statement(facts)}

### What this release says outside the guarantee

{_bullets(facts.outside_guarantee)}

Never in any release: {"; ".join(NEVER_RELEASED)}.

## Preprocessing

- Each person's contribution was bounded before any computation; training and holdout were split by person.
- Category lists, numeric bounds, bins and text-length statistics came from a DP profile, or from metadata the data
  owner declared public for these columns: {", ".join(facts.declared_public) or "none"}.
- Personal identifiers in training text were replaced by typed placeholders before training and filled with each
  synthetic record's own surrogates at sampling.
{_scrubbed(facts.text_scrubbed)}- Public data the generators also learned, without noise (declared public by the data team; not covered by the
  privacy guarantee because it needs none): {_public_data(facts.public_data)}.

## Audit and release gate

The synthetic corpus was audited against the real one (memorization, PII, attacks, fidelity) and the release gate
{"passed" if facts.gate.get("passed") else "did NOT pass"}. Warnings: {", ".join(failed_soft) or "none"}.

Checks under policy `{facts.gate.get("policy", "?")}` (version {facts.gate.get("policy_version", "?")}), the policy
this release was gated with; hard checks refuse a release, soft ones warn.

| check | protects / measures | value | policy threshold | severity | status |
|---|---|---|---|---|---|
{_checks_table(facts.checks, values=facts.publish_audit_statistics)}

## Uses

- **Intended:** {info.uses.intended}
- **Out of scope:** {info.uses.out_of_scope}
- **Limitations:** {info.uses.limitations or "Synthetic data reproduces aggregate patterns, not individuals; rare subgroups and outliers are weakened by the privacy noise."}
- **Biases:** {info.biases or "Biases of the source corpus carry over; DP noise affects small groups most."}
- **Social impact:** {info.social_impact or "not stated"}

## Distribution

- **Access:** {info.distribution.access}
- **Licence:** {info.license}
- **Terms:** {info.distribution.terms or "none beyond the licence"}

## Governance

- **Approved by:** {_approver(info)}
- **Legal basis:** {info.governance.legal_basis or "not stated"}
- **DPIA reference:** {info.governance.dpia_reference or "not stated"}

## Maintenance

- **Maintainer:** {info.maintainer.name} <{info.maintainer.contact}>
- **Plan:** {info.maintenance.plan}
- **Errata:** {info.maintenance.erratum or "none"}
- **Integrity:** `privsynth verify` re-checks the SHA-256 of every file against `manifest.json` (and its signature).
"""


def dataset_card(info: ReleaseInfo, facts: ReleaseFacts) -> str:
    """A Hugging Face dataset card: YAML front matter plus a short body."""
    front: dict[str, Any] = {
        "pretty_name": info.title,
        "license": info.license.lower() if "://" not in info.license else "other",
        "language": ["en"],
        "tags": ["synthetic", "differential-privacy", "privsynth", *info.keywords],
        "size_categories": [_size_category(facts.records)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": _hf_table(facts)}]}],
    }
    if facts.hf_features:
        front["dataset_info"] = {
            "features": facts.hf_features,
            "splits": [{"name": "train", "num_examples": facts.records}],
        }
    body = f"""# {info.title}

{info.description}

{privacy_statement(facts)}

- Records: {facts.records} (all synthetic; identifiers are fake surrogates)
- Release class: {facts.gate.get("release_class", "not stated")}; release gate {"passed" if facts.gate.get("passed") else "did NOT pass"} under policy `{facts.gate.get("policy", "?")}`
- Key audit numbers: {_key_numbers(facts)}
- Intended use: {info.uses.intended}
- Out of scope: {info.uses.out_of_scope}
- Maintainer: {info.maintainer.name} <{info.maintainer.contact}>

## Columns

| column | kind | feature |
|---|---|---|
{_column_table(facts)}

## Loading

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/folder", split="train")   # images decode to PIL, categories are ClassLabel
```

or with PyTorch: `privsynth.torch.SyntheticDataset("path/to/this/folder")`. `data/records.parquet` (images as files
under `data/images/`) is the same corpus for other tools; `{HF_TABLE}` embeds the image bytes for `load_dataset`.

See `datasheet.md` for the full datasheet, `croissant.json` for machine-readable metadata and `manifest.json` for
file hashes. Cite as: {info.citation or info.title}.
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def _hf_table(facts: ReleaseFacts) -> str:
    return HF_TABLE if facts.hf_features else f"data/{facts.table_file}"


#: The audit numbers a dataset card shows (when the policy publishes audit statistics).
CARD_CHECKS = ("dcr_share_high", "mia_auc", "pii_unexplained_rate", "tstr_ratio", "tvd2_over_floor")


def _key_numbers(facts: ReleaseFacts) -> str:
    if not facts.publish_audit_statistics:
        return "not published (the release policy keeps audit statistics out of releases); see the datasheet for the gate's result and warnings"
    values = {c["name"]: c.get("value") for c in facts.checks}
    shown = [f"`{n}` {values[n]:.{PUBLISHED_DECIMALS}f}" for n in CARD_CHECKS if values.get(n) is not None]
    if not shown:
        return "none measured"
    return ", ".join(shown) + " (audit statistics computed on the real records, outside the DP guarantee)"


def _column_table(facts: ReleaseFacts) -> str:
    features = {f["name"]: f["dtype"] for f in facts.hf_features}
    rows = []
    for name, spec in facts.schema.columns.items():
        dtype = features.get(name, "")
        feature = "ClassLabel" if isinstance(dtype, dict) else "Image" if dtype == "image" else dtype
        extra = f" (surrogate {spec.pii})" if spec.kind is ColumnKind.IDENTIFIER else ""
        rows.append(f"| `{name}` | {spec.kind.value}{extra} | {feature} |")
    return "\n".join(rows)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def croissant(info: ReleaseInfo, facts: ReleaseFacts) -> dict[str, Any]:
    """Croissant 1.1 JSON-LD with the RAI 1.0 properties."""
    table_id = facts.table_file
    fields = []
    for name, spec in facts.schema.columns.items():
        entry: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": f"records/{name}",
            "name": name,
            "description": f"{spec.kind.value} column"
            + (" (surrogate identifier)" if spec.kind is ColumnKind.IDENTIFIER else ""),
            "dataType": "sc:Integer" if spec.kind is ColumnKind.NUMERICAL and spec.integer else _DATATYPES[spec.kind],
            "source": {"fileObject": {"@id": table_id}, "extract": {"column": name}},
        }
        fields.append(entry)
    distribution: list[dict[str, Any]] = [
        {
            "@type": "cr:FileObject",
            "@id": table_id,
            "name": table_id,
            "contentUrl": f"data/{facts.table_file}",
            "encodingFormat": "application/x-parquet" if table_id.endswith(".parquet") else "text/csv",
            "sha256": facts.table_sha256,
        }
    ]
    if facts.image_files:
        distribution.append(
            {
                "@type": "cr:FileSet",
                "@id": "images",
                "name": "images",
                "encodingFormat": "image/png",
                "includes": "data/images/**/*.png",
            }
        )
    ledger = facts.ledger
    return {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "name": info.title,
        "description": info.description,
        "conformsTo": "http://mlcommons.org/croissant/1.1",
        "url": info.url or "https://example.invalid/not-published-yet",
        "license": info.license,
        "version": info.version,
        "datePublished": facts.created[:10],
        "citeAs": info.citation or info.title,
        "creator": [{"@type": "sc:Person", "name": c.name} for c in info.creators],
        "keywords": ["synthetic data", "differential privacy", *info.keywords],
        "distribution": distribution,
        "recordSet": [{"@type": "cr:RecordSet", "@id": "records", "name": "records", "field": fields}],
        "rai:dataCollection": (
            f"Synthesized by privsynth {facts.privsynth_version} with differential privacy (epsilon "
            f"{ledger.get('epsilon', float('nan')):.4g}, delta {ledger.get('delta', float('nan')):.3g}, unit: "
            f"{ledger.get('unit_of_privacy', 'record')}) from a private source corpus."
        ),
        "rai:dataCollectionType": "Synthetic data generation",
        "rai:dataPreprocessingProtocol": (
            "Contribution bounding per person; DP profiling of column metadata; PII in text replaced by typed "
            "placeholders before training; identifiers never modelled (surrogates)."
        ),
        "rai:dataUseCases": info.uses.intended,
        "rai:dataLimitations": info.uses.limitations or "Aggregate patterns only; rare groups are weakened by noise.",
        "rai:dataBiases": info.biases or "Biases of the source corpus carry over.",
        "rai:personalSensitiveInformation": (
            "No real person's data. Identifier columns and names in text are synthetic surrogates; the release was "
            "audited for memorization and replayed real identifiers before export."
        ),
        "rai:dataSocialImpact": info.social_impact or "not stated",
        "rai:dataReleaseMaintenancePlan": info.maintenance.plan,
    }


def check_croissant(document: dict[str, Any], path: str) -> None:
    """Privsynth's own required-field check (mlcroissant only warns), then mlcroissant's offline validation."""
    missing = [
        k
        for k in (
            "name",
            "description",
            "license",
            "version",
            "datePublished",
            "creator",
            "conformsTo",
            "distribution",
            "recordSet",
        )
        if not document.get(k)
    ]
    missing += [k for k in RAI_REQUIRED if not str(document.get(k, "")).strip()]
    if missing:
        raise ConfigError(f"croissant.json lacks required fields: {', '.join(missing)}")
    import logging

    import mlcroissant as mlc

    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # mlcroissant logs a warning for every non-standard context key
    try:
        with warnings.catch_warnings():
            # mlcroissant's dependencies (rdflib, jsonpath) emit deprecation notices we cannot act on
            warnings.simplefilter("ignore", DeprecationWarning)
            metadata = mlc.Dataset(jsonld=path).metadata
    except Exception as exc:  # noqa: BLE001 - mlcroissant raises many types; all mean "invalid"
        raise ConfigError(f"croissant.json failed mlcroissant validation: {type(exc).__name__}") from None
    finally:
        absl_logger.setLevel(level)
    errors = list(getattr(getattr(metadata, "issues", None), "errors", []) or [])
    if errors:
        raise ConfigError(f"croissant.json failed mlcroissant validation: {len(errors)} error(s)")


def dumps(document: dict[str, Any]) -> str:
    """JSON text of a document."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _approver(info: ReleaseInfo) -> str:
    approver = info.governance.approver
    if not approver.name:
        return "not stated"
    return (
        approver.name
        + (f", {approver.role}" if approver.role else "")
        + (f", {approver.date}" if approver.date else "")
    )
