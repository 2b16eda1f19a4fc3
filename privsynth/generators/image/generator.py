"""The DP image generator: a mixture of factor analysers over a public DCT basis (CPU) or a diffusion model (GPU).

``image.model`` picks the network; both are class-conditional, trained with DP-SGD under the ledger's IMAGE stage:

- ``mixture`` (default). Why this design on a CPU: conv GANs and diffusion models need hours of DP-SGD on two
  cores; a mixture of factor analysers (MoFA) over the low-frequency 2-D DCT coefficients of the image is a real
  generative model whose exact log-likelihood DP-SGD can maximise in minutes, and whose parameters all sit behind
  ``nn.Embedding`` tables, which Opacus' ghost clipping handles without materialising per-sample gradients. The
  basis is fixed maths (nothing learned from data); the only thing learned from the private images is the
  mixture, under the ledger.

Conditioning: the image of a record follows its fields. The record's class is the combination of its tokens in
``condition_on`` (categorical or boolean columns, coded by the tabular codecs, which come from the DP profile or
declared-public metadata). By default privsynth picks them from public information only: declared-domain
categorical columns first, largest domain first, while the number of classes stays within ``max_classes``.

Option: ``pretrained`` names a folder written by :meth:`ImageGenerator.save` from a model fitted on *public*
images of the same size and mode; DP-SGD then starts from its mixture instead of from scratch.

- ``diffusion``: a small U-Net denoising diffusion model after DPDM (noise multiplicity, large batches, EMA; see
  :mod:`privsynth.generators.image.diffusion`). It needs a GPU to reach its quality in reasonable time
  (configs/fmnist-gpu.yaml); on a CPU it runs, slowly, at tiny sizes (tests).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field
from safetensors.torch import load_file

from privsynth.data.corpus import Corpus
from privsynth.data.images import ImageCellError, encode_png, load_image
from privsynth.data.schema import ColumnKind, Schema
from privsynth.errors import ConfigError
from privsynth.generators.base import FitContext, Generator, SampleContext
from privsynth.generators.dpsgd import (
    ClippingMode,
    DPSGDSettings,
    DPSGDTrainer,
    Groups,
    OptimConfig,
    initialised,
    spend_once,
)
from privsynth.generators.dpsgd_draws import MultiDrawDPSGDTrainer
from privsynth.generators.image.basis import decode, encode, to_array, to_image
from privsynth.generators.image.diffusion import (
    Denoiser,
    DiffusionConfig,
    denoising_loss,
    gpu_precision,
    heun_sample,
)
from privsynth.generators.image.mixture import MixtureOfFactorAnalysers
from privsynth.generators.image.moments import dp_class_means
from privsynth.generators.record_loss import RecordLoss
from privsynth.generators.sizing import SMALL_COHORT, apply_size_rule
from privsynth.generators.tabular.codecs import BooleanCodec, CategoricalCodec, ColumnCodec, codec_from_dict
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.ledger import Stage
from privsynth.privacy.planner import StageShape
from privsynth.privacy.randomness import Streams
from privsynth.profile.model import ImageProfile

log = logging.getLogger(__name__)
WEIGHTS, META = "image.safetensors", "image.json"
FEATURE_SCALE = 4.0  # DCT coefficients x FEATURE_SCALE / sqrt(h * w): the DC term of a [-1, 1] image in [-4, 4]


#: The mixture's small-cohort values (:mod:`privsynth.generators.sizing`): what configs/demo.yaml tuned by hand.
SMALL_COHORT_SETTINGS: dict[str, object] = {
    "keep": 8,
    "rank": 1,
    "init_scale": 0.1,
    "temperature": 0.6,
    "residual": 1.0,
    "mean_queries": 60,
    "class_floor": 0.9,
    "mean_offset": 0.25,
}
SMALL_COHORT_OPTIM: dict[str, object] = {"epochs": 30.0}


class ImageConfig(DPSGDSettings):
    """Model and training settings of the image generator (public)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["mixture", "diffusion"] = Field(
        default="mixture", description="'mixture' (CPU, minutes) or 'diffusion' (DPDM-style, for a GPU)."
    )
    diffusion: DiffusionConfig = DiffusionConfig()
    keep: int = Field(default=12, ge=2, le=64, description="Low-frequency DCT coefficients kept per side.")
    components: int = Field(default=1, ge=1, le=64, description="Mixture components per class.")
    rank: int = Field(default=16, ge=1, le=64, description="Latent factors per component.")
    condition_on: list[str] | None = Field(
        default=None, description="Categorical/boolean columns the image follows (default: chosen from public info)."
    )
    init_scale: float = Field(
        default=0.5, gt=0, le=2, description="Initial spread of the mixture (feature units) before training."
    )
    mean_queries: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="mixture: steps of the stage's budget spent on DP class means that start the mixture "
        "(at most half the steps; 0: start from init_scale noise).",
    )
    mean_offset: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="mixture: the DP class means measure each class's offset from a DP overall mean, each record's "
        "offset clipped to this share of the feature bound (0: plain sums under the whole bound).",
    )
    max_classes: int = Field(default=16, ge=1, le=256, description="Most condition classes (product of domains).")
    temperature: float = Field(default=1.0, gt=0, le=2, description="Scale of the sampled latent factors.")
    residual: float = Field(
        default=0.0, ge=0, le=1, description="Scale of the per-coefficient residual noise at sampling (0: none)."
    )
    class_floor: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="mixture: redraw a sampled image (up to 16 times) until the model's own posterior of its "
        "class is at least this (0: never); post-processing of the model, no data read.",
    )
    pretrained: Path | None = Field(default=None, description="Public checkpoint folder to fine-tune from.")
    optim: OptimConfig = OptimConfig(batch_size=2048, epochs=10, lr=0.003, clipping=ClippingMode.GHOST)
    size_rule: bool = Field(
        default=True,
        description="mixture: settings left unset (keep, rank, init_scale, temperature, residual, mean_queries, "
        "class_floor, mean_offset, epochs) "
        f"follow the DP count of people: below {SMALL_COHORT:,} people, the small-cohort settings.",
    )

    def for_units(self, units: int) -> ImageConfig:
        """These settings with the size rule applied for ``units`` people (the DP count: public), then fixed.

        Measured (``benchmarks/default_config.py`` at 2,000 demo records; ``benchmarks/images_fmnist.py`` at
        60,000): a small cohort's few noisy steps cannot fit 16 latent factors over 12x12 coefficients per class,
        so below :data:`SMALL_COHORT` people the mixture keeps 8x8 coefficients and one factor, starts tight
        from more DP class-mean queries, trains 30 epochs and samples at temperature 0.6 with the model's own
        per-coefficient noise (``residual`` 1: one factor alone draws every image of a class from one line, so
        all synthetic scans sat near 44 of 1,932 real ones and the audit's DCR share could not be told from
        0.5 +- 0.25). That noise also puts draws where a small cohort's noisy classes overlap, so each image is
        drawn again until the model itself gives its class a posterior of 0.9 (``class_floor``), and the DP class
        means are measured as offsets from a DP overall mean (``mean_offset`` 0.25). Only settings
        left at their (large-cohort) default follow the rule; ``size_rule: false`` keeps every value as written.

        >>> small = ImageConfig().for_units(1_600)
        >>> small.keep, small.rank, small.residual, small.class_floor, small.mean_offset, small.optim.epochs
        (8, 1, 1.0, 0.9, 0.25, 30.0)
        >>> ImageConfig(rank=4).for_units(1_600).rank, ImageConfig().for_units(60_000).rank
        (4, 16)
        """
        return apply_size_rule(
            self,
            units,
            settings=SMALL_COHORT_SETTINGS,
            optim=SMALL_COHORT_OPTIM,
            applies=self.model == "mixture",
        )


