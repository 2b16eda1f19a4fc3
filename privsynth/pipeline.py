"""``privsynth run CONFIG``: profile -> fit -> sample -> audit -> gate -> release, resumable, in ``runs/<id>/``.

Each stage has a folder under the run directory and a ``stage.json`` written last; a stage whose ``stage.json``
exists is skipped when the run is started again. The fit is resumable inside its stage: the ledger is written
after every spend (before noise), the profile once computed and training checkpoints as it goes, so a run killed
during the fit continues where it stopped without counting privacy twice. The gate is re-evaluated on every run
(it is cheap and pure, and policies change); the release is written atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from privsynth.audit.folders import audit_folders
from privsynth.audit.report import write_report
from privsynth.audit.run import AuditConfig, Collaborators
from privsynth.config import FitConfig, load_config
from privsynth.data.atomic import check_writable, write_text_atomic
from privsynth.data.corpus import read_corpus
from privsynth.data.demo import write_demo_corpus
from privsynth.data.layout import MODEL_LEDGER, MODEL_META, load_provenance, read_json
from privsynth.data.schema import ColumnKind
from privsynth.engine import Engine, EngineSettings, make_engine
from privsynth.errors import ConfigError, ReleaseRefusedError
from privsynth.gate import gate, load_policy, resolve_policy
from privsynth.privacy.store import LedgerStore, hide_password
from privsynth.release.bundle import write_release
from privsynth.release.info import load_release_info
from privsynth.release.manifest import check_signing_key, verify_release
from privsynth.sampling import write_synthetic
from privsynth.settings import read_yaml, validate
from privsynth.synthesizer import Synthesizer
from privsynth.workdir import discard_finished, finished_by

log = logging.getLogger(__name__)
STAGES = ("corpus", "pretrain", "fit", "sample", "audit", "gate", "release")


class DemoSpec(BaseModel):
    """Build the fake demo corpus instead of reading one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(default=2000, ge=10)
    seed: int = 0


class SampleSpec(BaseModel):
    """How many synthetic records to draw (default: the profile's DP estimate of the training records), and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int | None = Field(default=None, ge=1)
    seed: int = 1
    text: dict[str, float | str | list[str]] = Field(
        default_factory=dict,
        description="Text sampling settings for this sample (privsynth.text_sampling.SAMPLING_SETTINGS, as "
        "'privsynth sample --text'): e.g. {lengths: profile}. Post-processing: a change redoes sampling, not the fit.",
    )

    @field_validator("text")
    @classmethod
    def _sampling_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        from privsynth.text_sampling import SAMPLING_SETTINGS

        unknown = sorted(set(value) - set(SAMPLING_SETTINGS))
        if unknown:  # refused when the config is read, not after the fit
            raise ValueError(
                f"sample.text: unknown setting(s) {', '.join(unknown)}; one of {', '.join(SAMPLING_SETTINGS)}"
            )
        return value


class ReleaseSpec(BaseModel):
    """Release information and signing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    info: Path
    sign_key: Path | None = None


class PretrainSpec(BaseModel):
    """Public pretraining of the text generator before DP fine-tuning (what ``privsynth pretrain-text`` does).

    Only public text belongs here: it is trained on without noise. ``public_demo`` (demo runs only) builds a
    second fake corpus from another seed: invented people, public by construction, standing in for an open
    corpus of the same kind.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    public_text: list[Path] = Field(default_factory=list, description="Public .txt files or folders.")
    public_demo: DemoSpec | None = None
    steps: int = Field(default=2000, ge=1, description="Training steps on the public text (no noise).")
    seed: int = Field(default=0, description="Seed of the public pretraining (public data only).")


class PipelineConfig(BaseModel):
    """A whole run, from a corpus to a release. Paths are relative to the working directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="Run id: the run lives in runs_dir/name.")
    description: str = ""
    corpus: Path | None = None
    demo: DemoSpec | None = None
    epsilon: float = Field(gt=0, le=1000)
    delta: float | None = Field(default=None, gt=0, lt=1)
    canaries: int = Field(default=0, ge=0)
    fit: Path | FitConfig | None = None
    pretrain_text: PretrainSpec | None = None
    sample: SampleSpec = SampleSpec()
    audit: AuditConfig = AuditConfig()
    policy: str = Field(
        default="default", description="Release policy: a built-in name (default, internal, public) or a YAML file."
    )
    release: ReleaseSpec | None = None
    runs_dir: Path = Path("runs")
    ledger_store: str | None = None
    source: str | None = None
    engine: EngineSettings = Field(
        default_factory=EngineSettings,
        description="Where the audit's embeddings, PII scans and searches run (local, or ray with address/workers).",
    )

    def fit_config(self) -> FitConfig:
        """The fit settings (inline, from a file, or defaults)."""
        if isinstance(self.fit, FitConfig):
            return self.fit
        return load_config(self.fit)


