"""Run every audit on a (train, holdout, synthetic) triple and assemble ``audit.json``.

Works on any synthetic corpus with the real schema (privsynth's, SDV's, hand-made): columns missing from the
synthetic side are reported, not invented. Heavy collaborators (embedders, PII scanner) are injected so tests
pass fakes and users pass their own models.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from privsynth._version import __version__
from privsynth.audit import attacks
from privsynth.audit.checks import evaluate_checks
from privsynth.audit.discretize import Discretizer
from privsynth.audit.embedders import ClipEmbedder, Embedder, MiniLMEmbedder, PerceptualEmbedder, PixelEmbedder
from privsynth.audit.fidelity import marginal_tvd
from privsynth.audit.figures import figure_data
from privsynth.audit.memorization import RowEncoder, distance_audit
from privsynth.audit.pii import audit_pii, build_replay, scrubbed_at_sampling
from privsynth.audit.preflight import preflight
from privsynth.audit.reading import AuditedReal, AuditedSynthetic, pick_rows
from privsynth.audit.registry import SurrogateRegistry
from privsynth.audit.text import text_stats, verbatim_spans
from privsynth.audit.utility import (
    choose_target,
    discriminator_auc,
    sdmetrics_quality,
    text_consistency,
    tstr,
    vector_consistency,
)
from privsynth.data.atomic import shared_mode, write_text_atomic
from privsynth.data.corpus import Corpus
from privsynth.data.fingerprint import corpus_fingerprint
from privsynth.data.schema import ColumnKind, Schema
from privsynth.engine import Engine, LocalEngine
from privsynth.errors import ConfigError
from privsynth.pii.placeholders import mask_identity

if TYPE_CHECKING:
    from privsynth.pii.engine import PiiScanner

log = logging.getLogger(__name__)
AUDIT_VERSION = 1


class AuditConfig(BaseModel):
    """Audit settings (public)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    bootstrap: int = Field(default=300, ge=20)
    max_rows: int = Field(default=50_000, ge=100, description="Rows per side used by distance metrics.")
    target: str | None = Field(default=None, description="Column for TSTR (default: a categorical column).")
    verbatim_chars: int = Field(default=40, ge=8, description="Length of a verbatim span that counts as copied.")
    attacks: bool = True
    pii: bool = True
    fidelity: bool = True
    include_examples: bool = False
    clip_weights: Path | None = None
    clip_model: str = "ViT-B-32"
    spacy_model: str | None = None
    ocr: str = Field(default="auto", pattern="^(auto|on|off)$")


@dataclasses.dataclass
class Collaborators:
    """Models the audit uses, and where the heavy parts run; defaults are built lazily."""

    text: Embedder | None = None
    images: list[Embedder] = dataclasses.field(default_factory=list)
    pii: PiiScanner | None = None
    #: embeddings, PII scans and nearest-neighbour searches run here (``None``: this process)
    engine: Engine | None = None


def _embed(engine: Engine, embedder: Embedder, sides: list[list[Any]]) -> list[np.ndarray]:
    """``embedder`` over each side's items, in one pass on ``engine`` (each worker builds the model once)."""
    items = [x for side in sides for x in side]
    if not items:
        return [embedder.embed([]) for _ in sides]
    rows = np.ascontiguousarray(np.stack(engine.map_batches(embedder.embed, items, batch_size=256)), dtype=np.float32)
    edges = np.cumsum([0, *(len(side) for side in sides)])
    return [rows[a:b] for a, b in itertools.pairwise(edges)]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in ("identical_excess", "near_copy_excess", "excess", "ratio", "unexplained", "replay_unexplained"):
            if hasattr(type(value), name) and isinstance(getattr(type(value), name), property):
                out[name] = _plain(getattr(value, name))
        return out
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _subsample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    pick = pick_rows(len(frame), rows, seed)
    return frame.reset_index(drop=True) if pick is None else frame.iloc[pick].reset_index(drop=True)


#: The seed offset of the synthetic side's subsample (train seed, holdout seed + 1, synthetic seed + 2).
SYNTHETIC_SEED_OFFSET = 2


