"""The synthesizer: one object that fits every generator under one ledger and samples linked records.

``Synthesizer.fit`` reserves a holdout (for audits), bounds each person's contribution, spends a DP count of
people, plans the budget jointly (profile + one stage per generator), profiles under DP and trains the
generators, each spending its planned mechanism in the ledger before drawing noise. Every random draw that
touches private data comes from the fit's private streams (fresh OS entropy, one stream per stage, column and
purpose: :mod:`privsynth.privacy.randomness`); ``sample`` needs no real data and its seed is the only seed.

A model folder holds only DP outputs and public metadata (safetensors weights, JSON, the ledger), plus an
``internal/`` folder (owner-only) with the holdout split and canary scores, which is never released.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from privsynth._version import __version__
from privsynth.audit.pii.engine import PiiScanner
from privsynth.config import FitConfig
from privsynth.data.corpus import Corpus, atomic_dir
from privsynth.data.fingerprint import keyed_fingerprint
from privsynth.data.schema import ColumnKind, Schema, dump_schema, schema_from_dict, schema_to_dict
from privsynth.errors import ConfigError, IntegrityError, NotFittedError
from privsynth.generators.dpsgd import Groups, unit_groups
from privsynth.generators.image.generator import ImageGenerator
from privsynth.generators.public_inputs import check_public_inputs
from privsynth.generators.tabular.generator import TABULAR_KINDS, TabularGenerator
from privsynth.generators.text.generator import TextGenerator
from privsynth.privacy.contribution import bound_contributions
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.noise import CountNoise
from privsynth.privacy.planner import MAX_DEFAULT_DELTA, BudgetPlan, StageShape, check_delta, plan_budget
from privsynth.privacy.randomness import Streams
from privsynth.privacy.store import LedgerStore
from privsynth.profile.model import ImageProfile, Profile, load_profile, save_profile
from privsynth.profile.profiler import PROFILE_NOTE, dp_profile, dp_unit_count, plan_queries
from privsynth.runtime import set_threads
from privsynth.surrogates import fill_identifiers, surrogate_identities
from privsynth.workdir import FitWork

log = logging.getLogger(__name__)

MODEL_FORMAT = "privsynth-model"
MODEL_VERSION = 1
MAX_EPSILON = 1000.0
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class HoldoutSplit:
    """Record keys (internal: real keys) kept out for audits, and those the generators were trained on.

    ``train`` lists the records DP-SGD saw: after contribution bounding, so a person's records that bounding
    dropped are in neither list (they are not clean non-members either).
    """

    train: tuple[str, ...]
    holdout: tuple[str, ...]


def split_holdout(corpus: Corpus, *, fraction: float, rng: np.random.Generator) -> tuple[Corpus, Corpus, HoldoutSplit]:
    """Put each unit of privacy (a person, or a record) in the holdout independently with probability ``fraction``.

    Independent (Poisson) assignment keeps neighbouring corpora neighbours: removing one person changes no one
    else's side, which a fixed-size ``floor(fraction * n)`` split would not guarantee.
    """
    schema = corpus.schema
    records = corpus.records
    units = records[schema.entity] if schema.entity is not None else records[schema.key]
    unique = units.drop_duplicates().to_numpy()
    held_units = set(unique[rng.random(len(unique)) < fraction].tolist()) if fraction > 0 else set()
    held = units.isin(held_units).to_numpy()
    train, holdout = corpus.with_records(records[~held]), corpus.with_records(records[held])
    keys = HoldoutSplit(
        train=tuple(str(k) for k in train.records[schema.key]),
        holdout=tuple(str(k) for k in holdout.records[schema.key]),
    )
    return train, holdout, keys


def _by_keys(corpus: Corpus, keys: list[str]) -> Corpus:
    wanted = set(keys)
    mask = corpus.records[corpus.schema.key].astype(str).isin(wanted).to_numpy()
    if int(mask.sum()) != len(wanted):
        raise ConfigError("the corpus no longer holds every record its work folder names; delete the work folder")
    return corpus.with_records(corpus.records[mask])


@dataclass(frozen=True)
class _Prepared:
    """The records a fit trains on, the split it recorded, and its units of privacy (all private)."""

    train: Corpus
    split: HoldoutSplit
    groups: Groups


def _prepare(corpus: Corpus, fraction: float, streams: Streams, work: FitWork) -> _Prepared:
    """Holdout split and contribution bounding, drawn once per run (kept in the work folder for resume)."""
    saved = work.load("split.json")
    if saved is not None:
        bounded = _by_keys(corpus, saved["train"])
        return _Prepared(bounded, HoldoutSplit(tuple(saved["train"]), tuple(saved["holdout"])), unit_groups(bounded))
    train, _, split = split_holdout(corpus, fraction=fraction, rng=streams.numpy("split", "*", "holdout"))
    bounded = train.with_records(
        bound_contributions(train.records, corpus.schema, rng=streams.numpy("bounding", "*", "choice"))
    )
    used = HoldoutSplit(train=tuple(str(k) for k in bounded.records[corpus.schema.key]), holdout=split.holdout)
    work.save("split.json", {"train": list(used.train), "holdout": list(used.holdout)})
    return _Prepared(bounded, used, unit_groups(bounded))


INHERITED_NOTE = (
    "inherited from a checkpoint DP-fitted on another corpus (run {run}): composed, since the corpora may share people"
)


def _compose_inherited(ledger: PrivacyLedger, inherited: list[dict[str, Any]]) -> None:
    """Spend, in this run's ledger, the mechanisms of every DP-fitted checkpoint this fit starts from (once)."""
    for provenance in inherited:
        note = INHERITED_NOTE.format(run=provenance["run_id"])
        if any(e.note == note for e in ledger.entries):
            continue  # a resumed fit: already composed
        theirs = PrivacyLedger.from_state_dict(provenance["ledger"])
        for entry in theirs.entries:
            ledger.spend(entry.stage, entry.mechanism, extra_delta=entry.extra_delta, note=note)