def load_pipeline(path: Path) -> PipelineConfig:
    """Read a pipeline config; errors name the entries to fix."""
    data = read_yaml(path, what="the run config")
    if isinstance(data, dict) and "seed" in data:
        raise ConfigError(
            f"{path}: 'seed' no longer applies to the fit: its noise comes from fresh OS entropy every run, so it "
            "cannot be replayed. Remove it; set 'sample: {seed: N}' for reproducible sampling."
        )
    config = validate(PipelineConfig, data, source=path, what="the run config")
    if (config.corpus is None) == (config.demo is None):
        raise ConfigError(f"{path}: give exactly one of 'corpus' (a folder) or 'demo' (build the demo corpus)")
    spec = config.pretrain_text
    if spec is not None:
        if not spec.public_text and spec.public_demo is None:
            raise ConfigError(f"{path}: pretrain_text needs 'public_text' files or 'public_demo'")
        if spec.public_demo is not None and (config.demo is None or spec.public_demo.seed == config.demo.seed):
            raise ConfigError(
                f"{path}: pretrain_text.public_demo is for demo runs only, with another seed than 'demo' "
                "(the public corpus must never be the private one)"
            )
    return config


def _pretrain(config: PipelineConfig, fit: FitConfig, stage: Path) -> dict[str, Path]:
    """The run's public text material (no private record is read): the ``text`` settings it fills in.

    Public ``.txt`` files give a checkpoint to fine-tune from (``text.pretrained``). A public demo corpus is
    written as a corpus (``text.public_corpus``): the fit learns its texts *conditioned on their records'
    fields* before DP-SGD, which a checkpoint of plain text cannot teach.
    """
    from privsynth.generators.text.pretrain import pretrain_text, read_public_texts

    spec = config.pretrain_text
    if spec is None:
        raise ConfigError("no pretrain_text section in the run config")
    settings: dict[str, Path] = {}
    if spec.public_text:
        documents, sources = read_public_texts(spec.public_text)
        checkpoint = stage / "text-public"
        pretrain_text(documents, fit.text, checkpoint, steps=spec.steps, seed=spec.seed, sources=sources)
        settings["pretrained"] = checkpoint
    if spec.public_demo is not None:
        settings["public_corpus"] = write_demo_corpus(
            stage / "public-corpus", n=spec.public_demo.n, seed=spec.public_demo.seed, force=True
        )
    (stage / "public.json").write_text(json.dumps({k: str(v) for k, v in settings.items()}), encoding="utf-8")
    return settings


@dataclass
class RunOutcome:
    """Where everything went."""

    folder: Path
    skipped: list[str]
    passed: bool
    report: Path
    release: Path | None
    reasons: list[str]


def _done(stage_dir: Path) -> bool:
    return (stage_dir / "stage.json").is_file()


