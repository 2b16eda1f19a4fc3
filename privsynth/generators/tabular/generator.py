"""The DP tabular generator: codecs from the DP profile, an any-order ARGN trained with DP-SGD.

``fit`` needs the DP profile (never an internal one), the ledger and the noise multiplier the planner chose; it
spends (sigma, q, steps) in the ledger before any noise is drawn, then trains. ``sample`` generates records in
the canonical column order, or with some columns fixed first (conditional sampling).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from privsynth.data.corpus import Corpus
from privsynth.data.schema import ColumnKind
from privsynth.errors import ConfigError
from privsynth.generators.base import Generator
from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig, spend_once, unit_groups
from privsynth.generators.tabular.codecs import ColumnCodec, NumericalCodec, Prior, codec_for, codec_from_dict
from privsynth.generators.tabular.network import ARGN, IncrementalSampler, random_visibility
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.planner import StageShape
from privsynth.profile.model import Profile

log = logging.getLogger(__name__)

TABULAR_KINDS = (ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL, ColumnKind.DATETIME, ColumnKind.BOOLEAN)
WEIGHTS, META = "tabular.safetensors", "tabular.json"


class TabularConfig(BaseModel):
    """Network and optimisation settings (public)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embed_dim: int = Field(default=16, ge=2, le=256)
    hidden: int = Field(default=192, ge=8, le=4096)
    layers: int = Field(default=2, ge=1, le=8)
    random_order_share: float = Field(default=0.5, ge=0, le=1, description="Share of random column orders.")
    sample_chunk: int = Field(default=65_536, ge=1)
    calibration_rounds: int = Field(default=6, ge=0, le=50, description="Rounds matching DP marginals.")
    numeric_sub_bins: int = Field(default=0, ge=0, le=64, description="Learned parts per numeric bin (0: none).")
    calibration_samples: int = Field(default=20_000, ge=100)
    optim: OptimConfig = OptimConfig(batch_size=2048, epochs=40, lr=2e-3)


