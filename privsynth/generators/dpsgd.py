"""DP-SGD with Opacus: Poisson sampling over units of privacy, per-sample clipping, Gaussian noise.

Shared by every generator. What the accountant assumes is exactly what runs:

- **Poisson sampling** of units of privacy (records, or people with all their records) at rate ``q``;
  an empty batch still takes a step (noise only), as the analysis requires.
- **Per-sample clipping** with Opacus' ghost clipping (fast for Linear and Embedding layers) or per-sample
  gradient hooks. A person with ``k`` records (``k`` at most the schema's ``m``) has each record clipped to
  ``C / k``, so their summed gradient is at most ``C``; a person's clip depends on their own records only, so
  adding or removing someone changes nobody else's (:meth:`Groups.unit_sizes`).
- **Noise** of standard deviation ``sigma * C`` added to the summed clipped gradient, ``sigma`` being the noise
  multiplier recorded in the ledger; by default in Opacus' ``secure_mode`` (:func:`gaussian_noise`), which the
  ledger entry's note records.

The ledger entry (sigma, q, steps) must be spent *before* :func:`train` runs; this module never spends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file
from torch import nn

from privsynth.data.atomic import atomic_dir, recover_replaced
from privsynth.data.corpus import Corpus
from privsynth.engine.base import Engine
from privsynth.generators.record_loss import RecordLoss
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.ledger import PrivacyLedger
from privsynth.privacy.planner import StageShape
from privsynth.privacy.randomness import Streams
from privsynth.workdir import mark_saved, refuse_redraw

log = logging.getLogger(__name__)


class ClippingMode(StrEnum):
    """How per-sample gradient norms are obtained."""

    GHOST = "ghost"  # Opacus ghost clipping: norms without materialising per-sample gradients
    HOOKS = "hooks"  # Opacus fast gradient clipping with per-sample gradients (any supported layer)


class OptimConfig(BaseModel):
    """Optimisation settings of a DP-SGD run (public: chosen without looking at the data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(default=512, gt=0, description="Expected batch size (units of privacy per step).")
    max_sample_rate: float = Field(
        default=0.1, gt=0, le=1, description="Cap on batch/units, so small corpora keep privacy amplification."
    )
    epochs: float = Field(default=20.0, gt=0, description="Passes over the data (sets the number of steps).")
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0, description="Clipping bound C per unit of privacy.")
    clipping: ClippingMode = ClippingMode.GHOST
    secure_mode: bool = Field(
        default=True,
        description="Opacus' secure_mode noise sampler: each coordinate is half the sum of four Gaussian draws, "
        "which defeats attacks on a floating-point Gaussian sample (Jin et al. 2022); recorded in the ledger's "
        "notes. The generator stays torch's, seeded from OS entropy (not Opacus' optional CSPRNG).",
    )

    def sample_rate(self, units: int) -> float:
        """Poisson rate giving ``batch_size`` expected units out of ``units`` (at most ``max_sample_rate``)."""
        return min(self.max_sample_rate, self.batch_size / max(units, 1))

    def steps(self, units: int) -> int:
        """Steps for ``epochs`` passes at the Poisson rate."""
        return max(1, math.ceil(self.epochs / self.sample_rate(units)))

    def stage_shape(self, stage: str, units: int, *, runs: int = 1) -> StageShape:
        """What the planner needs: rate and steps of ``runs`` identical runs (k runs compose like k x steps)."""
        return StageShape(stage=stage, sample_rate=self.sample_rate(units), steps=runs * self.steps(units))


class DPSGDSettings(BaseModel):
    """Base of a generator's settings with an ``optim`` section: a section given in part keeps the rest.

    Without this, ``tabular: {optim: {lr: 0.005}}`` built a bare :class:`OptimConfig` and silently replaced the
    generator's own batch size, epochs and clipping with :class:`OptimConfig`'s (batch 512, 20 epochs for the
    tabular model's 2,048 and 40). The fields a config names win; the others come from the generator's default.
    """

    @model_validator(mode="before")
    @classmethod
    def _optim_in_part(cls, data: Any) -> Any:
        field = cls.model_fields.get("optim")
        if field is None or not isinstance(data, dict) or not isinstance(data.get("optim"), dict):
            return data
        default = field.default
        if not isinstance(default, OptimConfig):
            return data
        return {**data, "optim": {**default.model_dump(), **data["optim"]}}


