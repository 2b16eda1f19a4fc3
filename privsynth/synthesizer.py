"""The synthesizer: one object that fits every generator under one ledger and samples linked records.

``Synthesizer.fit`` reserves a holdout (for audits), bounds each person's contribution, plans the budget jointly
(profile + one stage per generator), profiles under DP and trains the generators, each spending its planned
mechanism in the ledger before drawing noise. ``sample`` needs no real data: tabular fields from the tabular
generator, fresh keys, and surrogate identities for identifier columns.

A model folder holds only DP outputs and public metadata (safetensors weights, JSON, the ledger), plus an
``internal/`` folder (owner-only) with the holdout split, which is never released.
"""

from __future__ import annotations

import json
import logging
import math
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
from privsynth.data.schema import ColumnKind, Schema, dump_schema, schema_from_dict, schema_to_dict
from privsynth.errors import ConfigError, IntegrityError, NotFittedError
from privsynth.generators.dpsgd import unit_groups
from privsynth.generators.image.generator import ImageGenerator
from privsynth.generators.tabular.generator import TABULAR_KINDS, TabularGenerator
from privsynth.generators.text.generator import TextGenerator
from privsynth.privacy.contribution import bound_contributions
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.noise import NoiseSource
from privsynth.privacy.planner import StageShape, check_delta, default_delta, plan_budget
from privsynth.privacy.store import LedgerStore, new_run_id
from privsynth.profile.model import ImageProfile, load_profile, save_profile
from privsynth.profile.profiler import dp_profile, plan_queries
from privsynth.runtime import set_threads
from privsynth.surrogates import fill_identifiers, surrogate_identities

log = logging.getLogger(__name__)

MODEL_FORMAT = "privsynth-model"
MODEL_VERSION = 1
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class HoldoutSplit:
    """Record keys of the real records used for training and those kept out (internal: real keys)."""

    train: tuple[str, ...]
    holdout: tuple[str, ...]


def split_holdout(corpus: Corpus, *, fraction: float, seed: int) -> tuple[Corpus, Corpus, HoldoutSplit]:
    """Split records (whole people when the schema has an entity) into train and holdout, seeded."""
    schema = corpus.schema
    records = corpus.records
    units = records[schema.entity] if schema.entity is not None else records[schema.key]
    unique = units.drop_duplicates().to_numpy()
    rng = np.random.default_rng(seed)
    held_units = set(rng.permutation(unique)[: math.floor(fraction * len(unique))].tolist()) if fraction > 0 else set()
    held = units.isin(held_units).to_numpy()
    train, holdout = corpus.with_records(records[~held]), corpus.with_records(records[held])
    keys = HoldoutSplit(
        train=tuple(str(k) for k in train.records[schema.key]),
        holdout=tuple(str(k) for k in holdout.records[schema.key]),
    )
    return train, holdout, keys


