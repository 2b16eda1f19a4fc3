"""The synthesizer: one object that fits every generator under one ledger and samples linked records.

``Synthesizer.fit`` reserves a holdout (for audits), bounds each person's contribution, spends a DP count of
people, plans the budget jointly (profile + one stage per generator), profiles under DP and fits every generator
the schema needs (found through :data:`privsynth.generators.registry.registry`), each spending its planned mechanism in
the ledger before drawing noise. Every random draw that touches private data comes from the fit's private streams
(fresh OS entropy, one stream per stage, column and purpose: :mod:`privsynth.privacy.randomness`); ``sample``
needs no real data and its seed is the only seed.

A model folder holds only DP outputs and public metadata (safetensors weights, JSON, the ledger), plus an
``internal/`` folder (owner-only) with the holdout split and canary scores, which is never released.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from safetensors import SafetensorError

from privsynth._version import __version__
from privsynth.conditions import Range, split_conditions
from privsynth.config import FitConfig
from privsynth.data.atomic import atomic_dir
from privsynth.data.corpus import Corpus
from privsynth.data.fingerprint import keyed_fingerprint
from privsynth.data.integrity import check_folder_manifest, write_folder_manifest
from privsynth.data.layout import (
    CANARIES,
    INTERNAL,
    MODEL_LEDGER,
    MODEL_MANIFEST,
    MODEL_META,
    MODEL_PROFILE,
    SPLIT,
    read_json,
)
from privsynth.data.schema import ColumnKind, Schema, dump_schema, schema_from_dict, schema_to_dict
from privsynth.engine import Engine
from privsynth.errors import ConfigError, IntegrityError, NotFittedError, PrivsynthError
from privsynth.generators.base import FitContext, Generator, Instance, Progress, SampleContext
from privsynth.generators.public_inputs import check_public_inputs, compose_inherited
from privsynth.generators.registry import registry
from privsynth.pii.surrogates import fill_identifiers, surrogate_identities
from privsynth.privacy.accounting import composed_epsilon
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.noise import CountNoise
from privsynth.privacy.planner import (
    MAX_DEFAULT_DELTA,
    BudgetPlan,
    StageShape,
    check_delta,
    default_delta,
    plan_budget,
)
from privsynth.privacy.randomness import Streams
from privsynth.privacy.store import LedgerStore
from privsynth.profile.findings import unplaced_columns
from privsynth.profile.model import Profile, load_profile, save_profile
from privsynth.profile.profiler import (
    PROFILE_NOTE,
    adapted_profile_share,
    count_mechanism,
    dp_profile,
    dp_unit_count,
    plan_queries,
)
from privsynth.runtime import set_threads
from privsynth.trainset import HoldoutSplit, TrainingSet, training_set
from privsynth.workdir import FitWork, mark_saved, refuse_redraw

if TYPE_CHECKING:
    from privsynth.forecast import FitForecast
    from privsynth.variation import Cell

log = logging.getLogger(__name__)

MODEL_FORMAT = "privsynth-model"
MODEL_VERSION = 1
MAX_DRAWS_PER_RECORD = 200  # range conditions: give up past this many draws per record asked for
RANGE_CHUNK = 100_000  # range conditions: records drawn per round at most (bounded memory)
MAX_EPSILON = 1000.0


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
        corpus: Corpus | pd.DataFrame | str | Path,
        *,
        epsilon: float,
        delta: float | None = None,
        schema: Schema | dict[str, Any] | str | Path | None = None,
        store: LedgerStore | None = None,
        source: str | None = None,
        progress: Progress | bool | None = None,
        canaries: int = 0,
        workdir: Path | None = None,
        engine: Engine | None = None,
    ) -> Synthesizer:
        """Fit every generator the schema needs within one (epsilon, delta).

        ``corpus`` is a :class:`Corpus`, a corpus folder, or a pandas DataFrame; with a DataFrame, ``schema`` (a
        Schema, a dict like schema.yaml, or its path) says what each column is, else it is inferred as ``privsynth
        init`` does (see :mod:`privsynth.frames`). ``progress=True`` shows progress bars (``tqdm.auto``: widgets in
        a notebook); a callable ``(stage, done, total)`` receives them instead.

        Every spend is recorded in ``store`` (default: ``PRIVSYNTH_LEDGER_STORE`` or ``.privsynth/ledger.sqlite``)
        under ``source`` (default: the corpus' keyed fingerprint) and this fit's own run id, and refused if a cap
        would be passed. ``delta`` defaults to ``min(1e-5, 0.1 / n)`` with ``n`` the DP count of people.
        ``canaries`` trains that many canary records into a *shadow* tabular model that is never released, for
        the one-run privacy audit. ``workdir`` makes the fit resumable (:class:`privsynth.workdir.FitWork`).
        ``engine`` is where the profile's exact counts are taken, shard by shard, and where DP-SGD's clipped
        gradient sums are computed, part of each batch per worker (:mod:`privsynth.engine`,
        :mod:`privsynth.generators.dpsgd_workers`); the noise, the ledger and the random streams stay in this
        process, so the mechanisms and the ledger are the same for any engine.
        """
        from privsynth.frames import as_corpus

        self._validate(epsilon, delta, canaries)
        inferred = isinstance(corpus, pd.DataFrame) and schema is None  # read from the records: outside epsilon
        corpus = as_corpus(corpus, schema=schema)
        progress = _progress_bars() if progress is True else progress or None
        set_threads(self.config.threads)
        streams, store = Streams.private(), store if store is not None else LedgerStore()
        fingerprint = keyed_fingerprint(corpus, store)
        inherited = check_public_inputs(corpus, text=self.config.text, image=self.config.image, fingerprint=fingerprint)
        label = source or fingerprint
        work = FitWork.open(workdir, identity=self._identity(fingerprint, label, epsilon, delta, canaries))
        data = training_set(corpus, fraction=self.config.holdout_fraction, streams=streams, work=work)
        if delta is not None:
            check_delta(delta, data.groups.count, exact=True)  # before anything is spent; n not shown
        ledger = self._open_ledger(
            epsilon, delta, corpus.schema.unit_of_privacy, streams, work, store, label, fingerprint
        )
        compose_inherited(ledger, inherited)
        noise = CountNoise(streams)
        units = self._count(data, ledger, noise, work, default_delta=delta is None)
        instances = registry.instances(corpus.schema)
        budget = self._plan(corpus.schema, instances, units, ledger, work)
        profile = self._profile(data.train, budget, units, ledger, noise, work, engine)
        skipped = unplaced_columns(profile)  # a range that is a guess would give valid but meaningless values
        instances = _without(instances, skipped)
        context = FitContext(profile, ledger, 0.0, streams, data.groups, units, progress=progress, engine=engine)
        self.generators_ = self._fit_generators(instances, data.train, budget, context, work)
        self.instances_ = instances
        self.canaries_ = self._canaries(data, profile, budget, streams, work, canaries, progress) if canaries else None
        provenance = {"dp_fit": True, "fingerprint": fingerprint, "source": label, "run_id": work.run_id}
        for generator in self.generators_.values():  # so a fit starting from it can refuse it or compose its spend
            generator.provenance_ = provenance | {"ledger": ledger.state_dict()}
        self.schema_, self.ledger_, self.split_ = corpus.schema, ledger, data.split
        self.profile_ = profile.model_copy(update={"ledger": ledger.state_dict()})
        self.run_id_, self.source_, self.work_ = work.run_id, label, work
        self.budget_: BudgetPlan | None = budget  # the calibrated plan (shares and noise per stage): public
        self.skipped_: dict[str, str] = skipped
        self.schema_inferred_ = inferred
        return self

    def plan(
        self, schema: Schema | dict[str, Any] | str | Path, *, epsilon: float, people: int, delta: float | None = None
    ) -> FitForecast:
        """What a fit of a corpus with ``schema`` and about ``people`` units of privacy will do, before it runs.

        Reads no record and spends nothing: ``people`` is the data team's own estimate (the fit itself uses a DP
        count). Returns each stage's noise and each column's expected outcome, with what to do about a collapse.
        """
        from privsynth.forecast import forecast
        from privsynth.frames import as_schema

        schema = as_schema(schema)
        self._validate(epsilon, delta, 0)
        if people < 1:
            raise ConfigError("people must be at least 1 (your estimate of the number of people in the corpus)")
        if delta is not None:
            check_delta(delta, people)
        ledger = PrivacyLedger(
            epsilon=epsilon,
            delta=delta if delta is not None else MAX_DEFAULT_DELTA,
            accountant=self.config.accountant,
            unit_of_privacy=schema.unit_of_privacy,
        )
        ledger.spend(
            Stage.PROFILE, count_mechanism(epsilon=epsilon, delta=ledger.target_delta, config=self.config.profile)
        )
        if delta is None:
            ledger.tighten_delta(min(ledger.target_delta, default_delta(people)))
        instances = registry.instances(schema)
        budget = self._budget(schema, instances, people, ledger)
        return forecast(schema, self.config, budget, people=people)

    def _validate(self, epsilon: float, delta: float | None, canaries: int) -> None:
        if not 0 < epsilon <= MAX_EPSILON:
            raise ConfigError(f"epsilon must be in (0, {MAX_EPSILON:g}]; above that it means no guarantee")
        if canaries < 0:
            raise ConfigError("canaries must be >= 0")
        if delta is not None and not 0 < delta < 1:
            raise ConfigError("delta must be in (0, 1); leave it out for the default min(1e-5, 0.1/n)")
        # Calibratable before anything is spent: the count's noise depends on the public (epsilon, delta) only.
        try:
            count_mechanism(
                epsilon=epsilon, delta=delta if delta is not None else MAX_DEFAULT_DELTA, config=self.config.profile
            )
        except ConfigError:
            raise ConfigError(
                f"epsilon {epsilon:g} is too small to calibrate even the fit's first mechanism (the DP count of "
                f"people, {self.config.profile.count_share:g} of the budget); nothing was spent. Raise epsilon"
            ) from None

    def _identity(
        self, fingerprint: str, label: str, epsilon: float, delta: float | None, canaries: int
    ) -> dict[str, Any]:
        """What a work folder must match to be resumed by this fit."""
        return {
            "fingerprint": fingerprint,
            "source": label,
            "config_sha256": config_sha256(self.config),
            "epsilon": epsilon,
            "delta": delta,
            "canaries": canaries,
        }

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
        """The run's ledger (restored from the work folder when resuming), wired to the folder and the store."""
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

    def _count(
        self, data: TrainingSet, ledger: PrivacyLedger, noise: CountNoise, work: FitWork, *, default_delta: bool
    ) -> int:
        """The DP count of people (kept in the work folder: a resumed fit never draws it twice)."""
        saved = work.load("count.json")
        if saved is not None:
            return int(saved)
        units = dp_unit_count(
            data.groups.count, ledger=ledger, noise=noise, config=self.config.profile, default_delta=default_delta
        )
        work.save("ledger.json", ledger.state_dict())  # with its tightened delta, before the count is kept
        work.save("count.json", units)
        return units

    def _generator(self, instance: Instance) -> Generator:
        cls = registry.get(instance.name)
        return cls(self.config.settings_for(instance.name, cls.settings))

    def _plan(
        self, schema: Schema, instances: list[Instance], units: int, ledger: PrivacyLedger, work: FitWork
    ) -> BudgetPlan:
        """Calibrate every stage's noise around what is already spent (the count); kept for resume."""
        saved = work.load("plan.json")
        if saved is not None:
            return BudgetPlan.model_validate(saved)
        try:
            budget = self._budget(schema, instances, units, ledger)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} (the DP count of people, {self.config.profile.count_share:g} of the budget, was already spent "
                "and is recorded)"
            ) from None
        work.save("plan.json", budget.model_dump(mode="json"))
        return budget

    def _budget(self, schema: Schema, instances: list[Instance], units: int, ledger: PrivacyLedger) -> BudgetPlan:
        """Every stage's calibrated noise for ``units`` people, around the ledger's spends. Reads no records."""
        queries = plan_queries(schema)
        shapes: dict[str, StageShape] = {}
        if queries.queries:
            shapes[Stage.PROFILE] = StageShape(stage=Stage.PROFILE, sample_rate=1.0, steps=queries.queries)
        defaults: dict[str, float] = {}
        for instance in instances:  # the instances of one stage run one mechanism each: k runs compose as k x steps
            generator = self._generator(instance)
            shape, defaults[generator.stage] = generator.plan(units), generator.default_share
            if generator.stage in shapes:
                shape = shape.model_copy(update={"steps": shapes[generator.stage].steps + shape.steps})
            shapes[generator.stage] = shape
        if not shapes:
            raise ConfigError("nothing to learn: the schema has only keys and identifiers")
        shares = self.config.shares(list(shapes), defaults)
        if Stage.PROFILE in shares and len(shares) > 1:  # small cohorts: a profile that is all noise helps nobody
            total = sum(shares.values())
            wanted = adapted_profile_share(
                schema,
                base=shares[Stage.PROFILE] / total,
                units=units,
                epsilon=ledger.target_epsilon,
                delta=ledger.target_delta,
                config=self.config.profile,
            )
            rest = total - shares[Stage.PROFILE]
            shares[Stage.PROFILE] = wanted / (1.0 - wanted) * rest
        return plan_budget(
            epsilon=ledger.target_epsilon,
            delta=ledger.target_delta,
            shapes=list(shapes.values()),
            shares=shares,
            accountant=self.config.accountant,
            # the delta thresholds already hold (an inherited checkpoint's profile) plus this profile's
            extra_delta=ledger.extra_delta + queries.extra_delta(ledger.target_delta, self.config.profile),
            spent=ledger.mechanisms(),
        )

    def _profile(
        self,
        train: Corpus,
        budget: BudgetPlan,
        units: int,
        ledger: PrivacyLedger,
        noise: CountNoise,
        work: FitWork,
        engine: Engine | None,
    ) -> Profile:
        path = work.path("profile.json")
        queries = plan_queries(train.schema).queries
        sigma = budget.mechanism(Stage.PROFILE).noise_multiplier if queries else 1.0
        spent = any(e.stage == Stage.PROFILE and PROFILE_NOTE in e.note for e in ledger.entries)
        if path is not None and path.is_file() and (spent or not queries):
            return load_profile(path)
        if path is not None and spent:
            refuse_redraw(path, "DP profile")  # drawn again only if it never reached disk
        profile = dp_profile(
            train,
            ledger=ledger,
            noise_multiplier=sigma,
            noise=noise,
            units=units,
            config=self.config.profile,
            resume=spent,
            engine=engine,
        )
        if path is not None:
            save_profile(profile, path)
            mark_saved(path)
        return profile

    def _fit_generators(
        self, instances: list[Instance], train: Corpus, budget: BudgetPlan, context: FitContext, work: FitWork
    ) -> dict[str, Generator]:
        """Fit every instance in generation order; later ones see the earlier ones (``context.upstream``)."""
        fitted: dict[str, Generator] = {}
        for instance in instances:
            generator = self._generator(instance)
            here = FitContext(
                profile=context.profile,
                ledger=context.ledger,
                noise_multiplier=budget.mechanism(generator.stage).noise_multiplier,
                streams=context.streams,
                groups=context.groups,
                units=context.units,
                upstream=dict(fitted),
                checkpoint=work.path(f"{instance.folder}-checkpoint"),
                progress=context.progress,
                engine=context.engine,
            )
            fitted[instance.key] = generator.fit(train, columns=list(instance.columns), context=here)
        return fitted

    def _canaries(
        self,
        data: TrainingSet,
        profile: Profile,
        budget: BudgetPlan,
        streams: Streams,
        work: FitWork,
        count: int,
        progress: Progress | None,
    ) -> dict[str, Any]:
        """The one-run audit's shadow run: the tabular stage's mechanism on the records plus canaries."""
        from privsynth.generators.tabular.generator import TabularGenerator

        tabular = self.generators_.get("tabular")
        if not isinstance(tabular, TabularGenerator):
            raise ConfigError("--canaries needs tabular columns (the canary audit runs on the tabular stage)")
        saved = work.load("canaries.json")
        if saved is not None:
            return dict(saved)
        mechanism = tabular.mechanism(budget.mechanism(Stage.TABULAR).noise_multiplier, profile)
        drawn = work.load("canary-draw.json")  # a resumed shadow run must score the canaries it trained on
        if drawn is None:
            tokens, included = tabular.draw_canaries(count, streams)
            drawn = {"tokens": tokens.tolist(), "included": included.tolist()}
            work.save("canary-draw.json", drawn)
        result = tabular.shadow_canaries(
            data.train,
            mechanism=mechanism,
            streams=streams,
            tokens=np.asarray(drawn["tokens"], dtype=np.int64),
            included=np.asarray(drawn["included"], dtype=bool),
            units_dp=profile.units or 1,
            groups=data.groups,
            progress=None
            if progress is None
            else (lambda s, t, _v: progress("canary shadow run (never released)", s, t)),
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

    # ----- fitted state -----------------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "ledger_"):
            raise NotFittedError("this Synthesizer is not fitted; call fit() or Synthesizer.load()")

    @property
    def generator_names(self) -> list[str]:
        """The fitted generator instances: ``tabular``, ``text:<column>``, ``image:<column>``..."""
        self._check_fitted()
        return list(self.generators_)

    def _of(self, name: str) -> dict[str, Any]:
        return {i.columns[0]: self.generators_[i.key] for i in self.instances_ if i.name == name and not i.joint}

    @property
    def tabular_(self) -> Any:
        """The fitted tabular generator, or ``None``."""
        return self.generators_.get("tabular")

    @property
    def texts_(self) -> dict[str, Any]:
        """Fitted text generators by column."""
        return self._of("text")

    @property
    def images_(self) -> dict[str, Any]:
        """Fitted image generators by column."""
        return self._of("image")

    @property
    def public_data(self) -> list[dict[str, object]]:
        """Public data the generators were trained on *without noise* (declared public by the data team).

        Listed in every synthetic corpus' provenance and in a release's datasheet, since nothing about it is
        protected: a public corpus by fingerprint, a public checkpoint by folder name.
        """
        self._check_fitted()
        return [{"generator": key, **item} for key, g in self.generators_.items() for item in g.public_data()]

    @property
    def synthetic_schema(self) -> Schema:
        """The real schema minus columns no generator produces (never copied from real data)."""
        self._check_fitted()
        columns = {n: c for n, c in self.schema_.columns.items() if n not in self.skipped_}
        return self.schema_.model_copy(update={"columns": columns})

    # ----- sampling ---------------------------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        seed: int = 0,
        images: Literal["bytes", "pil"] = "bytes",
        progress: Progress | bool | None = None,
    ) -> pd.DataFrame:
        """``n`` synthetic records in the schema's canonical types, as a DataFrame.

        ``conditions`` fix columns (``{"diagnosis": "pneumonia"}``) or hold them in ranges
        (``privsynth.conditions.parse_conditions(["age>=65"])``). Images are PNG bytes, or PIL images with
        ``images="pil"`` (``None`` where a record has none). Post-processing: spends nothing; the same seed gives
        the same records. ``progress=True`` shows progress bars for the long parts (text and images drawn record by
        record), as :meth:`fit` does; a callable ``(stage, done, total)`` receives them instead.
        """
        if images not in ("bytes", "pil"):
            raise ValueError(f"images must be 'bytes' or 'pil', not {images!r}")
        report = _progress_bars() if progress is True else progress or None
        records, _ = self.sample_with_identities(n, conditions=conditions, seed=seed, progress=report)
        if images == "pil":
            from privsynth.data.images import ImageLimits, decode_image

            limits = ImageLimits()
            for name in self.synthetic_schema.names(ColumnKind.IMAGE):
                records[name] = [None if value is None else decode_image(value, limits) for value in records[name]]
        return records

    def sample_with_identities(
        self,
        n: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        seed: int = 0,
        first_key: int = 0,
        key_digits: int | None = None,
        progress: Progress | None = None,
        scrubbed: dict[str, int] | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``n`` synthetic records in the schema's canonical types, and their surrogate identities (internal).

        Post-processing of the DP model: ``seed`` names its streams (:meth:`Streams.sampling`), so the same seed
        gives the same records, and nothing is spent. Joint generators (the record's fields) run first, then keys
        and surrogate identities are drawn, then the generators conditioned on them (text, images...). Keys are
        numbered from ``first_key`` with ``key_digits`` digits (one shard of a larger sample:
        :mod:`privsynth.sampling`). ``progress`` receives ``(stage, done, total)`` from the generators that draw
        record by record (stages named "sampling ..."). ``scrubbed``, when given, receives per text column the number
        of identifier-like spans the sampling scrub replaced (:mod:`privsynth.pii.scrub`), added to what it holds.
        """
        self._check_fitted()
        if n < 1:
            raise ConfigError("--n must be at least 1")
        equal, ranges = split_conditions(conditions or {})
        fixed, streams = self._conditions(equal), Streams.sampling(seed)
        self._conditions({r.column: None for r in ranges}, ranges=True)
        records = self._sample_joint(n, fixed, ranges, streams, seed)
        return self._complete(
            records, streams, fixed, first_key=first_key, key_digits=key_digits, progress=progress, scrubbed=scrubbed
        )

    def check_conditions(self, conditions: Mapping[str, Any] | None) -> None:
        """Refuse ``--where`` conditions that no record can meet, as sampling would, without drawing anything.

        Unknown columns or values, and ranges outside a column's range, are refused with the same messages.
        """
        self._check_fitted()
        equal, ranges = split_conditions(conditions or {})
        self._conditions(equal)
        self._conditions({r.column: None for r in ranges}, ranges=True)
        self._check_ranges(ranges)

    def sample_cells(
        self,
        cells: Sequence[Cell],
        *,
        conditions: Mapping[str, Any] | None = None,
        seed: int = 0,
        progress: Progress | None = None,
        scrubbed: dict[str, int] | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Records drawn cell by cell (:mod:`privsynth.variation`: rebalancing, scenario grids), then shuffled.

        Each cell's fields are drawn under its own fixed values (and ``conditions``) from streams of its own, so
        the result depends only on the seed and the cells. Post-processing: nothing is spent. ``scrubbed`` as in
        :meth:`sample_with_identities`.
        """
        self._check_fitted()
        if not cells or sum(c.count for c in cells) < 1:
            raise ConfigError("nothing to sample: every cell asks for 0 records")
        equal, ranges = split_conditions(conditions or {})
        self._conditions({r.column: None for r in ranges}, ranges=True)
        parts = []
        for index, cell in enumerate(cells):
            clash = sorted(set(cell.conditions) & set(equal))
            if clash:
                raise ConfigError(f"--where fixes {clash}, which the rebalance or grid also sets; drop one of them")
            fixed = self._conditions({**equal, **cell.conditions})
            cell_seed = int(np.random.SeedSequence([int(seed), index + 1]).generate_state(1)[0])
            parts.append(self._sample_joint(cell.count, fixed, ranges, Streams.sampling(cell_seed), cell_seed))
        streams = Streams.sampling(seed)
        joint = pd.concat(parts, ignore_index=True)
        order = streams.numpy("sample", "cells", "shuffle").permutation(len(joint))
        return self._complete(
            joint.iloc[order].reset_index(drop=True),
            streams,
            self._conditions(equal),
            progress=progress,
            scrubbed=scrubbed,
        )

    def _complete(
        self,
        records: pd.DataFrame,
        streams: Streams,
        fixed: dict[str, Any],
        *,
        first_key: int = 0,
        key_digits: int | None = None,
        progress: Progress | None = None,
        scrubbed: dict[str, int] | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Keys, surrogate identities, then the generators conditioned on the record (text, images...)."""
        schema, n = self.synthetic_schema, len(records)
        digits = key_digits if key_digits is not None else max(7, len(str(n)))
        for name in schema.names(ColumnKind.KEY):
            prefix = "SP" if name == schema.entity else "S" if name == schema.key else f"S{name[:3].upper()}"
            records[name] = [f"{prefix}{i:0{digits}d}" for i in range(first_key, first_key + n)]
        identities = surrogate_identities(
            n, seed=streams.integer("sample", "surrogates", "identity"), records=records, schema=schema
        )
        records = fill_identifiers(records, schema, identities)
        others = surrogate_identities(n, seed=streams.integer("sample", "surrogates", "others"))  # a relative, a doctor
        context = SampleContext(
            n,
            records,
            identities,
            others,
            streams,
            fixed,
            progress,
            scrubbed=scrubbed if scrubbed is not None else {},  # the generators add to the caller's counts
            profile=self.profile_,
        )
        records = self._sample_instances([i for i in self.instances_ if not i.joint], context)
        identities = pd.concat([identities, others.add_prefix("other_")], axis=1)
        identities.insert(0, schema.key, records[schema.key].to_numpy())
        return records[list(schema.columns)].reset_index(drop=True), identities

    def _sample_joint(
        self, n: int, fixed: dict[str, Any], ranges: list[Range], streams: Streams, seed: int
    ) -> pd.DataFrame:
        """The joint generators' records; with ``ranges``, drawn in rounds and those outside set aside."""
        joint = [i for i in self.instances_ if i.joint]

        def draw(size: int, round_streams: Streams) -> pd.DataFrame:
            empty = pd.DataFrame(index=range(size))
            records = self._sample_instances(joint, SampleContext(size, empty, empty, empty, round_streams, fixed))
            if not ranges:
                return records
            inside = np.logical_and.reduce([r.mask(records[r.column]).to_numpy() for r in ranges])
            return records[inside]

        self._check_ranges(ranges)
        kept, drawn, round_ = [draw(n, streams)], n, 0
        have = len(kept[0])
        limit = MAX_DRAWS_PER_RECORD * n
        while have < n and drawn < limit:
            round_ += 1
            rate = max(have / drawn, 1.0 / drawn)
            size = int(min(max(n, 1.2 * (n - have) / rate), limit - drawn, max(n, RANGE_CHUNK)))
            kept.append(draw(size, Streams.sampling(seed, round_)))
            drawn, have = drawn + size, have + len(kept[-1])
        if have < n:
            shown = " and ".join(str(r) for r in ranges)
            raise ConfigError(
                f"--where {shown}: only {have} of {drawn} records drawn from the model fall in this range; widen it, "
                "ask for fewer records, or check it against the column's range in the model's profile.json"
            )
        return pd.concat(kept).head(n).reset_index(drop=True)

    def _check_ranges(self, ranges: list[Range]) -> None:
        """Refuse a range that lies wholly outside its column's range (declared, or learned under DP)."""
        for cond in ranges:
            column = self.profile_.columns.get(cond.column)
            low, high = getattr(column, "bounds", (None, None))
            if low is None or high is None:
                continue
            is_date = getattr(column, "kind", "") == "datetime"
            limit = cond.threshold("datetime64[ns]" if is_date else "float64")
            if is_date:
                limit = (limit - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
            empty = (cond.op in (">=", ">") and limit > high) or (cond.op in ("<=", "<") and limit < low)
            if empty:
                raise ConfigError(
                    f"--where {cond} lies outside the column's range (declared in schema.yaml, or learned under DP; "
                    "see the model's profile.json); no record can satisfy it"
                )

    def _sample_instances(self, instances: list[Instance], context: SampleContext) -> pd.DataFrame:
        records = context.records.copy()
        for instance in instances:
            if any(c in self.synthetic_schema.columns for c in instance.columns):
                here = dataclasses.replace(context, records=records)
                for column, values in self.generators_[instance.key].sample(here).items():
                    records[column] = values
        schema = self.synthetic_schema  # a copy made per access: once here
        for name in schema.names(ColumnKind.TEXT):
            limit = schema.columns[name].max_length
            if limit is not None and name in records:
                records[name] = [within_length(t, limit) for t in records[name]]
        return records

    def _conditions(self, conditions: Mapping[str, Any] | None, *, ranges: bool = False) -> dict[str, Any]:
        """``--where`` conditions, checked: they may fix the columns of joint generators (the record's fields).

        With ``ranges`` the columns are those of range conditions, which apply to numbers and dates only.
        """
        fixed = dict(conditions or {})
        if ranges:
            kinds = {ColumnKind.NUMERICAL, ColumnKind.DATETIME}
            wrong = [k for k in fixed if k in self.schema_.columns and self.schema_.columns[k].kind not in kinds]
            if wrong:
                raise ConfigError(
                    f"--where ranges (>=, >, <=, <) apply to numerical and date columns only; not: {', '.join(wrong)}"
                )
        conditional = {c for i in self.instances_ if i.joint for c in i.columns}
        unknown = [k for k in fixed if k not in self.schema_.columns]
        if unknown:
            columns = ", ".join(c for c in self.schema_.columns if c in conditional)
            raise ConfigError(f"--where names unknown column(s) {', '.join(unknown)}; tabular columns: {columns}")
        left_out = [k for k in fixed if k in self.skipped_]
        if left_out:
            raise ConfigError(
                f"--where names column(s) this model leaves out: {left_out[0]}: {self.skipped_[left_out[0]]}"
            )
        not_tabular = [k for k in fixed if k not in conditional]
        if not_tabular:
            raise ConfigError(
                f"--where can fix tabular columns only; not: {', '.join(not_tabular)} "
                f"(identifiers and keys are generated, text and images follow the record)"
            )
        return fixed

    # ----- persistence ------------------------------------------------------------------------------------------

    def save(self, folder: Path | str, *, force: bool = False) -> Path:
        """Write the model folder atomically: weights, metadata, ledger, profile; the split under internal/.

        Once the model is written, the fit's work folder (if it had one) is deleted: it holds real record keys and
        generator states from which the run's noise could be recomputed.
        """
        self._check_fitted()
        folder = Path(folder)
        with atomic_dir(folder, force=force, private=False) as tmp:  # DP outputs; internal/ stays owner-only
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
                "instances": {i.key: list(i.columns) for i in self.instances_},
                "skipped_columns": self.skipped_,
                "schema_inferred": self.schema_inferred_,
                "config": self.config.model_dump(mode="json"),
                "schema": schema_to_dict(self.schema_),
            }
            (tmp / MODEL_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            (tmp / MODEL_LEDGER).write_text(json.dumps(self.ledger_.state_dict(), indent=2), encoding="utf-8")
            (tmp / "schema.yaml").write_text(dump_schema(self.schema_), encoding="utf-8")
            save_profile(self.profile_, tmp / MODEL_PROFILE)
            for instance in self.instances_:
                self.generators_[instance.key].save(tmp / instance.folder)
            (tmp / INTERNAL).mkdir(mode=0o700)
            split = {"train": list(self.split_.train), "holdout": list(self.split_.holdout)}
            _write_private(tmp / SPLIT, {"WARNING": "INTERNAL: real record keys. Never release.", **split})
            if self.canaries_ is not None:
                _write_private(tmp / CANARIES, self.canaries_)
            # internal/ (real record keys) gets its own manifest inside it, owner-only like the keys themselves, so
            # the model's manifest never carries a digest of them
            write_folder_manifest(tmp / INTERNAL, MODEL_MANIFEST)
            write_folder_manifest(tmp, MODEL_MANIFEST, skip_folders={INTERNAL})
        work = getattr(self, "work_", None)
        if work is not None:
            work.discard()
        return folder

    @classmethod
    def load(cls, folder: Path | str, *, internal: bool = True) -> Synthesizer:
        """Read a model folder written by :meth:`save` (safetensors + JSON, no pickle), after checking its manifest.

        Raises :class:`ConfigError` for a folder that is not a model and :class:`IntegrityError` for one that was
        changed (any file outside ``internal/`` against ``manifest.json``, links, extra files) or cannot be read.
        ``internal=False`` never opens ``internal/`` (the real keys of the holdout split): enough to sample, which
        is what workers of a cluster do (:mod:`privsynth.sampling`).
        """
        folder = Path(folder)
        if not folder.is_dir() or not (folder / MODEL_META).is_file():
            raise ConfigError(f"{folder} is not a privsynth model folder (no model.json); run 'privsynth fit' first")
        problems = check_folder_manifest(folder, MODEL_MANIFEST, skip_folders={INTERNAL})
        if internal and (folder / INTERNAL).is_dir():
            inner = check_folder_manifest(folder / INTERNAL, MODEL_MANIFEST)
            problems += [f"{INTERNAL}/: {p}" for p in inner]
        if problems:
            shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            raise IntegrityError(f"{folder} does not match its manifest ({shown}); restore it or fit again")
        try:
            return cls._read_folder(folder, internal=internal)
        except PrivsynthError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OSError, SafetensorError) as exc:
            raise IntegrityError(
                f"{folder}: the model folder cannot be read ({type(exc).__name__}) although it matches its manifest; "
                "it was written by another privsynth version or damaged before hashing: fit again"
            ) from None

    @classmethod
    def _read_folder(cls, folder: Path, *, internal: bool = True) -> Synthesizer:
        meta = read_json(folder / MODEL_META)
        if not isinstance(meta, dict):
            raise IntegrityError(f"{folder}: {MODEL_META} is not a JSON object")
        if meta.get("format") != MODEL_FORMAT or meta.get("version") != MODEL_VERSION:
            raise IntegrityError(f"{folder}: unsupported model format {meta.get('format')} v{meta.get('version')}")
        synth = cls(FitConfig.model_validate(meta["config"]))
        synth.schema_ = schema_from_dict(meta["schema"], source=str(folder / MODEL_META))
        synth.ledger_ = PrivacyLedger.from_state_dict(json.loads((folder / MODEL_LEDGER).read_text("utf-8")))
        synth.profile_ = load_profile(folder / MODEL_PROFILE)
        known = {i.key: i for i in registry.instances(synth.schema_)}  # models written before "instances" was saved
        columns = meta.get("instances") or {key: list(known[key].columns) for key in meta["generators"]}
        synth.instances_ = [Instance.from_key(key, tuple(columns[key])) for key in meta["generators"]]
        synth.generators_ = {i.key: registry.get(i.name).load(folder / i.folder) for i in synth.instances_}
        synth.canaries_ = None
        synth.budget_ = None  # the plan is in the ledger's mechanisms; shares are not kept
        synth.run_id_ = str(meta["run_id"])
        synth.source_ = str(meta["source"])
        synth.skipped_ = dict(meta.get("skipped_columns", {}))
        synth.schema_inferred_ = bool(meta.get("schema_inferred", False))
        split = (read_json(folder / SPLIT) if internal else None) or {"train": [], "holdout": []}
        synth.split_ = HoldoutSplit(train=tuple(split["train"]), holdout=tuple(split["holdout"]))
        return synth


def _without(instances: list[Instance], skipped: Mapping[str, str]) -> list[Instance]:
    """The instances without the ``skipped`` columns (an instance left with none is dropped: it spends nothing)."""
    kept = [Instance(i.name, tuple(c for c in i.columns if c not in skipped), i.joint) for i in instances]
    return [i for i in kept if i.columns]


def within_length(text: Any, limit: int) -> Any:
    """``text`` cut to the schema's public ``max_length``, at a space where one is near the end.

    A sampled text can outrun the limit that its model's token budget keeps most texts under: filled placeholders
    are longer than their tokens (a name for ``<PERSON>``), and a model can loop on them. The synthetic corpus must
    validate against its own schema, so sampling cuts it here (post-processing of the sample; no real data).

    A text that starts with blanks (a placeholder at its start filled with an empty value) is cut after them, so
    its words survive the cut.

    >>> within_length("seen today for a cough", 16), within_length("abcdefghij", 4), within_length(None, 4)
    ('seen today for a', 'abcd', None)
    >>> within_length("            seen today for", 12)
    'seen today'
    """
    if not isinstance(text, str) or len(text) <= limit:
        return text
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rfind(" ")
    return (text[:cut] if cut >= 0.8 * limit else text[:limit]).rstrip()


def _write_private(path: Path, payload: object) -> None:
    """JSON readable by its owner only (real record keys, canary scores)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)


def _progress_bars() -> Progress:
    """A progress callback drawing one ``tqdm.auto`` bar per stage (widgets in a notebook, text elsewhere)."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    bars: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, leave=True)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return report


__all__ = ["MAX_EPSILON", "Synthesizer", "config_sha256"]