@dataclass(frozen=True)
class Groups:
    """Records grouped by unit of privacy: ``order`` lists record indices group by group."""

    order: np.ndarray
    starts: np.ndarray
    max_size: int

    @classmethod
    def from_labels(cls, labels: np.ndarray | None, n: int, *, max_size: int | None = None) -> Groups:
        """Groups from a per-record label (entity id), or one group per record when ``labels`` is None.

        ``max_size`` is the *public* bound on records per unit (the schema's ``max_records_per_entity``): it
        scales the noise Opacus is handed (``sigma * max_size`` times the smallest record clip ``C / max_size``),
        so it must not come from the data, or removing the one person with the most records would change everyone
        else's noise. Without it, the largest group is used (for tests and benchmarks on data whose group sizes
        are public). Each record's own clip comes from its own unit's size (:attr:`unit_sizes`).
        """
        if labels is None:
            return cls(order=np.arange(n), starts=np.arange(n + 1), max_size=max_size if max_size is not None else 1)
        _, inverse = np.unique(labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse)
        starts = np.concatenate([[0], np.cumsum(counts)])
        largest = int(counts.max()) if counts.size else 1
        if max_size is not None and largest > max_size:
            raise ValueError(f"a unit has {largest} records, above the bound of {max_size}: bound contributions first")
        return cls(order=order, starts=starts, max_size=max_size if max_size is not None else largest)

    def with_units(self, extra: int, size: int) -> Groups:
        """These groups plus ``extra`` groups of ``size`` records each, appended after the current records.

        >>> g = Groups.from_labels(np.array(["a", "a", "b"]), 3).with_units(2, 2)
        >>> g.count, g.records(np.array([2, 3])).tolist()
        (4, [3, 4, 5, 6])
        """
        if size > self.max_size:
            raise ValueError(f"added units of {size} records exceed the largest unit ({self.max_size})")
        n = len(self.order)
        order = np.concatenate([self.order, np.arange(n, n + extra * size)])
        starts = np.concatenate([self.starts, self.starts[-1] + size * np.arange(1, extra + 1)])
        return Groups(order=order, starts=starts, max_size=self.max_size)

    @functools.cached_property
    def unit_sizes(self) -> np.ndarray:
        """For each record (by index), the number of records of its own unit of privacy.

        A record's clip is ``C / unit_sizes[record]`` (:meth:`DPSGDTrainer.record_clips`): a unit of ``k`` records
        moves the clipped sum by at most ``k * C / k = C``. It reads only the record's own unit, so removing one
        person changes no other record's clip (neighbours stay neighbours), while a person with one record is
        clipped at ``C``, not at ``C / m``: twice the signal against the same noise where ``m`` is 2.

        >>> Groups.from_labels(np.array(["a", "b", "a"]), 3).unit_sizes.tolist()
        [2, 1, 2]
        """
        lengths = np.diff(self.starts)
        sizes = np.zeros(len(self.order), dtype=np.int64)
        sizes[self.order] = np.repeat(lengths, lengths)
        if not (sizes >= 1).all():  # order must list every record once; a zero would give an infinite clip
            raise ValueError("the units of privacy do not cover every record exactly once")
        return sizes

    @property
    def count(self) -> int:
        """Number of units of privacy."""
        return len(self.starts) - 1

    def records(self, chosen: np.ndarray) -> np.ndarray:
        """Record indices of the chosen groups."""
        if chosen.size == 0:
            return np.zeros(0, dtype=np.int64)
        if self.max_size == 1:
            return self.order[self.starts[chosen]]
        lengths = self.starts[chosen + 1] - self.starts[chosen]
        first = np.repeat(self.starts[chosen], lengths)
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return self.order[first + within]


PerSampleLoss = Callable[[nn.Module, np.ndarray], torch.Tensor]


class ZeroGrads:
    """What Opacus' two-pass backward needs of an optimizer on a worker: clearing the gradients between passes."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (always to ``None``)."""
        for p in self.params:
            p.grad = None


