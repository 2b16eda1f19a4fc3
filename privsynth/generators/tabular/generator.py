"""The DP tabular generator: codecs from the DP profile, an any-order ARGN trained with DP-SGD.

``fit`` needs the DP profile (never an internal one), the ledger and the noise multiplier the planner chose; it
spends (sigma, q, steps) in the ledger before any noise is drawn, then trains. ``sample`` generates records in
the canonical column order, or with some columns fixed first (conditional sampling).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field

from privsynth.data.corpus import Corpus
from privsynth.data.schema import ColumnKind
from privsynth.engine.base import Engine
from privsynth.errors import ConfigError
from privsynth.generators.base import FitContext, Generator, SampleContext
from privsynth.generators.dpsgd import (
    DPSGDSettings,
    DPSGDTrainer,
    Groups,
    OptimConfig,
    initialised,
    spend_once,
    unit_groups,
)
from privsynth.generators.record_loss import RecordLoss
from privsynth.generators.sizing import SMALL_COHORT, apply_size_rule
from privsynth.generators.tabular.codecs import (
    RELIABLE_SNR,
    ColumnCodec,
    NumericalCodec,
    Prior,
    codec_for,
    codec_from_dict,
)
from privsynth.generators.tabular.network import ARGN, IncrementalSampler, random_visibility
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.ledger import Stage
from privsynth.privacy.planner import StageShape
from privsynth.privacy.randomness import Streams
from privsynth.profile.model import Profile

log = logging.getLogger(__name__)

TABULAR_KINDS = (ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL, ColumnKind.DATETIME, ColumnKind.BOOLEAN)
WEIGHTS, META = "tabular.safetensors", "tabular.json"


class TabularConfig(DPSGDSettings):
    """Network and optimisation settings (public)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embed_dim: int = Field(default=16, ge=2, le=256)
    hidden: int = Field(default=192, ge=8, le=4096)
    layers: int = Field(default=2, ge=1, le=8)
    random_order_share: float = Field(default=0.5, ge=0, le=1, description="Share of random column orders.")
    sample_chunk: int = Field(default=65_536, ge=1)
    calibration_rounds: int = Field(default=6, ge=0, le=50, description="Rounds matching DP marginals.")
    numeric_sub_bins: int = Field(default=0, ge=0, le=64, description="Learned parts per numeric bin (0: none).")
    ordinal: bool = Field(
        default=True,
        description="Numbers and dates also enter as their place on the column's scale, and each is predicted "
        "with a learned shift along it (monotone relations survive DP-SGD's noise).",
    )
    calibration_samples: int = Field(default=20_000, ge=100)
    ema: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Decay of the weights' moving average kept for sampling (post-processing of the noisy "
        "iterates; null: the last weights).",
    )
    calibration_snr: float = Field(
        default=RELIABLE_SNR,
        ge=0,
        description="Noise deviations a token's DP count needs before calibration pulls it to the profile.",
    )
    optim: OptimConfig = OptimConfig(batch_size=2048, epochs=40, lr=2e-3)
    size_rule: bool = Field(
        default=True,
        description=f"Below {SMALL_COHORT:,} people (the DP count), settings left at their defaults take the "
        "small-cohort values (larger Poisson rate, learning rate and epochs; a narrower network, fewer random "
        "column orders).",
    )

    def for_units(self, units: int) -> TabularConfig:
        """These settings with the size rule (:mod:`privsynth.generators.sizing`) applied for ``units`` people.

        Measured with ``benchmarks/default_config.py`` (2,000 demo records, epsilon 8) and
        ``benchmarks/tabular_adult.py --n 500/2000``: at the default 10 % Poisson rate a batch holds ~160 people,
        so every step's averaged gradient is mostly noise and the fitted model keeps the marginals (from the
        profile) but loses the fields' relations. Every person in every step (full-batch DP gradient descent: no
        amplification by sampling, but the least noise per averaged gradient), a five-times larger learning rate
        and twice the epochs learn them; a network half as wide, trained on random column orders a fifth of the
        time instead of half, keeps more of them (numbers in the data teams' guide).

        >>> small = TabularConfig().for_units(1_600)
        >>> small.optim.max_sample_rate, small.optim.lr, small.optim.epochs, small.hidden, small.random_order_share
        (1.0, 0.01, 80.0, 96, 0.2)
        >>> TabularConfig().for_units(22_611).optim.epochs, TabularConfig(size_rule=False).for_units(1_600).optim.lr
        (40.0, 0.002)
        """
        return apply_size_rule(self, units, settings=SMALL_COHORT_SETTINGS, optim=SMALL_COHORT_OPTIM)