def choose_conditions(schema: Schema, codecs: list[ColumnCodec], config: ImageConfig) -> list[ColumnCodec]:
    """The condition columns: ``config.condition_on`` or a choice from public information only.

    >>> from privsynth.data.demo import demo_schema
    >>> from privsynth.generators.tabular.codecs import CategoricalCodec
    >>> codecs = [CategoricalCodec("sex", categories=["F", "M"], has_other=False, nullable=False),
    ...           CategoricalCodec("diagnosis", categories=list("abcde"), has_other=False, nullable=False)]
    >>> [c.name for c in choose_conditions(demo_schema(), codecs, ImageConfig())]
    ['diagnosis', 'sex']
    """
    by_name: dict[str, ColumnCodec] = {c.name: c for c in codecs if isinstance(c, CategoricalCodec | BooleanCodec)}
    if config.condition_on is not None:
        unknown = [n for n in config.condition_on if n not in by_name]
        if unknown:
            raise ConfigError(
                f"image.condition_on names {unknown}, which are not categorical or boolean columns of the "
                f"schema; choose among {sorted(by_name)}"
            )
        named = [by_name[n] for n in config.condition_on]
        if _classes(named) > config.max_classes:
            raise ConfigError(
                f"image.condition_on gives {_classes(named)} classes, above image.max_classes "
                f"({config.max_classes}); condition on fewer columns or raise max_classes"
            )
        return named

    def public_rank(codec: ColumnCodec) -> tuple[int, int]:
        declared = schema.columns[codec.name].domain is not None or isinstance(codec, BooleanCodec)
        return (0 if declared else 1, -codec.vocab_sizes()[0])

    chosen: list[ColumnCodec] = []
    classes = 1
    for codec in sorted(by_name.values(), key=public_rank):
        size = codec.vocab_sizes()[0]
        if classes * size <= config.max_classes and size > 1:
            chosen.append(codec)
            classes *= size
    return chosen