@dataclass(frozen=True)
class GhostClipping:
    """The sum of a batch's per-record gradients, each clipped to its own clip (Opacus fast/ghost clipping).

    The same object runs in the driver's process and on DP-SGD workers (:mod:`privsynth.generators.dpsgd_workers`):
    a step's clipped sum is the sum of its parts' clipped sums, whoever computes them.
    """

    loss: PerSampleLoss

    def worker_optimizer(self, module: nn.Module) -> Any:
        """What a worker passes as ``optimizer``: the trainable parameters and clearing their gradients."""
        return ZeroGrads([p for p in module.parameters() if p.requires_grad])

    def for_records(self, rows: np.ndarray) -> GhostClipping | None:
        """This clipping over records ``rows`` only, or ``None`` when the loss does not name its records."""
        return dataclasses.replace(self, loss=self.loss.subset(rows)) if isinstance(self.loss, RecordLoss) else None

    def __call__(
        self,
        module: nn.Module,
        indices: np.ndarray,
        optimizer: Any,
        generators: dict[str, torch.Generator],
        clips: np.ndarray,
    ) -> tuple[list[torch.Tensor], float]:
        """Summed clipped gradients of the trainable parameters (in ``optimizer.params`` order) and the loss sum.

        ``clips[i]`` is record ``indices[i]``'s clip (:meth:`DPSGDTrainer.record_clips`).
        """
        from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

        optimizer.zero_grad(set_to_none=True)
        per_sample = self.loss(module, indices)
        if per_sample.dim() != 1 or len(per_sample) != len(indices):  # no count in the message: a batch size
            raise ValueError("a DP-SGD loss must return one loss per record, a vector as long as the batch")
        # Opacus' coefficient is min(1, max_grad_norm / norm) per sample: a tensor gives each record its own clip
        module.max_grad_norm = clip_tensor(clips, per_sample.device)
        backward(DPTensorFastGradientClipping(module, optimizer, per_sample, "mean"))
        params = optimizer.params
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params], float(per_sample.detach().sum())


