"""DP-SGD for losses that feed each record through the network several times (K draws per record).

A diffusion model trained with *noise multiplicity* (DPDM, Dockhorn et al. 2022) feeds each record through the
network K times, at K noise levels, and must clip the record's *average* gradient over its K rows: the unit of
privacy is the record, not the row. Opacus' per-sample gradient hooks give one gradient per row the layers see
(a batch of b records is b x K rows, record-major); here the K row gradients of each record are summed (the
loss already averages over them) into one gradient per record, and only then clipped.

Why not ``torch.func.vmap(grad(...))`` over records: it is exact too, but its per-record convolution gradients
become grouped convolutions with one group per record, which ran about 400 images/s on an H100 (as slow as two
CPU cores). Opacus' hooks compute them with unfold + einsum.

Clipping, noise and the expected-batch scaling are Opacus' :class:`~opacus.optimizers.DPOptimizer`, fed with
the per-record gradients in chunks (so a large Poisson batch fits in memory): each chunk is clipped and summed,
noise of standard deviation ``sigma * C`` is added once to the total, exactly what the ledger's
(sigma, q, steps) assumes. An exponential moving average (EMA) of the weights is post-processing and free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig, backward
from privsynth.generators.record_loss import RecordLoss
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.randomness import Streams

DrawsLoss = Callable[[nn.Module, np.ndarray, torch.Generator], torch.Tensor]
"""``loss(module, record_indices, generator) -> per-record losses [b]``: runs ``module`` once on the b x K rows
(record-major: record i's draws are rows i*K .. i*K+K-1) and averages each record's K row losses. Randomness
comes from ``generator`` (saved with the checkpoint, so a resumed run draws what the uninterrupted one would)."""


class MultiDrawDPSGDTrainer(DPSGDTrainer):
    """DP-SGD clipping each record's gradient summed over its K rows; see the module docstring.

    Args:
        model: the network (no BatchNorm; layers Opacus' hooks support).
        loss: per-record losses of a batch of records.
        draws: K, the rows per record.
        groups, mechanism, config, streams, stream, units: as for :class:`DPSGDTrainer`.
        device: where the model, data and noise live ("cpu", "cuda", ...).
        chunk: records per forward/backward (memory: chunk x K x parameters floats of per-row gradients).
        ema: decay of the weights' moving average (``None``: no average).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: DrawsLoss,
        draws: int,
        groups: Groups,
        mechanism: Mechanism,
        config: OptimConfig,
        streams: Streams,
        stream: tuple[str, str],
        units: int,
        device: torch.device | str = "cpu",
        chunk: int = 128,
        ema: float | None = None,
    ) -> None:
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

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
        self.module = GradSampleModule(self.model, batch_first=True, loss_reduction="sum")
        self.draws_loss, self.k = loss, draws
        self.chunk = max(1, chunk)
        self.clipper = DrawsClipping(loss, draws, self.chunk)
        self.rng = self.generator("draws")  # checkpointed with the noise (see DPSGDTrainer.state_dict)
        base = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        # sigma * m: a unit of privacy with m records has m clipped gradients of norm C / m (see DPSGDTrainer)
        self.optimizer = DPOptimizer(
            base,
            noise_multiplier=mechanism.noise_multiplier * groups.max_size,
            max_grad_norm=self.record_clip,
            expected_batch_size=round(self.expected_records),
            loss_reduction="sum",  # scaled by the expected batch below, once per step
            generator=self.noise,
        )

    def _finish_step(self) -> None:
        """Noise once on the summed clipped gradients, scale by the expected batch, update, average."""
        self.optimizer.add_noise()
        for p in self.optimizer.params:
            p.grad /= self.optimizer.expected_batch_size
        self.optimizer.original_optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._update_ema()

    def _empty_step(self) -> None:
        for p in self.optimizer.params:
            p.summed_grad = torch.zeros_like(p)
        self._finish_step()

    def apply(self, clipped_sum: list[torch.Tensor]) -> None:
        """Noise once on the summed clipped per-record gradients, then the update (see DPSGDTrainer.apply)."""
        for p, grad in zip(self.optimizer.params, clipped_sum, strict=True):
            p.summed_grad = grad.to(p.device).view_as(p)
        self._finish_step()


@dataclass(frozen=True)
class DrawsClipping:
    """The sum of a batch's per-record gradients, each summed over its K rows and clipped to the record clip.

    Runs in the driver's process and on DP-SGD workers alike (see :class:`~privsynth.generators.dpsgd.GhostClipping`).
    """

    loss: DrawsLoss
    draws: int
    chunk: int

    def worker_optimizer(self, module: nn.Module, record_clip: float) -> Any:
        """A noiseless Opacus optimizer on a worker: only its per-record clipping and accumulation are used."""
        from opacus.optimizers import DPOptimizer

        params = [p for p in module.parameters() if p.requires_grad]
        return DPOptimizer(
            torch.optim.SGD(params, lr=0.0),
            noise_multiplier=0.0,
            max_grad_norm=record_clip,
            expected_batch_size=1,
            loss_reduction="sum",
        )

    def for_records(self, rows: np.ndarray) -> DrawsClipping | None:
        """This clipping over records ``rows`` only, or ``None`` when the loss does not name its records."""
        return dataclasses.replace(self, loss=self.loss.subset(rows)) if isinstance(self.loss, RecordLoss) else None

    def __call__(
        self, module: nn.Module, indices: np.ndarray, optimizer: Any, generators: dict[str, torch.Generator]
    ) -> tuple[list[torch.Tensor], float]:
        """Summed clipped per-record gradients (``optimizer.params`` order) and the loss sum; draws from 'draws'."""
        optimizer.zero_grad(set_to_none=True)
        params = optimizer.params
        rng = generators["draws"]
        total = 0.0
        for start in range(0, len(indices), self.chunk):
            rows = indices[start : start + self.chunk]
            losses = self.loss(module, rows, rng)
            backward(losses.sum())
            for p in params:
                rows_grads: torch.Tensor = p.grad_sample  # [b * K, ...], per row
                per_record = rows_grads.view(len(rows), self.draws, *rows_grads.shape[1:]).sum(dim=1)
                p.grad_sample = per_record
            optimizer.clip_and_accumulate()  # adds this chunk's clipped per-record gradients to summed_grad
            for p in params:
                p.grad_sample = None
                p.grad = None
            total += float(losses.detach().sum())
        sums = [p.summed_grad if p.summed_grad is not None else torch.zeros_like(p) for p in params]
        return sums, total


__all__ = ["DrawsClipping", "DrawsLoss", "MultiDrawDPSGDTrainer"]