class TabularGenerator(Generator):
    """DP-SGD any-order autoregressive generator for numerical, categorical, datetime and boolean columns."""

    name = "tabular"

    def __init__(self, config: TabularConfig | None = None) -> None:
        self.config = config if config is not None else TabularConfig()

    # ----- planning ---------------------------------------------------------------------------------------------

    def shape(self, units: int) -> StageShape:
        """Sample rate and steps this generator will run on ``units`` units of privacy (for the planner)."""
        return self.config.optim.stage_shape(Stage.TABULAR, units)

    # ----- fitting ----------------------------------------------------------------------------------------------

    def fit(
        self,
        corpus: Corpus,
        *,
        profile: Profile,
        ledger: PrivacyLedger,
        noise_multiplier: float,
        seed: int = 0,
        groups: Groups | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        checkpoint: Path | None = None,
        canaries: int = 0,
    ) -> TabularGenerator:
        """Learn the tabular columns of a contribution-bounded corpus under DP-SGD.

        Args:
            corpus: the training records (contribution-bounded).
            profile: the DP profile (internal profiles are refused).
            ledger: receives the DP-SGD spend before any noise is drawn.
            noise_multiplier: the planner's noise for this stage.
            seed: seeds initialisation, sampling and noise.
            groups: units of privacy (default: one per entity, or per record).
            progress: called with (step, steps, loss) after each step.
            checkpoint: folder for resumable state. When the ledger already holds this stage's spend (an
                interrupted run), nothing is spent again and training resumes from the checkpoint if one exists.
            canaries: plant this many random canary records, each trained on with probability 1/2, and score
                them afterwards for the one-run privacy audit (``canaries_``).
        """
        profile.require_dp()
        schema = corpus.schema
        columns = [n for n, c in schema.columns.items() if c.kind in TABULAR_KINDS]
        if not columns:
            raise ConfigError("the schema has no numerical, categorical, datetime or boolean column to learn")
        noise = (profile.noise_multiplier or 0.0) * profile.max_records_per_entity
        codecs = [
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
        tokens, sizes, groups_of_subcolumns = _encode(corpus.records, codecs)
        units = groups if groups is not None else unit_groups(corpus)
        shape = self.shape(units.count)
        mechanism = Mechanism(noise_multiplier=noise_multiplier, sample_rate=shape.sample_rate, steps=shape.steps)
        canary_tokens, included = _canaries(sizes, canaries, seed)
        if canaries:
            tokens = np.concatenate([tokens, canary_tokens[included]])
            units = units.with_singletons(int(included.sum()))
        note = f"DP-SGD on {len(columns)} tabular columns"
        resuming = spend_once(ledger, Stage.TABULAR, mechanism, note=note, checkpoint=checkpoint)
        torch.manual_seed(seed)
        network = ARGN(sizes, embed_dim=self.config.embed_dim, hidden=self.config.hidden, layers=self.config.layers)
        priors = [p for codec in codecs for p in codec.prior()]
        network.start_from_prior([None if p is None else p.p for p in priors])
        offsets = torch.tensor(network.offsets)
        global_tokens = torch.as_tensor(tokens) + offsets
        order_rng = torch.Generator().manual_seed(seed + 7)
        targets = torch.arange(len(sizes))
        share = self.config.random_order_share

        def loss(module: torch.nn.Module, rows: np.ndarray) -> torch.Tensor:
            batch = global_tokens[rows]
            order_rng.manual_seed(seed + 7 + 1_000_003 * trainer.step)  # per step: resumed runs repeat it exactly
            visible = random_visibility(
                len(rows), len(sizes), random_share=share, generator=order_rng, groups=groups_of_subcolumns
            )
            logp = module(batch, visible, targets.expand(len(rows), -1).contiguous())
            return -logp.gather(2, batch.unsqueeze(-1)).squeeze(-1).sum(dim=1)

        trainer = DPSGDTrainer(
            network, loss=loss, groups=units, mechanism=mechanism, config=self.config.optim, seed=seed
        )
        if resuming and checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        trainer.run(
            on_step=None if progress is None else lambda step, value: progress(step, mechanism.steps, value),
            checkpoint=checkpoint,
        )
        network.eval()
        self.network_ = network
        self.codecs_ = codecs
        self.subcolumns_ = groups_of_subcolumns
        self._calibrate(priors, seed=seed)
        if canaries:
            self.canaries_ = {
                "scores": self.log_likelihood_tokens(canary_tokens).tolist(),
                "included": included.tolist(),
            }
        return self

    @torch.no_grad()
    def log_likelihood_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Log-likelihood of token rows under the canonical column order (for canary scoring)."""
        self._check_fitted("network_")
        net = self.network_
        n, c = tokens.shape
        visible = torch.tril(torch.ones(c, c), diagonal=-1).expand(n, c, c)
        local = torch.as_tensor(tokens)
        logp = net(local + torch.tensor(net.offsets), visible, torch.arange(c).expand(n, -1))
        picked = logp.gather(2, (local + torch.tensor(net.offsets)).unsqueeze(-1)).squeeze(-1)
        return picked.sum(dim=1).numpy()

    @torch.no_grad()
    def _calibrate(self, priors: list[Prior | None], *, seed: int) -> None:
        """Match sampled marginals to the DP profile's marginals with per-token logit offsets.

        Post-processing of two DP outputs (the model and the profile): no privacy cost. Only tokens whose DP
        count stands clear of the noise are pulled towards the profile; the others keep the mass DP-SGD gave
        them. Sub-columns are calibrated over a few damped rounds; offsets are clipped so no token is forced.
        """
        rounds, size = self.config.calibration_rounds, self.config.calibration_samples
        if rounds == 0:
            return
        net = self.network_
        generator = torch.Generator().manual_seed(seed + 11)
        order = list(range(net.columns))
        for _ in range(rounds):
            tokens = self._sample_tokens(size, order, {}, generator)
            for sub, prior in enumerate(priors):
                if prior is None or not prior.reliable.any():
                    continue
                start, width = net.offsets[sub], net.vocab_sizes[sub]
                seen = np.bincount(tokens[:, sub], minlength=width) / size
                target = calibration_target(prior, seen)
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

    def sample(self, n: int, *, conditions: Mapping[str, Any] | None = None, seed: int = 0) -> pd.DataFrame:
        """``n`` synthetic records (tabular columns only), optionally with some columns fixed."""
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
        generator = torch.Generator().manual_seed(seed)
        chunks = [
            self._sample_tokens(min(self.config.sample_chunk, n - start), order, fixed_tokens, generator)
            for start in range(0, n, self.config.sample_chunk)
        ]
        tokens = np.concatenate(chunks) if chunks else np.zeros((0, self.network_.columns), dtype=np.int64)
        rng = np.random.default_rng(seed)
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
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in self.network_.state_dict().items()}
        tensors["calibration"] = self.network_.calibration.contiguous()
        save_file(tensors, str(folder / WEIGHTS))
        meta = {
            "config": self.config.model_dump(mode="json"),
            "vocab_sizes": self.network_.vocab_sizes,
            "codecs": [c.to_dict() for c in self.codecs_],
            "subcolumns": self.subcolumns_,
        }
        (folder / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TabularGenerator:
        """Rebuild a fitted generator from :meth:`save` output."""
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        generator = cls(TabularConfig.model_validate(meta["config"]))
        config = generator.config
        network = ARGN(meta["vocab_sizes"], embed_dim=config.embed_dim, hidden=config.hidden, layers=config.layers)
        tensors = load_file(str(folder / WEIGHTS))
        network.calibration = tensors.pop("calibration")
        network.load_state_dict(tensors)
        network.eval()
        generator.network_ = network
        generator.codecs_ = [codec_from_dict(c) for c in meta["codecs"]]
        generator.subcolumns_ = [list(s) for s in meta["subcolumns"]]
        return generator


def calibration_target(prior: Prior, seen: np.ndarray) -> np.ndarray:
    """Reliable tokens get their DP probability; the rest share what is left in proportion to ``seen``.

    >>> p = Prior(p=np.array([0.5, 0.3, 0.2]), reliable=np.array([True, False, False]))
    >>> [round(float(x), 4) for x in calibration_target(p, np.array([0.2, 0.6, 0.2]))]
    [0.5, 0.375, 0.125]
    """
    fixed = float(prior.p[prior.reliable].sum())
    rest = seen * ~prior.reliable
    target = np.where(prior.reliable, prior.p, 0.0)
    if rest.sum() > 0:
        target = target + rest / rest.sum() * max(1.0 - fixed, 0.0)
    return target / target.sum()


def _canaries(sizes: list[int], count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random token rows (uniform over every vocabulary) and which of them are trained on (probability 1/2)."""
    rng = np.random.default_rng(seed + 1_000_003)
    tokens = (
        np.stack([rng.integers(0, size, size=count) for size in sizes], axis=1)
        if count
        else np.zeros((0, len(sizes)), dtype=np.int64)
    )
    return tokens.astype(np.int64), rng.random(count) < 0.5


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