def clip_tensor(clips: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-record clips as a float32 tensor, each rounded *down*, so no record's clip exceeds its ``C / k``.

    Rounding to nearest could raise ``C / 3`` by an ulp, and a person's clipped total past ``C``.

    >>> bool(clip_tensor(np.array([2.0 / 3.0])).double() <= 2.0 / 3.0)
    True
    """
    exact = np.asarray(clips, dtype=np.float64)
    rounded = exact.astype(np.float32)
    rounded = np.where(rounded.astype(np.float64) > exact, np.nextafter(rounded, np.float32(0)), rounded)
    return torch.as_tensor(rounded, dtype=torch.float32, device=device)


def gaussian_noise(
    std: float,
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator,
    *,
    secure: bool,
    device: Any = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``N(0, std^2)`` per coordinate from ``generator``; ``secure``: as Opacus' ``secure_mode`` draws it.

    A floating-point Gaussian sample leaks through its low-order bits (floating-point attacks: Mironov 2012 on
    the Laplace sampler, Jin et al. 2022 on Gaussian ones, Opacus among them). Opacus' fix (after Holohan and
    Braghin 2021) sums four draws and halves the sum (the same distribution), after one draw it throws away; this
    is the same draw for the noise privsynth adds itself (:meth:`DPSGDTrainer.gaussian_sum`), so every DP-SGD
    step of a stage uses one sampler.
    """
    if not secure:
        return torch.normal(0.0, std, size=tuple(shape), generator=generator, device=device, dtype=dtype)
    torch.normal(0.0, std, size=(1, 1), generator=generator, device=device, dtype=dtype)  # discarded, as Opacus does
    total = torch.zeros(tuple(shape), device=device, dtype=dtype)
    for _ in range(4):
        total += torch.normal(0.0, std, size=tuple(shape), generator=generator, device=device, dtype=dtype)
    return total / 2


def _json_int(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def backward(loss: Any) -> None:
    """``loss.backward()`` through Opacus' hooks, without torch's note that they fire on input-less modules.

    torch warns when a backward hook fires on a module whose inputs (token ids, class labels, the first layer's
    images) need no gradient; that is expected with per-sample hooks and changes nothing.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        loss.backward()


@contextlib.contextmanager
def initialised(streams: Streams, *parts: str) -> Iterator[None]:
    """Build a network inside this block: torch's global CPU RNG takes a state from ``streams``, restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.set_state(streams.torch(*parts).get_state())
        yield


def unit_groups(corpus: Corpus) -> Groups:
    """Records grouped by unit of privacy (the schema's entity, or each record), bounded by the schema's public m."""
    from privsynth.privacy.contribution import sensitivity

    entity = corpus.schema.entity
    labels = corpus.records[entity].to_numpy() if entity is not None else None
    return Groups.from_labels(labels, len(corpus), max_size=sensitivity(corpus.schema))


def spend_once(
    ledger: PrivacyLedger,
    stage: str,
    mechanism: Mechanism,
    *,
    note: str,
    checkpoint: Path | None,
    streams: Streams,
    secure_mode: bool,
) -> bool:
    """Record a DP-SGD run in the ledger before any noise is drawn, unless a resumed run already did.

    The note records whether the noise is drawn in Opacus' ``secure_mode`` (:func:`gaussian_noise`).

    Returns whether training should continue from ``checkpoint`` (the run's spend is in the ledger and its state
    was saved). A run interrupted before its first checkpoint restarts from scratch (with fresh randomness: its
    noisy iterates never left the process) without spending twice; a run on cluster workers, whose iterates do
    leave the process, checkpoints before its first step so that it always resumes. Refuses when ``streams`` are
    not the kind of randomness the ledger records, so a ledger can never claim OS entropy for replayable noise.
    """
    if streams.mode is not ledger.rng:
        raise ValueError(
            f"the ledger records '{ledger.rng.value}' randomness but this run's noise would be '{streams.mode.value}'"
        )
    sampler = "Opacus secure_mode sampler, four draws per coordinate" if secure_mode else "one draw per coordinate"
    # the generator is torch's, seeded from the secret root (OS entropy): not Opacus' CSPRNG, so say which part
    note = f"{note}; noise: {sampler} (secure_mode {'on' if secure_mode else 'off'})"
    spent = any(e.stage == stage and e.note == note and e.mechanism == mechanism for e in ledger.entries)
    if spent and checkpoint is not None:
        log.info("resuming %s; its privacy spend is already in the ledger", note)
        recover_replaced(checkpoint)  # killed between the two renames of a checkpoint's replacement
        if (checkpoint / "state.json").is_file():
            return True
        # restarting with fresh noise is right only if no checkpoint of this run ever reached disk
        refuse_redraw(checkpoint, f"DP-SGD checkpoint of stage '{stage}'")
        return False
    ledger.spend(stage, mechanism, note=note)
    return False


class DPSGDTrainer:
    """Runs one planned DP-SGD mechanism on a model; resumable from :meth:`state_dict`.

    Args:
        model: the network; validated by Opacus (no BatchNorm, supported layers only).
        loss: ``loss(module, record_indices) -> per-record loss tensor``.
        groups: units of privacy.
        mechanism: the (sigma, q, steps) already spent in the ledger.
        config: optimisation settings.
        streams: the fit's private streams; this run takes ``(stream[0], stream[1], purpose)`` for its noise,
            its Poisson masks and any loss randomness (:meth:`generator`). Their states are checkpointed.
        stream: (stage, column) naming this run's streams, e.g. ``("text", "notes")``.
        units: the number of units of privacy the sample rate was set for: the fit's DP count, never the exact
            one. The summed noisy gradient is divided by ``sample_rate * units`` (the expected batch), so the step
            size reveals nothing the ledger does not cover.
        ema: decay of an exponential moving average of the weights (``None``: none). Post-processing of the
            noisy iterates, so free in privacy; it averages out much of the noise a short DP run leaves.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: PerSampleLoss,
        groups: Groups,
        mechanism: Mechanism,
        config: OptimConfig,
        streams: Streams,
        stream: tuple[str, str],
        units: int,
        ema: float | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        from opacus.grad_sample import GradSampleModuleFastGradientClipping
        from opacus.optimizers import DPOptimizerFastGradientClipping

        self._setup(
            model,
            groups=groups,
            mechanism=mechanism,
            config=config,
            streams=streams,
            stream=stream,
            units=units,
            device=torch.device(device),
            ema=ema,
        )
        self.loss = loss
        self.clipper: Any = GhostClipping(loss)
        self.module = GradSampleModuleFastGradientClipping(
            model,
            batch_first=True,
            loss_reduction="mean",
            max_grad_norm=self.record_clip,
            use_ghost_clipping=config.clipping is ClippingMode.GHOST,
        )
        base = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.optimizer = DPOptimizerFastGradientClipping(
            base,
            # Opacus adds noise of std noise_multiplier * max_grad_norm with max_grad_norm the per-record clip;
            # the unit of privacy's sensitivity is m records * (C / m) = C, hence sigma * m here.
            noise_multiplier=mechanism.noise_multiplier * groups.max_size,
            max_grad_norm=self.record_clip,
            expected_batch_size=round(self.expected_records),
            loss_reduction="mean",
            generator=self.noise,
            secure_mode=config.secure_mode,
        )

    def _setup(
        self,
        model: nn.Module,
        *,
        groups: Groups,
        mechanism: Mechanism,
        config: OptimConfig,
        streams: Streams,
        stream: tuple[str, str],
        units: int,
        device: torch.device,
        ema: float | None = None,
    ) -> None:
        """What every DP-SGD run holds: the validated model, its units, mechanism, record clip, RNGs, step, EMA."""
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(model, strict=False)
        if errors:
            raise ValueError(f"model is not DP-SGD compatible: {errors}")
        self.device = device
        self.model = model.to(device)
        self.groups, self.mechanism, self.config = groups, mechanism, config
        # the smallest record clip, C / m: Opacus scales its noise by it (hence sigma * m); records' own clips
        # are C / k for a unit of k <= m records (record_clips)
        self.record_clip = config.max_grad_norm / groups.max_size
        self._streams, self._stream = streams, stream
        self.generators: dict[str, torch.Generator] = {}
        self.noise = self.generator("noise")
        if units < 1:
            raise ValueError("units must be >= 1")
        self.expected_records = max(mechanism.sample_rate * units, 1.0)  # from the DP count: a public constant
        self.sampler = streams.numpy(*stream, "poisson")
        self.step = 0
        if ema is not None and not 0.0 <= ema < 1.0:
            raise ValueError("ema must be in [0, 1)")
        self.ema_decay = ema
        self.ema = {k: v.detach().clone() for k, v in self.model.named_parameters()} if ema is not None else None
        #: Noisy results of steps spent as queries (:meth:`gaussian_sum`, :meth:`noised`), by name: saved with
        #: checkpoints, so a resumed run reuses them instead of drawing them again. DP outputs of this mechanism.
        self.outputs: dict[str, torch.Tensor] = {}
        self.checkpointed = False  # whether this run's state is on disk (saved, or loaded to resume)

    def generator(self, purpose: str) -> torch.Generator:
        """A torch generator of this run's own for ``purpose`` (noise, loss draws...), saved with checkpoints."""
        if purpose not in self.generators:
            self.generators[purpose] = self._streams.torch(*self._stream, purpose, device=self.device)
        return self.generators[purpose]

    def _update_ema(self) -> None:
        if self.ema is not None and self.ema_decay is not None:
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    self.ema[name].lerp_(p.detach(), 1.0 - self.ema_decay)

    def averaged_state(self) -> dict[str, torch.Tensor]:
        """The model's state dict with the EMA in place of the weights (the weights themselves without EMA)."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            state.update({k: v.clone() for k, v in self.ema.items()})
        return state

    def record_clips(self, rows: np.ndarray) -> np.ndarray:
        """Each record's clip: ``C`` over the number of records of its own unit (:attr:`Groups.unit_sizes`)."""
        return self.config.max_grad_norm / self.groups.unit_sizes[np.asarray(rows, dtype=np.int64)]

    def poisson_batch(self) -> np.ndarray:
        """Record indices of the next Poisson batch of units (the sampler the accountant assumes)."""
        chosen = np.flatnonzero(self.sampler.random(self.groups.count) < self.mechanism.sample_rate)
        return self.groups.records(chosen)

    def gaussian_sum(self, contributions: torch.Tensor, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Noised sum of per-record ``contributions [b, ...]`` of records ``rows``: one step of this mechanism.

        Each record's contribution is scaled to L2 norm at most its clip (``C / k``, its unit holding ``k``
        records), so a unit of privacy moves the sum by at most ``C``; the noise is ``N(0, (sigma C)^2)`` per
        coordinate, drawn from the trainer's noise generator. A step spent here is a step of the planned
        (sigma, q, steps) mechanism: the caller counts it (``self.step += 1``) instead of a gradient step.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != len(contributions):  # no counts in the message: they are a batch's size
            raise ValueError("gaussian_sum needs one record index per contribution")
        flat = contributions.flatten(1)  # an empty Poisson batch is (0, d): still a noisy step
        norms = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
        clips = clip_tensor(self.record_clips(rows), flat.device).to(flat.dtype)[:, None]
        clipped = flat * (clips / norms).clamp(max=1.0)
        return self.noised(clipped.sum(dim=0)).reshape(contributions.shape[1:])

    def noised(self, total: torch.Tensor) -> torch.Tensor:
        """``total`` plus this mechanism's step noise, ``N(0, (sigma C)^2)`` per coordinate, from the noise generator.

        ``total`` must be a sum over one Poisson batch in which each record's contribution has L2 norm at most its
        clip (:meth:`record_clips`), as :meth:`gaussian_sum` makes it; a caller whose contributions are sparse
        builds the sum itself (:func:`privsynth.generators.text.keywords.noisy_keyword_sums`) and counts the step.
        """
        std = self.mechanism.noise_multiplier * self.config.max_grad_norm
        noise = gaussian_noise(
            std, total.shape, self.noise, secure=self.config.secure_mode, device=total.device, dtype=total.dtype
        )
        return total + noise

    def _empty_step(self) -> None:
        """Noise-only step for an empty Poisson batch (the accountant counts it)."""
        for p in self.optimizer.params:
            p.summed_grad = torch.zeros_like(p)
            p.grad = torch.zeros_like(p)
        self.optimizer.add_noise()
        self.optimizer.scale_grad()
        self.optimizer.original_optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._update_ema()

    def _step(self, indices: np.ndarray) -> float:
        """One clipped, noised step on the records ``indices``; returns their mean loss."""
        grads, total = self.clipper(self.module, indices, self.optimizer, self.generators, self.record_clips(indices))
        self.apply(grads)
        return total / max(len(indices), 1)

    def apply(self, clipped_sum: list[torch.Tensor]) -> None:
        """Noise once on the summed clipped gradients (one per trainable parameter), then the optimizer's update.

        Whether the sum was computed here or added up from workers' parts, the noise, its generator and the
        scaling by the expected batch are this process's: the same step either way.
        """
        for p, grad in zip(self.optimizer.params, clipped_sum, strict=True):
            p.grad = grad.to(p.device).view_as(p)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._update_ema()

    def run(
        self,
        *,
        until: int | None = None,
        on_step: Callable[[int, float], None] | None = None,
        checkpoint: Path | None = None,
        checkpoint_every: int = 200,
        engine: Engine | None = None,
    ) -> None:
        """Train from the current step to ``until`` (default: all planned steps), checkpointing if asked.

        With a cluster ``engine`` the clipped gradient sums are computed by its workers, each on a part of every
        Poisson batch (:mod:`privsynth.generators.dpsgd_workers`); sampling, noise and the update stay here, so
        the mechanism, the ledger and the checkpoints are those of a single-process run, for any worker count.
        """
        from privsynth.engine import LocalEngine

        last = self.mechanism.steps if until is None else min(until, self.mechanism.steps)
        self.module.train()
        remote = None
        if engine is not None and not isinstance(engine, LocalEngine) and self.step < last:
            if self.device.type != "cpu":
                log.warning(
                    "DP-SGD stays on this machine's %s: cluster workers compute on CPU (set device: cpu to use them)",
                    self.device.type,
                )
            else:
                from privsynth.generators.dpsgd_workers import RemoteGradients

                remote = RemoteGradients(self, engine)
                if checkpoint is not None and not self.checkpointed:
                    # the iterates now leave this process: an interruption must resume (same noise), not restart.
                    # Also after steps spent as queries (the image's class means, which the weights sent from now on
                    # carry): a resume brings them back instead of drawing them again
                    self.save_checkpoint(checkpoint)
        try:
            while self.step < last:
                indices = self.poisson_batch()
                if indices.size == 0:
                    self._empty_step()
                    value = float("nan")
                elif remote is not None:
                    value = remote.step(indices)
                else:
                    value = self._step(indices)
                self.step += 1
                if on_step is not None:
                    on_step(self.step, value)
                if checkpoint is not None and (self.step % checkpoint_every == 0 or self.step == last):
                    self.save_checkpoint(checkpoint)
        finally:
            if remote is not None:
                remote.close()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimizer, RNG states, step, and the EMA as extra tensors.

        The RNG states replay this run's noise: they live only in the owner-only work folder, never in a model.
        """
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.original_optimizer.state_dict(),
            "generators": {name: g.get_state() for name, g in self.generators.items()},
            "sampler": self.sampler.bit_generator.state,
            "step": self.step,
            "extra": {
                **{f"ema.{k}": v for k, v in (self.ema or {}).items()},
                **{f"output.{k}": v for k, v in self.outputs.items()},
            },
        }

    def save_checkpoint(self, folder: Path) -> None:
        """Write the resumable state as safetensors + JSON (no pickle), atomically."""
        state = self.state_dict()
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state["model"].items()}
        tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in state.get("extra", {}).items()})
        optimizer = state["optimizer"]
        for pid, slots in optimizer["state"].items():
            for name, value in slots.items():
                value = value.detach().cpu()
                tensors[f"optim.{pid}.{name}"] = (
                    value.reshape(-1).contiguous() if value.dim() == 0 else value.contiguous()
                )
        tensors.update({f"rng.{name}": value for name, value in state["generators"].items()})
        with atomic_dir(folder, force=True) as tmp:  # owner-only: RNG states
            save_file(tensors, str(tmp / "state.safetensors"))
            (tmp / "state.json").write_text(json.dumps(self._checkpoint_meta(state), default=_json_int), "utf-8")
        mark_saved(folder)  # from now on a lost checkpoint is refused, never redrawn (spend_once)
        self.checkpointed = True

    @staticmethod
    def _checkpoint_meta(state: dict[str, Any]) -> dict[str, Any]:
        optimizer = state["optimizer"]
        return {
            "step": state["step"],
            "sampler": state["sampler"],
            "param_groups": optimizer["param_groups"],
            "slots": {
                str(pid): {name: list(v.shape) for name, v in slots.items()}
                for pid, slots in optimizer["state"].items()
            },
        }

    def load_checkpoint(self, folder: Path) -> None:
        """Resume from :meth:`save_checkpoint` output."""
        tensors = load_file(str(folder / "state.safetensors"))
        meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        extra = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for pid, names in meta["slots"].items():
            slots[int(pid)] = {name: tensors[f"optim.{pid}.{name}"].reshape(shape) for name, shape in names.items()}
        sampler = meta["sampler"]
        self.load_state_dict(
            {
                "model": model,
                "optimizer": {"state": slots, "param_groups": meta["param_groups"]},
                "generators": {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")},
                "sampler": sampler,
                "step": meta["step"],
                "extra": extra,
            }
        )
        self.checkpointed = True

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` output."""
        self.model.load_state_dict(state["model"])
        self.optimizer.original_optimizer.load_state_dict(state["optimizer"])
        for name, value in state["generators"].items():
            self.generator(name).set_state(value.cpu())
        self.sampler.bit_generator.state = state["sampler"]
        self.step = int(state["step"])
        extra = state.get("extra", {})
        self.outputs = {k.removeprefix("output."): v for k, v in extra.items() if k.startswith("output.")}
        if self.ema is not None:
            for name in self.ema:
                if f"ema.{name}" in extra:
                    self.ema[name] = extra[f"ema.{name}"].to(self.device)