def _reporter(progress: Progress | None, stage: str) -> Callable[[int, int, float], None] | None:
    """A generator's (step, steps, loss) callback reporting under ``stage``."""
    if progress is None:
        return None
    return lambda step, total, _loss: progress(stage, step, total)


def config_sha256(config: FitConfig) -> str:
    """Hash of a fit config (public), to tell a work folder's config from another."""
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class Synthesizer:
    """Fits DP generators for every modality of a corpus under one ledger, and samples linked records.

    Args:
        config: pipeline settings (public); defaults when omitted.
    """

    def __init__(self, config: FitConfig | None = None) -> None:
        self.config = config if config is not None else FitConfig()

    # ----- fitting ----------------------------------------------------------------------------------------------

    def fit(
        self,
        corpus: Corpus,
        *,
        epsilon: float,
        delta: float | None = None,
        store: LedgerStore | None = None,
        source: str | None = None,
        progress: Progress | None = None,
        canaries: int = 0,
        workdir: Path | None = None,
    ) -> Synthesizer:
        """Fit every generator the schema needs within one (epsilon, delta).

        Every spend is recorded in ``store`` (default: the default ledger store, ``PRIVSYNTH_LEDGER_STORE`` or
        ``.privsynth/ledger.sqlite``) under ``source`` (default: the corpus' keyed fingerprint) and this fit's own
        run id, and refused if a cap would be passed. ``delta`` defaults to ``min(1e-5, 0.1 / n)`` with ``n`` the
        DP count of people (never the exact one).

        ``canaries`` trains that many random canary records (each with probability 1/2) into a *shadow* tabular
        model that is never released, for the one-run privacy audit; their scores go under ``internal/``.

        ``workdir`` makes the fit resumable (:class:`privsynth.workdir.FitWork`): fitting again with the same
        corpus, config, budget and folder after a crash continues where it stopped and never spends twice.
        """
        if not 0 < epsilon <= MAX_EPSILON:
            raise ConfigError(f"epsilon must be in (0, {MAX_EPSILON:g}]; above that it means no guarantee")
        if canaries < 0:
            raise ConfigError("canaries must be >= 0")
        set_threads(self.config.threads)
        schema = corpus.schema
        streams = Streams.private()
        store = store if store is not None else LedgerStore()
        fingerprint = keyed_fingerprint(corpus, store)
        inherited = check_public_inputs(corpus, text=self.config.text, image=self.config.image, fingerprint=fingerprint)
        label = source or fingerprint
        identity = {
            "fingerprint": fingerprint,
            "source": label,
            "config_sha256": config_sha256(self.config),
            "epsilon": epsilon,
            "delta": delta,
            "canaries": canaries,
        }
        work = FitWork.open(workdir, identity=identity)
        data = _prepare(corpus, self.config.holdout_fraction, streams, work)
        if data.groups.count < 2:
            raise ConfigError("fewer than 2 people/records left for training; lower --holdout-fraction or add data")
        if delta is not None:
            check_delta(delta, data.groups.count)  # before anything is spent
        ledger = self._open_ledger(epsilon, delta, schema.unit_of_privacy, streams, work, store, label, fingerprint)
        _compose_inherited(ledger, inherited)
        noise = CountNoise(streams)
        units = work.load("count.json")
        if units is None:
            units = dp_unit_count(
                data.groups.count, ledger=ledger, noise=noise, config=self.config.profile, default_delta=delta is None
            )
            work.save("ledger.json", ledger.state_dict())  # with its tightened delta, before the count is kept
            work.save("count.json", units)
        budget = self._plan(schema, int(units), ledger, work)
        profile = self._profile(data.train, budget, int(units), ledger, noise, work)
        self._fit_generators(data, profile, budget, int(units), ledger, streams, work, progress)
        self.canaries_ = (
            self._canaries(data, profile, budget, streams, work, canaries, progress)
            if canaries and self.tabular_ is not None
            else None
        )
        provenance = {
            "dp_fit": True,
            "fingerprint": fingerprint,
            "source": label,
            "run_id": work.run_id,
            "ledger": ledger.state_dict(),  # so a fit starting from this checkpoint can compose its spend
        }
        for generator in [self.tabular_, *self.texts_.values(), *self.images_.values()]:
            if generator is not None:
                generator.provenance_ = provenance  # a later fit refuses to start from it on this corpus
        self.schema_ = schema
        self.profile_ = profile.model_copy(update={"ledger": ledger.state_dict()})
        self.ledger_ = ledger
        self.split_ = data.split
        self.run_id_ = work.run_id
        self.source_ = label
        self.work_ = work
        self.skipped_: dict[str, str] = {}
        return self

    def _open_ledger(
        self,
        epsilon: float,
        delta: float | None,
        unit: str,
        streams: Streams,
        work: FitWork,
        store: LedgerStore,
        label: str,
        fingerprint: str,
    ) -> PrivacyLedger:
        """The run's ledger (restored from the work folder when resuming), wired to the store and the folder."""
        saved = work.load("ledger.json")
        if saved is not None:
            ledger = PrivacyLedger.from_state_dict(saved)
            if ledger.rng is not streams.mode:
                raise ConfigError(
                    f"the work folder's ledger drew '{ledger.rng.value}' noise but this fit draws "
                    f"'{streams.mode.value}' (PRIVSYNTH_UNSAFE_REPRODUCIBLE_NOISE changed?); delete the work folder"
                )
            log.info("resuming run %s: %d spend(s) already in its ledger", work.run_id, len(ledger.entries))
        else:
            ledger = PrivacyLedger(
                epsilon=epsilon,
                delta=delta if delta is not None else MAX_DEFAULT_DELTA,
                accountant=self.config.accountant,
                unit_of_privacy=unit,
                rng=streams.mode,
            )
        if not ledger.entries:
            store.check_cap(label, epsilon, fingerprint=fingerprint)
        store.record(source=label, run_id=work.run_id, ledger=ledger, fingerprint=fingerprint)  # re-syncs a resume
        # The work folder first: a crash between the two writes leaves a spend the store lacks, which the next
        # start re-records (above); the other order would leave the store ahead of the ledger, refused on resume.
        ledger.attach(lambda book, _entry: work.save("ledger.json", book.state_dict()))
        ledger.attach(store.sink(source=label, run_id=work.run_id, fingerprint=fingerprint))
        return ledger

    def _plan(self, schema: Schema, units: int, ledger: PrivacyLedger, work: FitWork) -> BudgetPlan:
        """Calibrate every stage's noise around what is already spent (the count); kept for resume."""
        saved = work.load("plan.json")
        if saved is not None:
            return BudgetPlan.model_validate(saved)
        queries = plan_queries(schema)
        shapes: list[StageShape] = []
        if queries.queries:
            shapes.append(StageShape(stage=Stage.PROFILE, sample_rate=1.0, steps=queries.queries))
        if any(c.kind in TABULAR_KINDS for c in schema.columns.values()):
            shapes.append(TabularGenerator(self.config.tabular).shape(units))
        texts, images = schema.names(ColumnKind.TEXT), schema.names(ColumnKind.IMAGE)
        if texts:  # every text column runs the same mechanism: k identical runs compose like one of k x steps
            shapes.append(self.config.text.optim.stage_shape(Stage.TEXT, units, runs=len(texts)))
        if images:
            shapes.append(self.config.image.optim.stage_shape(Stage.IMAGE, units, runs=len(images)))
        if not shapes:
            raise ConfigError("nothing to learn: the schema has only keys and identifiers")
        budget = plan_budget(
            epsilon=ledger.target_epsilon,
            delta=ledger.target_delta,
            shapes=shapes,
            shares=self.config.shares([s.stage for s in shapes]),
            accountant=self.config.accountant,
            extra_delta=queries.extra_delta(ledger.target_delta, self.config.profile),
            spent=ledger.mechanisms(),
        )
        work.save("plan.json", budget.model_dump(mode="json"))
        return budget

    def _profile(
        self, train: Corpus, budget: BudgetPlan, units: int, ledger: PrivacyLedger, noise: CountNoise, work: FitWork
    ) -> Profile:
        path = work.path("profile.json")
        queries = plan_queries(train.schema).queries
        sigma = budget.mechanism(Stage.PROFILE).noise_multiplier if queries else 1.0
        spent = any(e.stage is Stage.PROFILE and PROFILE_NOTE in e.note for e in ledger.entries)
        if path is not None and path.is_file() and (spent or not queries):
            return load_profile(path)
        profile = dp_profile(
            train,
            ledger=ledger,
            noise_multiplier=sigma,
            noise=noise,
            units=units,
            config=self.config.profile,
            resume=spent,
        )
        if path is not None:
            save_profile(profile, path)
        return profile

    def _fit_generators(
        self,
        data: _Prepared,
        profile: Profile,
        budget: BudgetPlan,
        units: int,
        ledger: PrivacyLedger,
        streams: Streams,
        work: FitWork,
        progress: Progress | None,
    ) -> None:
        schema = data.train.schema
        self.tabular_: TabularGenerator | None = None
        if any(c.kind in TABULAR_KINDS for c in schema.columns.values()):
            self.tabular_ = TabularGenerator(self.config.tabular).fit(
                data.train,
                profile=profile,
                ledger=ledger,
                noise_multiplier=budget.mechanism(Stage.TABULAR).noise_multiplier,
                streams=streams,
                groups=data.groups,
                progress=_reporter(progress, "tabular"),
                checkpoint=work.path("tabular-checkpoint"),
            )
        codecs = self.tabular_.codecs_ if self.tabular_ is not None else []
        subcolumns = self.tabular_.subcolumns_ if self.tabular_ is not None else []
        self.texts_: dict[str, TextGenerator] = {}
        scanner = PiiScanner() if schema.names(ColumnKind.TEXT) else None
        for column in schema.names(ColumnKind.TEXT):
            self.texts_[column] = TextGenerator(self.config.text).fit(
                data.train,
                column=column,
                codecs=codecs,
                subcolumns=subcolumns,
                ledger=ledger,
                noise_multiplier=budget.mechanism(Stage.TEXT).noise_multiplier,
                units=units,
                streams=streams,
                groups=data.groups,
                scanner=scanner,
                checkpoint=work.path(f"text-{column}-checkpoint"),
                progress=_reporter(progress, f"text '{column}'"),
                public_progress=_reporter(progress, f"public text for '{column}' (no noise)"),
            )
        self.images_: dict[str, ImageGenerator] = {}
        for column in schema.names(ColumnKind.IMAGE):
            image_profile = profile.columns[column]
            if not isinstance(image_profile, ImageProfile):
                raise TypeError(f"column '{column}' has no image profile")
            self.images_[column] = ImageGenerator(self.config.image).fit(
                data.train,
                column=column,
                profile=image_profile,
                codecs=codecs,
                ledger=ledger,
                noise_multiplier=budget.mechanism(Stage.IMAGE).noise_multiplier,
                units=units,
                streams=streams,
                groups=data.groups,
                checkpoint=work.path(f"image-{column}-checkpoint"),
                progress=_reporter(progress, f"image '{column}'"),
            )

    def _canaries(
        self,
        data: _Prepared,
        profile: Profile,
        budget: BudgetPlan,
        streams: Streams,
        work: FitWork,
        count: int,
        progress: Progress | None,
    ) -> dict[str, Any]:
        """The one-run audit's shadow run: the tabular stage's mechanism on the records plus canaries."""
        from privsynth.privacy.accounting import composed_epsilon

        if self.tabular_ is None:
            raise NotFittedError("canaries need the tabular generator")
        saved = work.load("canaries.json")
        if saved is not None:
            return dict(saved)
        mechanism = self.tabular_.mechanism(budget.mechanism(Stage.TABULAR).noise_multiplier, profile)
        drawn = work.load("canary-draw.json")  # a resumed shadow run must score the canaries it trained on
        if drawn is None:
            tokens, included = self.tabular_.draw_canaries(count, streams)
            drawn = {"tokens": tokens.tolist(), "included": included.tolist()}
            work.save("canary-draw.json", drawn)
        result = self.tabular_.shadow_canaries(
            data.train,
            mechanism=mechanism,
            streams=streams,
            tokens=np.asarray(drawn["tokens"], dtype=np.int64),
            included=np.asarray(drawn["included"], dtype=bool),
            units_dp=profile.units or 1,
            groups=data.groups,
            progress=_reporter(progress, "canary shadow run (never released)"),
            checkpoint=work.path("shadow-checkpoint"),
        )
        accountant_delta = budget.delta - budget.extra_delta
        result |= {
            "stage": Stage.TABULAR.value,
            "mechanism": mechanism.model_dump(),
            "epsilon": composed_epsilon([mechanism], delta=accountant_delta, accountant=budget.accountant),
            "delta": accountant_delta,
        }
        work.save("canaries.json", result)
        return result

    def _check_fitted(self) -> None:
        if not hasattr(self, "ledger_"):
            raise NotFittedError("this Synthesizer is not fitted; call fit() or Synthesizer.load()")

    @property
    def generator_names(self) -> list[str]:
        """The fitted generators: ``tabular``, ``text:<column>``, ``image:<column>``."""
        self._check_fitted()
        names = ["tabular"] if self.tabular_ is not None else []
        return names + [f"text:{c}" for c in self.texts_] + [f"image:{c}" for c in self.images_]

    @property
    def public_data(self) -> list[dict[str, object]]:
        """Public data the generators were trained on *without noise* (declared public by the data team).

        Listed in every synthetic corpus' provenance and in a release's datasheet, since nothing about it is
        protected: a public corpus by fingerprint, a public checkpoint by folder name.
        """
        self._check_fitted()
        out: list[dict[str, object]] = []
        for column, text in self.texts_.items():
            if text.public_:
                out.append({"generator": f"text:{column}", "kind": "public corpus", **text.public_})
            if text.config.pretrained is not None:
                out.append(
                    {"generator": f"text:{column}", "kind": "public checkpoint", "name": text.config.pretrained.name}
                )
        for column, image in self.images_.items():
            if image.config.pretrained is not None:
                out.append(
                    {"generator": f"image:{column}", "kind": "public checkpoint", "name": image.config.pretrained.name}
                )
        return out

    # ----- sampling ---------------------------------------------------------------------------------------------

    @property
    def synthetic_schema(self) -> Schema:
        """The real schema minus columns no generator produces (never copied from real data)."""
        self._check_fitted()
        columns = {n: c for n, c in self.schema_.columns.items() if n not in self.skipped_}
        return self.schema_.model_copy(update={"columns": columns})

    def sample(
        self, n: int, *, conditions: Mapping[str, Any] | None = None, seed: int = 0
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``n`` synthetic records in the schema's canonical types, and their surrogate identities (internal).

        Sampling is post-processing of the DP model: ``seed`` names its streams (one per generator and purpose,
        :meth:`Streams.sampling`), so the same seed gives the same records and spends nothing.
        """
        self._check_fitted()
        if n < 1:
            raise ConfigError("--n must be at least 1")
        fixed = dict(conditions or {})
        schema = self.synthetic_schema
        unknown = [k for k in fixed if k not in self.schema_.columns]
        if unknown:
            tabular = ", ".join(n for n, c in schema.columns.items() if c.kind in TABULAR_KINDS)
            raise ConfigError(f"--where names unknown column(s) {', '.join(unknown)}; tabular columns: {tabular}")
        not_tabular = [k for k in fixed if k not in schema.columns or schema.columns[k].kind not in TABULAR_KINDS]
        if not_tabular:
            raise ConfigError(
                f"--where can fix tabular columns only; not: {', '.join(not_tabular)} "
                f"(identifiers and keys are generated, text and images follow the record)"
            )
        streams = Streams.sampling(seed)
        if self.tabular_ is not None:
            records = self.tabular_.sample(n, conditions=fixed, streams=streams)
        else:
            records = pd.DataFrame(index=range(n))
        width = max(7, len(str(n)))
        for name in schema.names(ColumnKind.KEY):
            prefix = "SP" if name == schema.entity else "S" if name == schema.key else f"S{name[:3].upper()}"
            records[name] = [f"{prefix}{i:0{width}d}" for i in range(n)]
        texts = {c: g for c, g in self.texts_.items() if c in schema.columns}
        if schema.names(ColumnKind.IDENTIFIER) or texts:
            identities = surrogate_identities(
                n, seed=streams.integer("sample", "surrogates", "identity"), records=records, schema=schema
            )
            records = fill_identifiers(records, schema, identities)
        else:
            identities = pd.DataFrame(index=range(n))
        if texts:
            # other people a text mentions (a relative, a doctor) get fresh fakes, never the record's identity
            others = surrogate_identities(n, seed=streams.integer("sample", "surrogates", "others"))
            for column, generator in texts.items():
                records[column] = generator.sample(records, identities, others, streams=streams)
            identities = pd.concat([identities, others.add_prefix("other_")], axis=1)
        for column, image in self.images_.items():
            if column in schema.columns:
                records[column] = image.sample(records, streams=streams)
        identities.insert(0, schema.key, records[schema.key].to_numpy())
        return records[list(schema.columns)].reset_index(drop=True), identities

    # ----- persistence ------------------------------------------------------------------------------------------

    def save(self, folder: Path, *, force: bool = False) -> Path:
        """Write the model folder atomically: weights, metadata, ledger, profile; the split under internal/.

        Once the model is written, the fit's work folder (if it had one) is deleted: it holds real record keys and
        generator states from which the run's noise could be recomputed.
        """
        self._check_fitted()
        with atomic_dir(folder, force=force) as tmp:
            meta = {
                "format": MODEL_FORMAT,
                "version": MODEL_VERSION,
                "privsynth_version": __version__,
                "unit_of_privacy": self.schema_.unit_of_privacy,
                "epsilon": self.ledger_.epsilon,
                "delta": self.ledger_.target_delta,
                "rng": self.ledger_.rng.value,
                "records_dp": self.profile_.records,
                "run_id": self.run_id_,
                "source": self.source_,
                "generators": self.generator_names,
                "skipped_columns": self.skipped_,
                "config": self.config.model_dump(mode="json"),
                "schema": schema_to_dict(self.schema_),
            }
            (tmp / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            (tmp / "ledger.json").write_text(json.dumps(self.ledger_.state_dict(), indent=2), encoding="utf-8")
            (tmp / "schema.yaml").write_text(dump_schema(self.schema_), encoding="utf-8")
            save_profile(self.profile_, tmp / "profile.json")
            if self.tabular_ is not None:
                self.tabular_.save(tmp / "tabular")
            for column, generator in self.texts_.items():
                generator.save(tmp / f"text-{column}")
            for column, image in self.images_.items():
                image.save(tmp / f"image-{column}")
            internal = tmp / "internal"
            internal.mkdir(mode=0o700)
            split = {"train": list(self.split_.train), "holdout": list(self.split_.holdout)}
            fd = os.open(internal / "split.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"WARNING": "INTERNAL: real record keys. Never release.", **split}, handle)
            if self.canaries_ is not None:
                fd = os.open(internal / "canaries.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(self.canaries_, handle)
        work = getattr(self, "work_", None)
        if work is not None:
            work.discard()
        return folder

    @classmethod
    def load(cls, folder: Path) -> Synthesizer:
        """Read a model folder written by :meth:`save` (safetensors + JSON, no pickle)."""
        meta_path = folder / "model.json"
        if not meta_path.is_file():
            raise ConfigError(f"{folder} is not a privsynth model folder (no model.json); run 'privsynth fit' first")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != MODEL_FORMAT or meta.get("version") != MODEL_VERSION:
            raise IntegrityError(f"{folder}: unsupported model format {meta.get('format')} v{meta.get('version')}")
        synth = cls(FitConfig.model_validate(meta["config"]))
        synth.schema_ = schema_from_dict(meta["schema"], source=str(meta_path))
        synth.ledger_ = PrivacyLedger.from_state_dict(json.loads((folder / "ledger.json").read_text("utf-8")))
        synth.profile_ = load_profile(folder / "profile.json")
        synth.tabular_ = TabularGenerator.load(folder / "tabular") if "tabular" in meta["generators"] else None
        synth.texts_ = {
            g.split(":", 1)[1]: TextGenerator.load(folder / f"text-{g.split(':', 1)[1]}")
            for g in meta["generators"]
            if g.startswith("text:")
        }
        synth.images_ = {
            g.split(":", 1)[1]: ImageGenerator.load(folder / f"image-{g.split(':', 1)[1]}")
            for g in meta["generators"]
            if g.startswith("image:")
        }
        synth.canaries_ = None
        synth.run_id_ = str(meta["run_id"])
        synth.source_ = meta.get("source")
        synth.skipped_ = dict(meta.get("skipped_columns", {}))
        split_file = folder / "internal" / "split.json"
        if split_file.is_file():
            split = json.loads(split_file.read_text("utf-8"))
            synth.split_ = HoldoutSplit(train=tuple(split["train"]), holdout=tuple(split["holdout"]))
        else:
            synth.split_ = HoldoutSplit(train=(), holdout=())
        return synth