def _classes(codecs: list[ColumnCodec]) -> int:
    return math.prod(c.vocab_sizes()[0] for c in codecs)


def class_index(records: pd.DataFrame, codecs: list[ColumnCodec]) -> np.ndarray:
    """Each record's condition class: its condition tokens in mixed radix."""
    index = np.zeros(len(records), dtype=np.int64)
    for codec in codecs:
        size = codec.vocab_sizes()[0]
        index = index * size + np.clip(codec.encode(records[codec.name])[:, 0], 0, size - 1)
    return index


class ImageGenerator(Generator):
    """DP-SGD image model (mixture or diffusion) for one image column, conditioned on the record's fields."""

    name = "image"
    kinds = (ColumnKind.IMAGE,)
    stage = Stage.IMAGE
    settings = ImageConfig
    default_share = 6.0
    config: ImageConfig

    def _network(self, classes: int, channels: int) -> torch.nn.Module:
        if self.config.model == "diffusion":
            return Denoiser(channels=channels, classes=classes, config=self.config.diffusion)
        return MixtureOfFactorAnalysers(
            classes=classes,
            components=self.config.components,
            dims=channels * self._keep**2,
            rank=self.config.rank,
            init_scale=self.config.init_scale,
        )

    def plan(self, units: int) -> StageShape:
        """DP-SGD shape on ``units`` people, with the size rule applied (:meth:`ImageConfig.for_units`)."""
        shape: StageShape = self.config.for_units(units).optim.stage_shape(self.stage, units)
        return shape

    @property
    def _channels(self) -> int:
        return 1 if self.mode_ == "L" else 3

    # ----- fitting ----------------------------------------------------------------------------------------------

    def fit(self, corpus: Corpus, *, columns: list[str], context: FitContext) -> ImageGenerator:
        """Learn the image column ``columns[0]`` of a contribution-bounded corpus at the profile's size and mode.

        Conditioned on the record's fields through the tabular generator's codecs (``context.upstream``). The
        sample rate comes from the fit's DP count; this column gets its own noise, Poisson masks, noise draws and
        initialisation from ``context.streams``.
        """
        (column,) = columns
        profile = context.profile.columns[column]
        if not isinstance(profile, ImageProfile):
            raise ConfigError(f"column '{column}' has no image profile")
        codecs: list[ColumnCodec] = list(getattr(context.upstream.get("tabular"), "codecs_", []))
        streams, checkpoint, ledger, groups = context.streams, context.checkpoint, context.ledger, context.groups
        units, noise_multiplier = context.units, context.noise_multiplier
        self.config = self.config.for_units(units)  # saved with the model: sampling uses what was trained
        progress = context.report(f"image '{column}'")
        schema = corpus.schema
        self.size_, self.mode_ = (int(profile.size[0]), int(profile.size[1])), profile.mode
        self.missing_rate_ = float(profile.missing_rate)
        self.column_ = column
        self.conditions_ = choose_conditions(schema, codecs, self.config)
        classes = _classes(self.conditions_)
        arrays, present = self._arrays(corpus, column)
        labels = class_index(corpus.records, self.conditions_)
        shape = self.plan(units)
        mechanism = Mechanism(noise_multiplier=noise_multiplier, sample_rate=shape.sample_rate, steps=shape.steps)
        what = "diffusion model" if self.config.model == "diffusion" else "mixture of factor analysers"
        note = f"DP-SGD {what} on image column '{column}'"
        resuming = spend_once(
            ledger,
            Stage.IMAGE,
            mechanism,
            note=note,
            checkpoint=checkpoint,
            streams=streams,
            secure_mode=self.config.optim.secure_mode,
        )
        with initialised(streams, "image", column, "init"):
            network = self._network(classes, self._channels)
        if self.config.pretrained is not None:
            _load_pretrained(network, self.config.pretrained)
        y = torch.as_tensor(labels)
        mask = torch.as_tensor(present, dtype=torch.float32)
        trainer: DPSGDTrainer
        if self.config.model == "diffusion":
            trainer = self._diffusion_trainer(network, arrays, y, mask, groups, mechanism, streams, units)
        else:
            x = torch.as_tensor(self._encode(arrays))
            dims = x.shape[1]

            def loss(
                module: torch.nn.Module, xs: torch.Tensor, ys: torch.Tensor, present: torch.Tensor
            ) -> torch.Tensor:
                # a record without an image contributes nothing (its loss is 0; it still counts in the batch)
                return -module(xs, ys) * present / dims

            trainer = DPSGDTrainer(
                network,
                loss=RecordLoss(loss, (x, y, mask)),  # named records: a cluster worker holds its shard
                groups=groups,
                mechanism=mechanism,
                config=self.config.optim,
                streams=streams,
                stream=("image", column),
                units=units,
            )
        if resuming and checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        queries = min(self.config.mean_queries, mechanism.steps // 2)
        fresh = trainer.step == 0 and self.config.pretrained is None
        if isinstance(network, MixtureOfFactorAnalysers) and queries > 0 and fresh:
            means = dp_class_means(
                trainer,
                x,
                y,
                mask,
                classes=classes,
                queries=queries,
                bound=FEATURE_SCALE * math.sqrt(self._channels),
                offset_share=self.config.mean_offset,
            )
            with torch.no_grad():
                network.means.weight.view(classes, network.components, -1).add_(means[:, None, :])
        with self._precision():
            trainer.run(
                on_step=None if progress is None else lambda step, value: progress(step, mechanism.steps, value),
                checkpoint=checkpoint,
                engine=context.engine,
            )
        if isinstance(trainer, MultiDrawDPSGDTrainer):
            network.load_state_dict(trainer.averaged_state())  # the EMA (post-processing)
            network.to("cpu")
        network.eval()
        self.network_ = network
        return self

    def _diffusion_trainer(
        self,
        network: torch.nn.Module,
        arrays: np.ndarray,
        labels: torch.Tensor,
        mask: torch.Tensor,
        units: Groups,
        mechanism: Mechanism,
        streams: Streams,
        count: int,
    ) -> MultiDrawDPSGDTrainer:
        settings = self.config.diffusion
        device = settings.resolved_device()
        images = torch.as_tensor(arrays).to(device)
        labels, mask = labels.to(device), mask.to(device)
        k = settings.noise_multiplicity
        null_class = network.null_class if isinstance(network, Denoiser) else None

        def loss(
            module: torch.nn.Module,
            xs: torch.Tensor,
            ys: torch.Tensor,
            present: torch.Tensor,
            generator: torch.Generator,
        ) -> torch.Tensor:
            n = len(xs)
            log_sigma = settings.p_mean + settings.p_std * torch.randn(n, k, generator=generator, device=device)
            noise = torch.randn(n, k, *xs.shape[1:], generator=generator, device=device)
            hidden = None
            if null_class is not None:
                hidden = torch.rand(n, k, generator=generator, device=device) < settings.label_dropout
            return denoising_loss(
                module,
                xs,
                ys,
                present,
                log_sigma,
                noise,
                sigma_data=settings.sigma_data,
                hidden=hidden,
                null_class=null_class,
            )

        return MultiDrawDPSGDTrainer(
            network,
            loss=RecordLoss(loss, (images, labels, mask)),  # named records: a cluster worker holds its shard
            draws=k,
            groups=units,
            mechanism=mechanism,
            config=self.config.optim,
            streams=streams,
            stream=("image", self.column_),
            units=count,
            device=device,
            chunk=settings.chunk,
            ema=settings.ema if settings.ema > 0 else None,
        )

    def _precision(self) -> AbstractContextManager[None]:
        """TF32 on a GPU for the diffusion model (its setting); nothing for the mixture or on a CPU."""
        settings = self.config.diffusion
        if self.config.model != "diffusion":
            return nullcontext()
        return gpu_precision(settings.resolved_device(), settings.tf32)

    @property
    def _keep(self) -> int:
        return min(self.config.keep, *self.size_)

    def _arrays(self, corpus: Corpus, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Each record's image ``[n, channels, height, width]`` in [-1, 1] (zeros where missing); which have one."""
        width, height = self.size_
        arrays = np.zeros((len(corpus), self._channels, height, width), dtype=np.float32)
        present = np.zeros(len(corpus), dtype=bool)
        for i, value in enumerate(corpus.records[column]):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            try:
                image = load_image(corpus.root, value)
            except ImageCellError:  # validation already refused these; a corpus built in code may still hold one
                continue
            arrays[i] = to_array(image, self.size_, self.mode_)
            present[i] = True
        return arrays, present

    def _encode(self, arrays: np.ndarray) -> np.ndarray:
        """Scaled low-frequency DCT features of images (the mixture's space)."""
        width, height = self.size_
        return encode(arrays, self._keep) * (FEATURE_SCALE / math.sqrt(width * height))

    # ----- sampling ---------------------------------------------------------------------------------------------

    def sample_arrays(
        self, records: pd.DataFrame, *, streams: Streams, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Images ``[n, channels, height, width]`` in [-1, 1] for the synthetic ``records`` (one per record).

        ``streams`` are sampling streams (post-processing, reproducible per seed). ``progress(done, total)`` is
        told after each batch of a diffusion model's records (the other models draw all at once).
        """
        self._check_fitted("network_")
        labels = torch.as_tensor(class_index(records, self.conditions_))
        width, height = self.size_
        if isinstance(self.network_, Denoiser):
            return self._sample_diffusion(labels, streams, progress=progress)
        if not isinstance(self.network_, MixtureOfFactorAnalysers):
            raise TypeError(f"unexpected image network {type(self.network_).__name__}")
        generator = streams.torch("sample", f"image:{self.column_}", "latents")
        features = self.network_.sample_recognisable(
            labels,
            generator,
            floor=self.config.class_floor,
            temperature=self.config.temperature,
            residual=self.config.residual,
        ).numpy()
        scale = FEATURE_SCALE / math.sqrt(width * height)
        return decode(features / scale, self._channels, height, width, self._keep)

    def _sample_diffusion(
        self,
        labels: torch.Tensor,
        streams: Streams,
        batch: int = 2000,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        settings = self.config.diffusion
        device = settings.resolved_device()
        if not isinstance(self.network_, Denoiser):
            raise TypeError(f"unexpected image network {type(self.network_).__name__}")
        network = self.network_.to(device)
        width, height = self.size_
        generator = streams.torch("sample", f"image:{self.column_}", "diffusion", device=device)
        parts = []
        with self._precision():
            for i in range(0, len(labels), batch):
                shape = (self._channels, height, width)
                parts.append(heun_sample(network, labels[i : i + batch].to(device), shape, settings, generator))
                if progress is not None:
                    progress(min(i + batch, len(labels)), len(labels))
        self.network_ = network.to("cpu")
        if not parts:
            return np.zeros((0, self._channels, height, width), dtype=np.float32)
        return torch.cat(parts).clamp(-1, 1).cpu().numpy()

    def sample(self, context: SampleContext) -> dict[str, Any]:
        """This column's images for the synthetic records so far (see :meth:`sample_pngs`)."""
        progress = context.report(f"sampling image '{self.column_}'")
        return {self.column_: self.sample_pngs(context.records, streams=context.streams, progress=progress)}

    def public_data(self) -> list[dict[str, object]]:
        """The public checkpoint this column's model started from, if any."""
        if self.config.pretrained is None:
            return []
        return [{"kind": "public checkpoint", "name": self.config.pretrained.name}]

    def sample_pngs(
        self, records: pd.DataFrame, *, streams: Streams, progress: Callable[[int, int], None] | None = None
    ) -> list[bytes | None]:
        """PNG bytes per synthetic record (``None`` for the DP share of records without an image)."""
        arrays = self.sample_arrays(records, streams=streams, progress=progress)
        missing = streams.numpy("sample", f"image:{self.column_}", "missing").random(len(records)) < self.missing_rate_
        return [None if gone else encode_png(to_image(a, self.mode_)) for a, gone in zip(arrays, missing, strict=True)]

    # ----- persistence ------------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Weights as safetensors; size, mode, conditions and config as JSON."""
        self._check_fitted("network_")
        fields = {
            "column": self.column_,
            "size": list(self.size_),
            "mode": self.mode_,
            "missing_rate": self.missing_rate_,
            "conditions": [c.to_dict() for c in self.conditions_],
        }
        self._write(folder, weights=WEIGHTS, tensors=self.network_.state_dict(), meta=META, fields=fields)

    @classmethod
    def load(cls, folder: Path) -> ImageGenerator:
        """Rebuild a fitted image generator (no pickle)."""
        generator, meta, tensors = cls._read(folder, weights=WEIGHTS, meta=META)
        generator.column_ = meta["column"]
        generator.size_ = (int(meta["size"][0]), int(meta["size"][1]))
        generator.mode_ = meta["mode"]
        generator.missing_rate_ = float(meta["missing_rate"])
        generator.conditions_ = [codec_from_dict(c) for c in meta["conditions"]]
        network = generator._network(_classes(generator.conditions_), generator._channels)
        network.load_state_dict(tensors)
        network.eval()
        generator.network_ = network
        return generator


def _load_pretrained(network: torch.nn.Module, folder: Path) -> None:
    """Start from a public checkpoint of the same size, mode and mixture shape."""
    path = folder / WEIGHTS
    if not path.is_file():
        raise ConfigError(f"pretrained image checkpoint not found: {path} (a folder written by ImageGenerator.save)")
    state = load_file(str(path))
    own = network.state_dict()
    mismatched = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if mismatched:
        raise ConfigError(
            f"pretrained image checkpoint {folder} does not fit this model ({', '.join(mismatched)} differ); "
            "use the same model and its settings (keep, components, rank or the diffusion sizes), image size and "
            "mode, and the same number of condition classes"
        )
    network.load_state_dict(state)


__all__ = ["ImageConfig", "ImageGenerator", "choose_conditions", "class_index"]