#: The tabular generator's small-cohort optimisation (:mod:`privsynth.generators.sizing`).
SMALL_COHORT_OPTIM: dict[str, object] = {"max_sample_rate": 1.0, "lr": 0.01, "epochs": 80.0}
#: Its small-cohort network: half the hidden width (the noise added per step grows with the square root of the
#: parameter count while the signal does not) and fewer random column orders (more of the little signal goes to
#: the canonical order that unconditional samples use; ``--where`` keeps working: measured with
#: ``benchmarks/conditional_adult.py``).
SMALL_COHORT_SETTINGS: dict[str, object] = {"hidden": 96, "random_order_share": 0.2}


class TabularGenerator(Generator):
    """DP-SGD any-order autoregressive generator for numerical, categorical, datetime and boolean columns."""

    name = "tabular"
    kinds = TABULAR_KINDS
    stage = Stage.TABULAR
    joint = True
    settings = TabularConfig
    default_share = 9.0
    config: TabularConfig

    # ----- fitting ----------------------------------------------------------------------------------------------

    def fit(self, corpus: Corpus, *, columns: list[str] | None = None, context: FitContext) -> TabularGenerator:
        """Learn ``columns`` (default: every tabular column) of a contribution-bounded corpus under DP-SGD.

        Spends (sigma, q, steps) in the ledger before any noise; with ``context.checkpoint``, an interrupted run
        whose spend the ledger holds resumes from its checkpoint instead. Every draw (initialisation, column
        orders, Poisson masks, noise) comes from ``context.streams``.
        """
        context.profile.require_dp()
        self.config = self.config.for_units(context.units)  # saved with the model: what was trained
        self._prepare(corpus, context.profile, columns)
        mechanism = self.mechanism(context.noise_multiplier, context.profile)
        note = f"DP-SGD on {len(self.codecs_)} tabular columns"
        streams, checkpoint = context.streams, context.checkpoint
        resuming = spend_once(
            context.ledger,
            Stage.TABULAR,
            mechanism,
            note=note,
            checkpoint=checkpoint,
            streams=streams,
            secure_mode=self.config.optim.secure_mode,
        )
        tokens, _, _ = _encode(corpus.records, self.codecs_)
        self.network_ = self._train(
            tokens,
            context.groups,
            context.units,
            mechanism,
            streams,
            ("tabular", "*"),
            context.report("tabular"),
            checkpoint,
            resuming,
            context.engine,
        )
        self._calibrate(self._priors(), generator=streams.torch("tabular", "*", "calibration"))
        return self

    def plan(self, units: int) -> StageShape:
        """DP-SGD shape on ``units`` people, with the size rule applied (:meth:`TabularConfig.for_units`)."""
        shape: StageShape = self.config.for_units(units).optim.stage_shape(self.stage, units)
        return shape

    def mechanism(self, noise_multiplier: float, profile: Profile) -> Mechanism:
        """This stage's planned (sigma, q, steps): the sample rate comes from the profile's DP unit count."""
        shape = self.plan(_units(profile))
        return Mechanism(noise_multiplier=noise_multiplier, sample_rate=shape.sample_rate, steps=shape.steps)

    def _prepare(self, corpus: Corpus, profile: Profile, only: list[str] | None = None) -> None:
        """Codecs from the DP profile (or declared-public metadata) for the columns, in the schema's order."""
        schema = corpus.schema
        columns = [n for n, c in schema.columns.items() if (c.kind in TABULAR_KINDS if only is None else n in only)]
        if not columns:
            raise ConfigError("the schema has no numerical, categorical, datetime or boolean column to learn")
        noise = (profile.noise_multiplier or 0.0) * profile.max_records_per_entity
        self.codecs_ = [
            codec_for(
                n,
                schema.columns[n],
                profile.columns[n],
                records=profile.records,
                count_noise=noise,
                sub_bins=self.config.numeric_sub_bins,
            )
            for n in columns
        ]
        _, sizes, self.subcolumns_ = _encode(corpus.records.iloc[:0], self.codecs_)
        self.sizes_ = sizes

    def _priors(self) -> list[Prior | None]:
        return [p for codec in self.codecs_ for p in codec.prior()]

    def _positions(self) -> list[np.ndarray | None]:
        return [p for codec in self.codecs_ for p in codec.positions()]

    def _train(
        self,
        tokens: np.ndarray,
        units: Groups,
        count: int,
        mechanism: Mechanism,
        streams: Streams,
        stream: tuple[str, str],
        progress: Callable[[int, int, float], None] | None,
        checkpoint: Path | None,
        resuming: bool,
        engine: Engine | None = None,
    ) -> ARGN:
        """DP-SGD of a fresh network on token rows grouped by ``units``; every draw comes from ``streams``."""
        sizes = self.sizes_
        with initialised(streams, *stream, "init"):
            network = ARGN(
                sizes,
                embed_dim=self.config.embed_dim,
                hidden=self.config.hidden,
                layers=self.config.layers,
                positions=self._positions() if self.config.ordinal else None,
            )
        network.start_from_prior([None if p is None else p.p for p in self._priors()])
        global_tokens = torch.as_tensor(tokens) + torch.tensor(network.offsets)
        targets = torch.arange(len(sizes))
        share, subcolumns = self.config.random_order_share, self.subcolumns_

        def loss(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
            n = len(batch)
            visible = random_visibility(n, len(sizes), random_share=share, generator=orders, groups=subcolumns)
            logp = module(batch, visible, targets.expand(n, -1).contiguous())
            return -logp.gather(2, batch.unsqueeze(-1)).squeeze(-1).sum(dim=1)

        trainer = DPSGDTrainer(
            network,
            loss=RecordLoss(loss, (global_tokens,)),  # the records are named: a cluster worker holds its shard
            groups=units,
            mechanism=mechanism,
            config=self.config.optim,
            streams=streams,
            stream=stream,
            units=count,
            ema=self.config.ema,
        )
        orders = trainer.generator("orders")  # checkpointed: a resumed run draws the orders it would have
        if resuming and checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        trainer.run(
            on_step=None if progress is None else lambda step, value: progress(step, mechanism.steps, value),
            checkpoint=checkpoint,
            engine=engine,
        )
        if self.config.ema is not None:
            network.load_state_dict(trainer.averaged_state())
        network.eval()
        return network

    def draw_canaries(self, count: int, streams: Streams) -> tuple[np.ndarray, np.ndarray]:
        """``count`` random canary rows (uniform over every vocabulary) and which are included (probability 1/2).

        Drawn from the fit's private streams: which canaries are in is the secret the one-run audit guesses.
        """
        self._check_fitted("codecs_")
        rng = streams.numpy("tabular-shadow", "*", "canaries")
        tokens = np.stack([rng.integers(0, size, size=count) for size in self.sizes_], axis=1).astype(np.int64)
        return tokens, rng.random(count) < 0.5

    def shadow_canaries(
        self,
        corpus: Corpus,
        *,
        mechanism: Mechanism,
        streams: Streams,
        tokens: np.ndarray,
        included: np.ndarray,
        units_dp: int,
        groups: Groups | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        checkpoint: Path | None = None,
    ) -> dict[str, Any]:
        """The one-run privacy audit's evidence: canaries trained into a *shadow* model that is never released.

        The canary rows ``tokens`` (:meth:`draw_canaries`) marked ``included`` are added as units of privacy of
        their own, each made of ``m`` copies of the row (the schema's bound), so that one moves the clipped
        gradient sum by the full bound ``C``, as much as any person can. A network is trained with this stage's
        planned mechanism on the real records plus the included canaries, and every canary is scored by its
        log-likelihood. The shadow model's spend is not in the ledger because nothing of it is released except
        these scores, an audit statistic outside the guarantee; the released model never sees a canary.
        """
        self._check_fitted("codecs_")
        real, _, _ = _encode(corpus.records, self.codecs_)
        units = groups if groups is not None else unit_groups(corpus)
        copies = units.max_size
        extra = np.repeat(tokens[included], copies, axis=0)
        shadow_units = units.with_units(int(included.sum()), copies)
        all_tokens = np.concatenate([real, extra]) if len(extra) else real
        resuming = checkpoint is not None and (checkpoint / "state.json").is_file()
        network = self._train(
            all_tokens,
            shadow_units,
            units_dp + int(included.sum()),
            mechanism,
            streams,
            ("tabular-shadow", "*"),
            progress,
            checkpoint,
            resuming,
        )
        return {
            "scores": log_likelihood(network, tokens).tolist(),
            "included": included.tolist(),
            "copies_per_canary": copies,
            "tokens": tokens.tolist(),  # fake records: for checking that no released model holds them
        }

    @torch.no_grad()
    def _calibrate(self, priors: list[Prior | None], *, generator: torch.Generator) -> None:
        """Match sampled marginals to the DP profile's marginals with per-token logit offsets.

        Post-processing of two DP outputs (the model and the profile): no privacy cost. Only tokens whose DP
        count stands ``calibration_snr`` noise deviations clear of zero are pulled towards the profile; the others
        keep the mass DP-SGD gave them. Sub-columns are calibrated over a few damped rounds; offsets are clipped
        so no token is forced.
        """
        rounds, size = self.config.calibration_rounds, self.config.calibration_samples
        if rounds == 0:
            return
        net = self.network_
        order = list(range(net.columns))
        for _ in range(rounds):
            tokens = self._sample_tokens(size, order, {}, generator)
            for sub, prior in enumerate(priors):
                if prior is None:
                    continue
                reliable = prior.reliable(self.config.calibration_snr)
                if not reliable.any():
                    continue
                start, width = net.offsets[sub], net.vocab_sizes[sub]
                seen = np.bincount(tokens[:, sub], minlength=width) / size
                target = calibration_target(prior.p, reliable, seen)
                step = np.clip(np.log((target + 1e-4) / (seen + 1e-4)), -1.0, 1.0)
                current = net.calibration[start : start + width]
                net.calibration[start : start + width] = torch.clamp(
                    current + 0.7 * torch.as_tensor(step, dtype=current.dtype), -3.0, 3.0
                )

    # ----- sampling ---------------------------------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """Names of the columns this generator produces, in canonical order."""
        self._check_fitted("codecs_")
        return [c.name for c in self.codecs_]

    def sample(self, context: SampleContext) -> dict[str, Any]:
        """Its columns for ``context.n`` synthetic records, with ``context.conditions`` fixed (post-processing)."""
        return dict(self.sample_frame(context.n, conditions=context.conditions, streams=context.streams).items())

    def sample_frame(self, n: int, *, conditions: Mapping[str, Any] | None = None, streams: Streams) -> pd.DataFrame:
        """``n`` synthetic records (tabular columns only), optionally with some columns fixed.

        ``streams`` are sampling streams (:meth:`Streams.sampling`): post-processing, reproducible per seed.
        """
        self._check_fitted("network_")
        fixed = dict(conditions or {})
        by_name = {c.name: i for i, c in enumerate(self.codecs_)}
        unknown = [k for k in fixed if k not in by_name]
        if unknown:
            raise ConfigError(
                f"--where names unknown column(s) {', '.join(unknown)}; tabular columns: {', '.join(by_name)}"
            )
        fixed_tokens: dict[int, int] = {}
        for name, value in fixed.items():
            column = by_name[name]
            for sub, token in zip(self.subcolumns_[column], self.codecs_[column].condition(value), strict=True):
                fixed_tokens[sub] = token
        order = [s for s in range(self.network_.columns) if s in fixed_tokens]
        order += [s for s in range(self.network_.columns) if s not in fixed_tokens]
        generator = streams.torch("sample", "tabular", "tokens")
        chunks = [
            self._sample_tokens(min(self.config.sample_chunk, n - start), order, fixed_tokens, generator)
            for start in range(0, n, self.config.sample_chunk)
        ]
        tokens = np.concatenate(chunks) if chunks else np.zeros((0, self.network_.columns), dtype=np.int64)
        rng = streams.numpy("sample", "tabular", "within-bin")
        frame = pd.DataFrame(
            {
                codec.name: codec.decode(tokens[:, subs], rng)
                for codec, subs in zip(self.codecs_, self.subcolumns_, strict=True)
            }
        )
        for name, value in fixed.items():
            codec = self.codecs_[by_name[name]]
            if isinstance(codec, NumericalCodec) and value is not None:
                frame[name] = codec.constant(value, n)  # the exact value asked for, not a draw from its bin
        return frame

    @torch.no_grad()
    def _sample_tokens(self, n: int, order: list[int], fixed: dict[int, int], generator: torch.Generator) -> np.ndarray:
        return IncrementalSampler(self.network_).sample(n, order, fixed, generator).numpy()

    # ----- persistence ------------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Weights as safetensors; config, codecs and layout as JSON."""
        self._check_fitted("network_")
        tensors = {**self.network_.state_dict(), "calibration": self.network_.calibration}
        fields = {
            "vocab_sizes": self.network_.vocab_sizes,
            "codecs": [c.to_dict() for c in self.codecs_],
            "subcolumns": self.subcolumns_,
        }
        self._write(folder, weights=WEIGHTS, tensors=tensors, meta=META, fields=fields)

    @classmethod
    def load(cls, folder: Path) -> TabularGenerator:
        """Rebuild a fitted generator from :meth:`save` output."""
        generator, meta, tensors = cls._read(folder, weights=WEIGHTS, meta=META)
        config = generator.config
        codecs = [codec_from_dict(c) for c in meta["codecs"]]
        ordinal = "shift.weight" in tensors  # models saved before the ordinal terms have none
        network = ARGN(
            meta["vocab_sizes"],
            embed_dim=config.embed_dim,
            hidden=config.hidden,
            layers=config.layers,
            positions=[p for codec in codecs for p in codec.positions()] if ordinal else None,
        )
        network.calibration = tensors.pop("calibration")
        network.load_state_dict(tensors)
        network.eval()
        generator.network_ = network
        generator.codecs_ = codecs
        generator.subcolumns_ = [list(s) for s in meta["subcolumns"]]
        return generator


def calibration_target(p: np.ndarray, reliable: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Reliable tokens get their DP probability ``p``; the rest share what is left in proportion to ``seen``.

    >>> p = np.array([0.5, 0.3, 0.2])
    >>> [round(float(x), 4) for x in calibration_target(p, np.array([True, False, False]), np.array([0.2, 0.6, 0.2]))]
    [0.5, 0.375, 0.125]
    """
    fixed = float(p[reliable].sum())
    rest = seen * ~reliable
    target = np.where(reliable, p, 0.0)
    if rest.sum() > 0:
        target = target + rest / rest.sum() * max(1.0 - fixed, 0.0)
    return target / target.sum()


def _units(profile: Profile) -> int:
    """The DP unit count a profile carries (older profiles: their record count)."""
    return profile.units if profile.units is not None else max(profile.records, 1)


@torch.no_grad()
def log_likelihood(network: ARGN, tokens: np.ndarray) -> np.ndarray:
    """Log-likelihood of token rows under the canonical column order (canary scores)."""
    n, c = tokens.shape
    visible = torch.tril(torch.ones(c, c), diagonal=-1).expand(n, c, c)
    ids = torch.as_tensor(tokens) + torch.tensor(network.offsets)
    logp = network(ids, visible, torch.arange(c).expand(n, -1))
    return logp.gather(2, ids.unsqueeze(-1)).squeeze(-1).sum(dim=1).numpy()


def _encode(records: pd.DataFrame, codecs: list[ColumnCodec]) -> tuple[np.ndarray, list[int], list[list[int]]]:
    parts: list[np.ndarray] = []
    sizes: list[int] = []
    groups: list[list[int]] = []
    for codec in codecs:
        tokens = codec.encode(records[codec.name])
        start = len(sizes)
        sizes += codec.vocab_sizes()
        groups.append(list(range(start, len(sizes))))
        parts.append(tokens)
    return np.concatenate(parts, axis=1), sizes, groups