#: Column kinds a generator produces (what a synthetic corpus may leave out and the audit then does not compare).
MODELLED_KINDS = frozenset(
    {
        ColumnKind.CATEGORICAL,
        ColumnKind.NUMERICAL,
        ColumnKind.DATETIME,
        ColumnKind.BOOLEAN,
        ColumnKind.TEXT,
        ColumnKind.IMAGE,
    }
)


def _without_columns(schema: Schema, names: list[str]) -> Schema:
    """``schema`` without the named columns (table order kept)."""
    return schema.model_copy(update={"columns": {n: c for n, c in schema.columns.items() if n not in names}})


def _images(corpus: Corpus, column: str) -> tuple[list[Any], np.ndarray]:
    images, present = [], []
    for i in range(len(corpus)):
        if corpus.records[column].iloc[i] is not None:
            images.append(corpus.image(column, i))
            present.append(i)
    return images, np.asarray(present, dtype=np.int64)


def run_audit(
    train: Corpus,
    holdout: Corpus,
    synthetic: Corpus | AuditedSynthetic,
    *,
    config: AuditConfig | None = None,
    collaborators: Collaborators | None = None,
    registry: pd.DataFrame | SurrogateRegistry | None = None,
    claimed: dict[str, Any] | None = None,
    canaries: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    scrubbed: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Every audit; returns the ``audit.json`` document (aggregates, plus examples only if configured).

    ``synthetic`` is a corpus in memory, or what :func:`~privsynth.audit.reading.read_for_audit` streamed of one
    (its subsample, made with this config's ``max_rows`` and ``seed``, its size and fingerprint). ``scrubbed``: the
    spans the sampling scrub replaced per text column (:func:`audit_read`).
    """
    cfg = config if config is not None else AuditConfig()
    tools = collaborators if collaborators is not None else Collaborators()
    if cfg.pii and tools.pii is None:
        tools = dataclasses.replace(tools, pii=pii_scanner(cfg))
    say = progress if progress is not None else (lambda _m: None)
    say("pre-flight checks of the holdout")
    real = real_in_memory(train, holdout, cfg, tools, say)
    return audit_read(
        real,
        synthetic,
        config=cfg,
        collaborators=tools,
        registry=registry,
        claimed=claimed,
        canaries=canaries,
        progress=progress,
        scrubbed=scrubbed,
    )


def pii_scanner(cfg: AuditConfig) -> PiiScanner:
    """The audit's PII detectors (Presidio imports torch: built only when a scan runs)."""
    from privsynth.pii.engine import PiiScanner

    return PiiScanner(spacy_model=cfg.spacy_model)


def real_in_memory(
    train: Corpus, holdout: Corpus, cfg: AuditConfig, tools: Collaborators, say: Callable[[str], None]
) -> AuditedReal:
    """What the audit needs of a real train and holdout held whole (as :mod:`~privsynth.audit.reading` streams it)."""
    checked = preflight(train.records, holdout.records, train.schema, holdout_schema=holdout.schema)
    replay = None
    if cfg.pii and tools.pii is not None:
        say("building the replay automaton from real identifiers")
        real = train.with_records(pd.concat([train.records, holdout.records], ignore_index=True))
        replay = build_replay(real, tools.pii, tools.engine)
    return AuditedReal(
        train=train.with_records(_subsample(train.records, cfg.max_rows, cfg.seed)),
        holdout=holdout.with_records(_subsample(holdout.records, cfg.max_rows, cfg.seed + 1)),
        train_total=len(train),
        holdout_total=len(holdout),
        preflight=checked,
        replay=replay,
        rows=cfg.max_rows,
        seed=cfg.seed,
    )


def audit_read(
    real: AuditedReal,
    synthetic: Corpus | AuditedSynthetic,
    *,
    config: AuditConfig | None = None,
    collaborators: Collaborators | None = None,
    registry: pd.DataFrame | SurrogateRegistry | None = None,
    claimed: dict[str, Any] | None = None,
    canaries: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    scrubbed: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """:func:`run_audit` on what was read of the real side (its picks, totals, pre-flight and replay needles).

    ``real`` comes from :func:`real_in_memory` or, for corpora read batch by batch, from
    :func:`~privsynth.audit.reading.read_real_for_audit` / :func:`~privsynth.audit.reading.read_split_for_audit`
    with this config's ``max_rows`` and ``seed``. ``scrubbed``: the spans the sampling scrub replaced per text column
    (``synthetic.json``'s ``text_scrubbed``), reported with the PII scan, which reads the texts after it.
    """
    cfg = config if config is not None else AuditConfig()
    tools = collaborators if collaborators is not None else Collaborators()
    engine = tools.engine if tools.engine is not None else LocalEngine()
    say = progress if progress is not None else (lambda _m: None)
    schema = real.train.schema
    seed = cfg.seed
    pre = real.preflight
    if (real.rows, real.seed) != (cfg.max_rows, seed):
        raise ValueError("the real records were not read with this audit's max_rows and seed")
    if isinstance(synthetic, AuditedSynthetic):
        sy, synthetic_total, fingerprint = synthetic.corpus, synthetic.total, synthetic.fingerprint
        if (synthetic.rows, synthetic.seed) != (cfg.max_rows, seed + SYNTHETIC_SEED_OFFSET):
            raise ValueError("the synthetic records were not read with this audit's max_rows and seed")
    else:
        sy = synthetic.with_records(_subsample(synthetic.records, cfg.max_rows, seed + SYNTHETIC_SEED_OFFSET))
        synthetic_total, fingerprint = len(synthetic), corpus_fingerprint(synthetic)
    missing = [n for n in schema.columns if n not in sy.records.columns]
    limitations = [f"column '{n}' is absent from the synthetic corpus: not audited" for n in missing]
    if synthetic_total > len(sy):
        limitations.append(
            f"every metric and the PII scan read a uniform subsample of {len(sy):,} of the {synthetic_total:,} "
            "synthetic records (max_rows); a record outside it was validated and fingerprinted, not audited"
        )
    # Every comparison runs over the columns both sides hold: a modelled column the synthetic corpus leaves out
    # (privsynth's omitted_columns, or a hand-made corpus) is reported above, never compared against nothing.
    # Identifiers stay: the real side's own identity is still masked and scanned for.
    compared = _without_columns(schema, [n for n in missing if schema.columns[n].kind in MODELLED_KINDS])
    tr = Corpus(real.train.records[list(compared.columns)], compared, real.train.root)
    ho = Corpus(real.holdout.records[list(compared.columns)], compared, real.holdout.root)
    result: dict[str, Any] = {
        "version": AUDIT_VERSION,
        "privsynth_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "unit_of_privacy": schema.unit_of_privacy,
        "claimed": claimed or {},
        "inputs": {
            "train": real.train_total,
            "holdout": real.holdout_total,
            "synthetic": synthetic_total,
            "synthetic_fingerprint": fingerprint,
            "rows_audited": {"train": len(tr), "holdout": len(ho), "synthetic": len(sy)},
        },
        "preflight": _plain(pre),
        "config": cfg.model_dump(mode="json"),
        "engine": {"name": engine.name, "workers": engine.workers},  # where it ran; results do not depend on it
    }
    say("tabular memorization")
    encoder = RowEncoder().fit(tr.records, compared)
    x_train, x_hold, x_syn = (encoder.transform(c.records) for c in (tr, ho, sy))
    memorization: dict[str, Any] = {}
    if x_train.shape[1]:
        memorization["tabular"] = _plain(
            distance_audit(x_train, x_hold, x_syn, space="tabular", seed=seed, bootstrap=cfg.bootstrap, engine=engine)
        )
    whole = [x_train], [x_hold], [x_syn]
    text_part, text_fidelity, consistency = _text_audits(tr, ho, sy, tools, cfg, whole, say)
    memorization["text"] = text_part
    image_part, image_fidelity, image_consistency = _image_audits(tr, ho, sy, tools, cfg, whole, say, limitations)
    memorization["image"] = image_part
    consistency.extend(image_consistency)
    if len(whole[0]) > 1:
        say("whole-record memorization")
        stack = [np.ascontiguousarray(np.hstack(parts), dtype=np.float32) for parts in whole]
        memorization["record"] = _plain(
            distance_audit(*stack, space="record", seed=seed, bootstrap=cfg.bootstrap, engine=engine)
        )
    result["memorization"] = memorization
    examples: list[Any] = []
    if cfg.pii:
        say("PII scan and replay of real identifiers")
        scanner = tools.pii if tools.pii is not None else pii_scanner(cfg)
        if real.replay is None:
            raise ValueError("the real records were read without the replay scan's needles; read them with a scan")
        pii = audit_pii(
            real.replay,
            sy,
            scanner=scanner,
            registry=registry,
            include_examples=cfg.include_examples,
            ocr=cfg.ocr,
            engine=engine,
        )
        result["pii"] = _plain(pii)
        examples = result["pii"].pop("examples")
        if scrubbed is not None:
            result["pii"]["scrubbed"] = scrubbed_at_sampling(scrubbed, synthetic_total)
    else:
        limitations.append("PII scan not run")
    if cfg.attacks and x_train.shape[1]:
        say("attacks")
        result["attacks"] = _attacks(tr, ho, sy, x_train, x_hold, x_syn, cfg, canaries, engine)
    if cfg.fidelity:
        say("fidelity and utility")
        result["fidelity"] = _fidelity(tr, ho, sy, cfg) | {
            "text": text_fidelity,
            "image": image_fidelity,
            "cross_modal": [_plain(c) for c in consistency],
        }
    else:
        limitations.append("fidelity metrics not run")
    say("figures for the report")
    result["figures"] = figure_data(tr, sy, target=cfg.target or choose_target(tr.schema, tr.records), seed=seed)
    result["limitations"] = limitations + _standard_limitations(tools, cfg)
    result["checks"] = evaluate_checks(result)
    if cfg.include_examples:
        result["internal"] = True
        result["examples"] = examples
    return result


def _text_audits(
    tr: Corpus,
    ho: Corpus,
    sy: Corpus,
    tools: Collaborators,
    cfg: AuditConfig,
    whole: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]],
    say: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    memorization: dict[str, Any] = {}
    fidelity: dict[str, Any] = {}
    consistency: list[Any] = []
    columns = [n for n in tr.schema.names(ColumnKind.TEXT) if n in sy.records.columns]
    if not columns:
        return memorization, fidelity, consistency
    embedder = tools.text if tools.text is not None else MiniLMEmbedder()
    engine = tools.engine if tools.engine is not None else LocalEngine()
    target = cfg.target or choose_target(tr.schema, tr.records)
    for name in columns:
        say(f"text memorization: {name}")
        texts = [c.records[name].fillna("").astype(str).tolist() for c in (tr, ho, sy)]
        # distances by content: each record's own identity (real, or its fresh surrogate) is masked first, so
        # two notes are not "close" because two fake patients share a common surname (see mask_identity)
        vectors = _embed(engine, embedder, [_identity_masked(c, t) for c, t in zip((tr, ho, sy), texts, strict=True)])
        entry: dict[str, Any] = {
            "embedder": embedder.name,
            "embedding": _plain(
                distance_audit(*vectors, space=f"text:{name}", seed=cfg.seed, bootstrap=cfg.bootstrap, engine=engine)
            ),
            "verbatim": _plain(verbatim_spans(texts[0], texts[1], texts[2], k=cfg.verbatim_chars)),
        }
        entry["verbatim"].pop("copying_rows")
        memorization[name] = entry
        fidelity[name] = _plain(text_stats(texts[0], texts[2], real_vectors=vectors[0], synthetic_vectors=vectors[2]))
        for side, vec in zip(whole, vectors, strict=True):
            side.append(vec / np.sqrt(2.0))
        if target is not None and target in sy.records.columns:
            ys = [c.records[target].astype(str).tolist() for c in (tr, ho, sy)]
            consistency.append(
                text_consistency(texts[0], ys[0], texts[1], ys[1], texts[2], ys[2], source=name, target=target)
            )
    return memorization, fidelity, consistency


def _identity_masked(corpus: Corpus, texts: list[str]) -> list[str]:
    records = corpus.records
    return [mask_identity(text, records.iloc[i], corpus.schema) for i, text in enumerate(texts)]


def _image_audits(
    tr: Corpus,
    ho: Corpus,
    sy: Corpus,
    tools: Collaborators,
    cfg: AuditConfig,
    whole: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]],
    say: Callable[[str], None],
    limitations: list[str],
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    from privsynth.audit.text import frechet_distance

    memorization: dict[str, Any] = {}
    fidelity: dict[str, Any] = {}
    consistency: list[Any] = []
    columns = [n for n in tr.schema.names(ColumnKind.IMAGE) if n in sy.records.columns]
    if not columns:
        return memorization, fidelity, consistency
    engine = tools.engine if tools.engine is not None else LocalEngine()
    embedders: list[Embedder] = list(tools.images) or [PixelEmbedder(), PerceptualEmbedder()]
    if cfg.clip_weights is not None and not tools.images:
        embedders.append(ClipEmbedder(cfg.clip_weights, model=cfg.clip_model))
    elif cfg.clip_weights is None:
        limitations.append("no open_clip weights supplied: CLIP features not used (random weights mean nothing)")
    target = cfg.target or choose_target(tr.schema, tr.records)
    for name in columns:
        say(f"image memorization: {name}")
        loaded = [_images(c, name) for c in (tr, ho, sy)]
        per: dict[str, Any] = {}
        computed: dict[str, list[np.ndarray]] = {}  # by embedder name: reused below, not computed twice
        for embedder in embedders:
            vectors = computed[embedder.name] = _embed(engine, embedder, [images for images, _ in loaded])
            if min(len(v) for v in vectors) < 2:
                continue
            per[embedder.name] = _plain(
                distance_audit(
                    *vectors,
                    space=f"image:{name}:{embedder.name}",
                    seed=cfg.seed,
                    bootstrap=cfg.bootstrap,
                    engine=engine,
                )
            )
            fidelity.setdefault(name, {})[f"frechet_{embedder.name}"] = frechet_distance(vectors[0], vectors[2])
        memorization[name] = per
        perceptual = _features(engine, PerceptualEmbedder(), loaded, computed)
        if all(len(p) == len(c) for p, c in zip(perceptual, (tr, ho, sy), strict=True)):
            for side, vec in zip(whole, perceptual, strict=True):
                side.append(vec / np.sqrt(2.0))
        if target is not None and target in sy.records.columns and min(len(p) for p in perceptual) > 1:
            pixels = _features(engine, PixelEmbedder(), loaded, computed)
            ys = [
                c.records[target].astype(str).to_numpy()[rows]
                for c, (_, rows) in zip((tr, ho, sy), loaded, strict=True)
            ]
            features = [np.hstack([p, q]) for p, q in zip(pixels, perceptual, strict=True)]
            consistency.append(
                vector_consistency(
                    features[0], ys[0], features[1], ys[1], features[2], ys[2], source=name, target=target
                )
            )
    return memorization, fidelity, consistency


def _features(
    engine: Engine, embedder: Embedder, loaded: list[tuple[list[Any], np.ndarray]], done: dict[str, list[np.ndarray]]
) -> list[np.ndarray]:
    if embedder.name not in done:
        done[embedder.name] = _embed(engine, embedder, [images for images, _ in loaded])
    return done[embedder.name]


def _attacks(
    tr: Corpus,
    ho: Corpus,
    sy: Corpus,
    x_train: np.ndarray,
    x_hold: np.ndarray,
    x_syn: np.ndarray,
    cfg: AuditConfig,
    canaries: dict[str, Any] | None,
    engine: Engine,
) -> dict[str, Any]:
    disc = Discretizer().fit(tr.records, tr.schema)
    codes = [disc.transform(c.records).to_numpy() for c in (tr, ho, sy)]
    out: dict[str, Any] = {
        "membership_inference": _plain(
            attacks.membership_inference(x_train, x_hold, x_syn, seed=cfg.seed, bootstrap=cfg.bootstrap, engine=engine)
        ),
        "singling_out": _plain(attacks.singling_out(*codes, seed=cfg.seed)),
        "linkability": _plain(attacks.linkability(*codes, seed=cfg.seed, engine=engine)),
        "attribute_inference": {},
    }
    for i, name in enumerate(disc.columns):
        if tr.schema.columns[name].kind is ColumnKind.CATEGORICAL:
            out["attribute_inference"][name] = _plain(
                attacks.attribute_inference(codes[0], codes[1], codes[2], i, seed=cfg.seed, engine=engine)
            )
    if canaries is not None and canaries.get("epsilon") is not None:
        # The canaries were trained into a shadow run of one stage's mechanism (never released): its own
        # (epsilon, delta) is what the bound must respect, not the whole ledger's.
        scores = np.asarray(canaries["scores"], dtype=np.float64)
        included = np.asarray(canaries["included"], dtype=bool)
        audit = attacks.one_run_audit(scores, included, delta=float(canaries["delta"]))
        out["one_run"] = _plain(audit) | {
            "stage": canaries.get("stage"),
            "claimed_epsilon": float(canaries["epsilon"]),
            "claimed_delta": float(canaries["delta"]),
        }
    return out


def _fidelity(tr: Corpus, ho: Corpus, sy: Corpus, cfg: AuditConfig) -> dict[str, Any]:
    schema = tr.schema
    disc = Discretizer().fit(tr.records, schema)
    real_codes, hold_codes, syn_codes = (disc.transform(c.records) for c in (tr, ho, sy))
    size = min(len(ho), len(sy))
    syn_eq = syn_codes.iloc[:size]
    tvd = {
        str(k): {
            "synthetic": marginal_tvd(real_codes, syn_eq, disc, k),
            "holdout_floor": marginal_tvd(real_codes, hold_codes.iloc[:size], disc, k),
        }
        for k in (1, 2, 3)
    }
    out: dict[str, Any] = {"tvd": _plain(tvd)}
    target = cfg.target or choose_target(schema, tr.records)
    if target is not None and target in sy.records.columns:
        out["tstr"] = _plain(tstr(tr.records, ho.records, sy.records, schema, target))
    if disc.columns:
        out["discriminator_auc"] = discriminator_auc(tr.records, sy.records, schema, seed=cfg.seed)
    out["sdmetrics"] = sdmetrics_quality(tr.records, sy.records, schema)
    return out


def _standard_limitations(tools: Collaborators, cfg: AuditConfig) -> list[str]:
    out = [
        "The audit reads real records outside the DP guarantee; its numbers are evidence about this release, "
        "not a privacy guarantee.",
        "Distance metrics compare against a holdout of real records; they detect copying and near-copying, not "
        "every possible inference.",
    ]
    if cfg.spacy_model is None and tools.pii is None:
        out.append("No spaCy NER model: person names are found by dictionary and context only.")
    return out


def read_audit(path: Path) -> dict[str, Any]:
    """An ``audit.json`` (or the folder holding it), as written by :func:`write_audit`."""
    file = path / "audit.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: not a readable audit.json ({type(exc).__name__}); run 'privsynth audit'") from None
    if not isinstance(data, dict) or "checks" not in data:
        raise ConfigError(f"{file}: not an audit written by 'privsynth audit' (no checks)")
    return data


def write_audit(result: dict[str, Any], folder: Path) -> Path:
    """Write ``audit.json`` atomically: a kill leaves the old file or the new one (owner-only with examples)."""
    folder.mkdir(parents=True, exist_ok=True)
    internal = bool(result.get("internal"))
    if internal:
        folder.chmod(0o700)
    text = json.dumps(result, indent=2, default=str)
    return write_text_atomic(folder / "audit.json", text, mode=0o600 if internal else shared_mode())