def _write_json(path: Path, payload: object) -> None:
    """Write JSON atomically (a kill leaves the old file or the new one, never half of one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    tmp.replace(path)


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
        seed: int = 0,
        store: LedgerStore | None = None,
        source: str | None = None,
        run_id: str | None = None,
        progress: Progress | None = None,
        canaries: int = 0,
        workdir: Path | None = None,
    ) -> Synthesizer:
        """Fit every generator the schema needs within one (epsilon, delta).

        ``canaries`` plants that many random records in the tabular training set (each with probability 1/2)
        for the one-run privacy audit; they are fake, and their scores are kept under ``internal/``.

        ``workdir`` makes the fit resumable: the ledger is written there after every spend (before any noise),
        the profile once computed, and training checkpoints as they go. Fitting again with the same inputs and
        ``workdir`` after a crash continues where it stopped and never spends twice.
        """
        set_threads(self.config.threads)
        schema = corpus.schema
        train, _, split = split_holdout(corpus, fraction=self.config.holdout_fraction, seed=seed)
        bounded = train.with_records(bound_contributions(train.records, schema, seed=seed))
        groups = unit_groups(bounded)
        if groups.count < 2:
            raise ConfigError("fewer than 2 people/records left for training; lower --holdout-fraction or add data")
        chosen_delta = delta if delta is not None else default_delta(groups.count)
        check_delta(chosen_delta, groups.count)
        tabular = TabularGenerator(self.config.tabular)
        has_tabular = any(c.kind in TABULAR_KINDS for c in schema.columns.values())
        plan_shape = plan_queries(schema)
        shapes: list[StageShape] = []
        if plan_shape.queries:
            shapes.append(StageShape(stage=Stage.PROFILE, sample_rate=1.0, steps=plan_shape.queries))
        if has_tabular:
            shapes.append(tabular.shape(groups.count))
        text_columns = schema.names(ColumnKind.TEXT)
        if text_columns:
            # every text column runs the same mechanism: k identical runs compose like one run of k x steps
            shapes.append(self.config.text.optim.stage_shape(Stage.TEXT, groups.count, runs=len(text_columns)))
        image_columns = schema.names(ColumnKind.IMAGE)
        if image_columns:
            shapes.append(self.config.image.optim.stage_shape(Stage.IMAGE, groups.count, runs=len(image_columns)))
        if not shapes:
            raise ConfigError("nothing to learn: the schema has only keys and identifiers")
        extra = plan_shape.extra_delta(chosen_delta, self.config.profile)
        budget = plan_budget(
            epsilon=epsilon,
            delta=chosen_delta,
            shapes=shapes,
            shares=self.config.shares([s.stage for s in shapes]),
            accountant=self.config.accountant,
            extra_delta=extra,
        )
        ledger_file = workdir / "ledger.json" if workdir is not None else None
        if ledger_file is not None and ledger_file.is_file():
            ledger = PrivacyLedger.from_state_dict(json.loads(ledger_file.read_text(encoding="utf-8")))
            log.info("resuming: %d spend(s) already in %s", len(ledger.entries), ledger_file)
        else:
            ledger = PrivacyLedger(
                epsilon=epsilon,
                delta=chosen_delta,
                accountant=self.config.accountant,
                unit_of_privacy=schema.unit_of_privacy,
                secure_rng=False,
            )
        run = run_id or new_run_id()
        if store is not None:
            label = source or "unnamed-source"
            if not ledger.entries:
                store.check_cap(label, epsilon)
            store.record(source=label, run_id=run, ledger=ledger)  # re-syncs a resumed run (idempotent)
            ledger.attach(store.sink(source=label, run_id=run))
        if ledger_file is not None:
            ledger_file.parent.mkdir(parents=True, exist_ok=True)
            ledger.attach(lambda book, _entry: _write_json(ledger_file, book.state_dict()))
        profile_sigma = budget.mechanism(Stage.PROFILE).noise_multiplier if plan_shape.queries else 1.0
        profile_file = workdir / "profile.json" if workdir is not None else None
        if profile_file is not None and profile_file.is_file() and ledger.mechanisms(Stage.PROFILE):
            profile = load_profile(profile_file)
        else:
            profile = dp_profile(
                bounded,
                ledger=ledger,
                noise_multiplier=profile_sigma,
                noise=NoiseSource(seed, self.config.secure_noise),
                config=self.config.profile,
                resume=bool(ledger.mechanisms(Stage.PROFILE)),
            )
            if profile_file is not None:
                save_profile(profile, profile_file)
        if has_tabular:
            report = None if progress is None else (lambda step, total, _v: progress("tabular", step, total))
            tabular.fit(
                bounded,
                profile=profile,
                ledger=ledger,
                noise_multiplier=budget.mechanism(Stage.TABULAR).noise_multiplier,
                seed=seed,
                groups=groups,
                progress=report,
                canaries=canaries,
                checkpoint=workdir / "tabular-checkpoint" if workdir is not None else None,
            )
        self.texts_: dict[str, TextGenerator] = {}
        if text_columns:
            scanner = PiiScanner()
            for column in text_columns:
                report_text = (
                    None
                    if progress is None
                    else (lambda step, total, _v, c=column: progress(f"text '{c}'", step, total))
                )
                report_public = (
                    None
                    if progress is None
                    else (lambda step, total, _v, c=column: progress(f"public text for '{c}' (no noise)", step, total))
                )
                self.texts_[column] = TextGenerator(self.config.text).fit(
                    bounded,
                    column=column,
                    codecs=tabular.codecs_ if has_tabular else [],
                    subcolumns=tabular.subcolumns_ if has_tabular else [],
                    ledger=ledger,
                    noise_multiplier=budget.mechanism(Stage.TEXT).noise_multiplier,
                    seed=seed,
                    groups=groups,
                    scanner=scanner,
                    checkpoint=workdir / f"text-{column}-checkpoint" if workdir is not None else None,
                    progress=report_text,
                    public_progress=report_public,
                )
        self.images_: dict[str, ImageGenerator] = {}
        for column in image_columns:
            image_profile = profile.columns[column]
            assert isinstance(image_profile, ImageProfile)
            report_image = (
                None if progress is None else (lambda step, total, _v, c=column: progress(f"image '{c}'", step, total))
            )
            self.images_[column] = ImageGenerator(self.config.image).fit(
                bounded,
                column=column,
                profile=image_profile,
                codecs=tabular.codecs_ if has_tabular else [],
                ledger=ledger,
                noise_multiplier=budget.mechanism(Stage.IMAGE).noise_multiplier,
                seed=seed,
                groups=groups,
                checkpoint=workdir / f"image-{column}-checkpoint" if workdir is not None else None,
                progress=report_image,
            )
        self.schema_ = schema
        self.profile_ = profile.model_copy(update={"ledger": ledger.state_dict()})
        self.ledger_ = ledger
        self.tabular_ = tabular if has_tabular else None
        self.split_ = split
        self.seed_ = seed
        self.run_id_ = run
        self.source_ = source
        self.skipped_: dict[str, str] = {}
        return self

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
        """``n`` synthetic records in the schema's canonical types, and their surrogate identities (internal)."""
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
        if self.tabular_ is not None:
            records = self.tabular_.sample(n, conditions=fixed, seed=seed)
        else:
            records = pd.DataFrame(index=range(n))
        width = max(7, len(str(n)))
        for name in schema.names(ColumnKind.KEY):
            prefix = "SP" if name == schema.entity else "S" if name == schema.key else f"S{name[:3].upper()}"
            records[name] = [f"{prefix}{i:0{width}d}" for i in range(n)]
        texts = {c: g for c, g in self.texts_.items() if c in schema.columns}
        if schema.names(ColumnKind.IDENTIFIER) or texts:
            identities = surrogate_identities(n, seed=seed, records=records, schema=schema)
            records = fill_identifiers(records, schema, identities)
        else:
            identities = pd.DataFrame(index=range(n))
        if texts:
            # other people a text mentions (a relative, a doctor) get fresh fakes, never the record's identity
            others = surrogate_identities(n, seed=seed + 1_000_003)
            for i, (column, generator) in enumerate(texts.items()):
                records[column] = generator.sample(records, identities, others, seed=seed + 17 * (i + 1))
            identities = pd.concat([identities, others.add_prefix("other_")], axis=1)
        for i, (column, image) in enumerate((c, g) for c, g in self.images_.items() if c in schema.columns):
            records[column] = image.sample(records, seed=seed + 31 * (i + 1))
        identities.insert(0, schema.key, records[schema.key].to_numpy())
        return records[list(schema.columns)].reset_index(drop=True), identities

    # ----- persistence ------------------------------------------------------------------------------------------

    def save(self, folder: Path, *, force: bool = False) -> Path:
        """Write the model folder atomically: weights, metadata, ledger, profile; the split under internal/."""
        self._check_fitted()
        with atomic_dir(folder, force=force) as tmp:
            meta = {
                "format": MODEL_FORMAT,
                "version": MODEL_VERSION,
                "privsynth_version": __version__,
                "unit_of_privacy": self.schema_.unit_of_privacy,
                "epsilon": self.ledger_.epsilon,
                "delta": self.ledger_.target_delta,
                "seed": self.seed_,
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
            canaries = getattr(self.tabular_, "canaries_", None) if self.tabular_ is not None else None
            if canaries is not None:
                (internal / "canaries.json").write_text(json.dumps(canaries), encoding="utf-8")
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
        synth.seed_ = int(meta["seed"])
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