def _finish(stage_dir: Path, **details: Any) -> None:
    payload = {"finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **details}
    write_text_atomic(stage_dir / "stage.json", json.dumps(payload, indent=2, default=str))


#: Which stage each run setting feeds first: a change redoes that stage and every later one.
_FEEDS = {
    "corpus": "corpus",
    "demo": "corpus",
    "pretrain_text": "pretrain",
    "epsilon": "fit",
    "delta": "fit",
    "canaries": "fit",
    "fit": "fit",
    "source": "fit",
    "ledger_store": "fit",
    "sample": "sample",
    "audit": "audit",
    "policy": "release",
    "release": "release",
    "files": "release",
    # 'engine' is absent on purpose: where the work runs does not change any result
}
_SPENDS = ("corpus", "pretrain", "fit")  # redoing one of these fits again: a second spend of epsilon


def _settings(config: PipelineConfig) -> dict[str, Any]:
    """The run's settings as stored in ``config.json``.

    A fit config file is read in, and the policy and release-information files are stored by SHA-256: their
    content, not their path, is what a stage used.
    """
    settings: dict[str, Any] = json.loads(config.model_copy(update={"fit": config.fit_config()}).model_dump_json())
    files = {"policy": _file_hash(resolve_policy(config.policy))}
    if config.release is not None:
        files["release"] = _file_hash(config.release.info)
    settings["files"] = files
    if settings.get("ledger_store"):  # config.json is readable by the team: never the store's password
        settings["ledger_store"] = hide_password(settings["ledger_store"])
    return settings


def _file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _stored_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """A run folder's stored settings as this version reads them: keys added since take their defaults."""
    files = stored.get("files")
    try:
        config = PipelineConfig.model_validate({k: v for k, v in stored.items() if k != "files"})
        normal = _settings(config)
    except (ValueError, TypeError, OSError, ConfigError):
        return stored
    normal["files"] = files  # the hashes of the files as they were, not as they are now
    return normal


def _changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ (``fit.holdout_fraction``), nested dicts compared per key."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_changes(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _reuse(root: Path, config: PipelineConfig, *, fresh: bool, tell: Callable[[str], None]) -> None:
    """Make the run folder fit this config: stages made under other settings are never reused silently.

    A change to what feeds the fit (the corpus, the budget, the fit settings) would mean fitting again, a second
    spend of privacy budget, so it is refused unless ``fresh`` (start the run folder over) or the corpus is the
    demo's (invented people: nothing private is spent). A change to sampling, the audit, the policy or the release
    redoes those stages and the ones after them.
    """
    stored = read_json(root / "config.json")
    if fresh:
        if root.exists():
            tell(f"starting {root} over (--fresh): its earlier stages are deleted")
            shutil.rmtree(root)
        return
    started = [s for s in STAGES if (root / s).exists()]
    if stored is None or not started:
        return
    changed = _changes(_stored_settings(stored), _settings(config))
    if not changed:
        return
    first = min((STAGES.index(_FEEDS[c.split(".")[0]]) for c in changed if c.split(".")[0] in _FEEDS), default=None)
    if first is None:  # name, description, runs_dir: nothing a stage used
        return
    redo = [s for s in STAGES[first:] if (root / s).exists()]
    if not redo:
        return
    listed = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    if STAGES[first] in _SPENDS and config.demo is None:
        raise ConfigError(
            f"{root} was made with other settings ({listed} changed). Using them means fitting again, which "
            "spends privacy budget again, so privsynth does not do it on its own. Run again with --fresh to start "
            f"{root} over (its stages are deleted; the ledger store keeps the earlier spend), or give the run "
            "another 'name' to keep both."
        )
    tell(f"settings changed since the last run ({listed}): redoing {', '.join(redo)}")
    for stage in redo:
        shutil.rmtree(root / stage)


def run_pipeline(
    config: PipelineConfig,
    *,
    say: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    fresh: bool = False,
) -> RunOutcome:
    """Run (or resume) every stage; raises :class:`ReleaseRefusedError` when the gate refuses.

    ``fresh`` starts the run folder over. Without it, stages made under other settings are redone when that
    spends nothing, and a change that would mean fitting again on a real corpus is refused (:func:`_reuse`).
    The profile's counts, large samples and the audit run on ``config.engine`` (one for the whole run).
    """
    runner = make_engine(config.engine)
    try:
        return _run_stages(config, runner, say=say, progress=progress, fresh=fresh)
    finally:
        runner.close()


def _check_guidance_fields(config: PipelineConfig, columns: Collection[str]) -> None:
    """``sample.text.guidance_fields`` name columns of the corpus (whether a prompt shows them: at sampling)."""
    fields = config.sample.text.get("guidance_fields")
    if isinstance(fields, str):  # "diagnosis, sex", as on the command line
        named = [f.strip() for f in fields.split(",")]
    else:
        named = [str(f) for f in fields] if isinstance(fields, list) else [] if fields is None else [str(fields)]
    unknown = [f for f in named if f and f not in columns]
    if unknown:
        raise ConfigError(
            f"sample.text.guidance_fields: {', '.join(repr(f) for f in unknown)} "
            f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of the corpus (its columns: "
            f"{', '.join(columns)})"
        )


def _run_stages(
    config: PipelineConfig,
    runner: Engine,
    *,
    say: Callable[[str], None] | None,
    progress: Callable[[str, int, int], None] | None,
    fresh: bool,
) -> RunOutcome:
    tell = say if say is not None else (lambda _m: None)
    root = config.runs_dir / config.name
    # Every check that needs no private data runs before anything is spent: the policy, the release information
    # and signing key, and that the run folder can be written.
    policy = load_policy(config.policy)
    info = load_release_info(config.release.info) if config.release is not None else None
    if config.release is not None and config.release.sign_key is not None:
        check_signing_key(config.release.sign_key)
    if not root.is_dir():
        check_writable(root, what="run folder")
    _reuse(root, config, fresh=fresh, tell=tell)
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "config.json", json.dumps(_settings(config), indent=2))
    skipped: list[str] = []

    corpus_dir = config.corpus if config.corpus is not None else root / "corpus" / "data"
    if config.demo is not None and not _done(root / "corpus"):
        tell(f"building the demo corpus ({config.demo.n} records)")
        write_demo_corpus(corpus_dir, n=config.demo.n, seed=config.demo.seed, force=True)
        _finish(root / "corpus", records=config.demo.n)
    elif config.demo is not None:
        skipped.append("corpus")
    real = read_corpus(corpus_dir)
    _check_guidance_fields(config, real.schema.columns)  # the schema is public: a typo is refused before the fit

    fit_config = config.fit_config()
    if config.pretrain_text is not None and real.schema.names(ColumnKind.TEXT):
        saved = root / "pretrain" / "public.json"
        if _done(root / "pretrain") and saved.is_file():  # runs of older versions lack public.json: redo
            skipped.append("pretrain")
            public = {k: Path(v) for k, v in json.loads(saved.read_text(encoding="utf-8")).items()}
        else:
            tell("preparing public text for the text generator (no private record is read)")
            public = _pretrain(config, fit_config, root / "pretrain")
            _finish(root / "pretrain")
        update: dict[str, object] = dict(public)
        if "public_corpus" in public:
            update["public_steps"] = config.pretrain_text.steps
        text = fit_config.text.model_copy(update=update)
        fit_config = fit_config.model_copy(update={"text": text})

    model_dir, work_dir = root / "fit" / "model", root / "fit" / "work"
    if (
        not _done(root / "fit")
        and (model_dir / "model.json").is_file()
        and (not work_dir.exists() or finished_by(work_dir, model_dir) is not None)
    ):
        # killed after the model was written (atomically, whole) by this stage's own fit, before the stage was
        # marked: fitting again would be a second spend. Mark it from the model's own ledger. (A work folder of
        # another run means a newer fit is under way: it resumes instead.)
        ledger = read_json(model_dir / MODEL_LEDGER) or {}
        meta = read_json(model_dir / MODEL_META) or {}
        _finish(root / "fit", epsilon=ledger.get("epsilon"), delta=ledger.get("target_delta"), run=meta.get("run_id"))
    if _done(root / "fit"):
        skipped.append("fit")
        if work_dir.exists():  # killed before deleting it; a finished stage never resumes it, and it holds real keys
            discard_finished(work_dir)
    else:
        tell("fitting DP generators (resumes from its checkpoint if it was interrupted)")
        synth = Synthesizer(fit_config).fit(
            real,
            epsilon=config.epsilon,
            delta=config.delta,
            store=LedgerStore(config.ledger_store),
            source=config.source,
            canaries=config.canaries,
            workdir=work_dir,
            progress=progress,
            engine=runner,
        )
        synth.save(model_dir, force=True)  # deletes the work folder (real keys, RNG states) once written
        _finish(root / "fit", epsilon=synth.ledger_.epsilon, delta=synth.ledger_.target_delta, run=synth.run_id_)

    synthetic_dir = root / "sample" / "synthetic"
    if _done(root / "sample"):
        skipped.append("sample")
    else:
        tell("sampling synthetic records")
        synth = Synthesizer.load(model_dir)
        # default size: the profile's DP estimate of the training records, never the exact count
        n = config.sample.n if config.sample.n is not None else max(synth.profile_.records, 1)
        write_synthetic(
            synth,
            synthetic_dir,
            n=n,
            seed=config.sample.seed,
            force=True,
            engine=runner,
            model=model_dir,
            text=config.sample.text or None,
            progress=progress,
        )
        _finish(root / "sample", records=n)

    audit_dir = root / "audit"
    if _done(audit_dir):
        skipped.append("audit")
        result = json.loads((audit_dir / "audit.json").read_text(encoding="utf-8"))
    else:
        tell("auditing the synthetic corpus against the real one")
        result = audit_folders(
            synthetic_dir,
            audit_dir,
            model=model_dir,
            corpus=real,
            config=config.audit,
            collaborators=Collaborators(engine=runner),
            progress=tell,
        ).result
        _finish(audit_dir)

    tell("applying the release policy")
    decision = gate(policy, result, load_provenance(synthetic_dir).get("ledger"))
    (root / "gate").mkdir(exist_ok=True)
    (root / "gate" / "decision.json").write_text(decision.model_dump_json(indent=2), encoding="utf-8")
    write_report(result, audit_dir, decision.model_dump(mode="json"))  # the report shows the gate's decision
    reasons = [r.message for r in decision.reasons]
    if not decision.passed:
        return RunOutcome(root, skipped, False, audit_dir / "report.html", None, reasons)

    release_dir = root / "release" / "bundle"
    if config.release is None or info is None:
        return RunOutcome(root, skipped, True, audit_dir / "report.html", None, reasons)
    if _done(root / "release") and verify_release(release_dir).ok:
        skipped.append("release")
    else:
        tell("writing the release")
        write_release(
            synthetic=synthetic_dir,
            audit=result,
            policy=policy,
            policy_path=resolve_policy(config.policy),
            info=info,
            out=release_dir,
            sign_key=config.release.sign_key,
            force=True,
        )
        _finish(root / "release")
    return RunOutcome(root, skipped, True, audit_dir / "report.html", release_dir, reasons)


__all__ = ["STAGES", "PipelineConfig", "ReleaseRefusedError", "RunOutcome", "load_pipeline", "run_pipeline"]
