"""DP-SGD for losses that feed each record through the network several times (K draws per record).

A diffusion model trained with *noise multiplicity* (DPDM, Dockhorn et al. 2022) feeds each record through the
network K times, at K noise levels, and must clip the record's *average* gradient over its K rows: the unit of
privacy is the record, not the row. Opacus' per-sample gradient hooks give one gradient per row the layers see
(a batch of b records is b x K rows, record-major); here the K row gradients of each record are summed (the
loss already averages over them) into one gradient per record, and only then clipped.

Why not ``torch.func.vmap(grad(...))`` over records: it is exact too, but its per-record convolution gradients
become grouped convolutions with one group per record, which ran about 400 images/s on an H100 (as slow as two
CPU cores). Opacus' hooks compute them with unfold + einsum.

The per-record gradients are clipped and summed in chunks (so a large Poisson batch fits in memory), each
record to its own clip (``C / k``, its unit holding ``k`` records: :meth:`DPSGDTrainer.record_clips`); noise of
standard deviation ``sigma * C`` is added once to the total by Opacus' :class:`~opacus.optimizers.DPOptimizer`,
exactly what the ledger's (sigma, q, steps) assumes. An exponential moving average (EMA) of the weights is
post-processing and free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig, ZeroGrads, backward, clip_tensor
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
        # sigma * m times the smallest record clip C / m: noise sigma * C (see DPSGDTrainer)
        self.optimizer = DPOptimizer(
            base,
            noise_multiplier=mechanism.noise_multiplier * groups.max_size,
            max_grad_norm=self.record_clip,
            expected_batch_size=round(self.expected_records),
            loss_reduction="sum",  # scaled by the expected batch below, once per step
            generator=self.noise,
            secure_mode=config.secure_mode,
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
    """The sum of a batch's per-record gradients, each summed over its K rows and clipped to its own clip.

    Runs in the driver's process and on DP-SGD workers alike (see :class:`~privsynth.generators.dpsgd.GhostClipping`).
    """

    loss: DrawsLoss
    draws: int
    chunk: int

    def worker_optimizer(self, module: nn.Module) -> Any:
        """What a worker passes as ``optimizer``: the trainable parameters and clearing their gradients."""
        return ZeroGrads([p for p in module.parameters() if p.requires_grad])

    def for_records(self, rows: np.ndarray) -> DrawsClipping | None:
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
        """Summed clipped per-record gradients (``optimizer.params`` order) and the loss sum; draws from 'draws'.

        ``clips[i]`` is record ``indices[i]``'s clip (:meth:`DPSGDTrainer.record_clips`).
        """
        optimizer.zero_grad(set_to_none=True)
        params = optimizer.params
        rng = generators["draws"]
        total = 0.0
        sums = [torch.zeros_like(p) for p in params]
        for start in range(0, len(indices), self.chunk):
            rows = indices[start : start + self.chunk]
            losses = self.loss(module, rows, rng)
            backward(losses.sum())
            per_record = []
            for p in params:
                rows_grads: torch.Tensor = p.grad_sample  # [b * K, ...], per row
                per_record.append(rows_grads.view(len(rows), self.draws, *rows_grads.shape[1:]).sum(dim=1))
                p.grad_sample = None
                p.grad = None
            for total_grad, clipped in zip(sums, clip_each(per_record, clips[start : start + self.chunk]), strict=True):
                total_grad += clipped
            total += float(losses.detach().sum())
        return sums, total


def clip_each(grads: list[torch.Tensor], clips: np.ndarray) -> list[torch.Tensor]:
    """Per parameter, the sum over records of ``grads`` (each ``[b, ...]``), record ``i`` clipped to ``clips[i]``.

    A record's norm is taken over all parameters together (Opacus' per-sample clipping).

    >>> weights, bias = torch.tensor([[3.0], [0.3]]), torch.tensor([[4.0], [0.4]])  # record norms 5 and 0.5
    >>> [round(t.item(), 4) for t in clip_each([weights, bias], np.array([1.0, 1.0]))]  # (0.6 + 0.3, 0.8 + 0.4)
    [0.9, 1.2]
    """
    if not grads or len(grads[0]) == 0:
        return [g.new_zeros(g.shape[1:]) for g in grads]
    norms = torch.stack([g.reshape(len(g), -1).norm(2, dim=1) for g in grads], dim=1).norm(2, dim=1)
    factor = (clip_tensor(clips, norms.device).to(norms.dtype) / (norms + 1e-6)).clamp(max=1.0)
    return [torch.einsum("i,i...", factor.to(g.dtype), g) for g in grads]


__all__ = ["DrawsClipping", "DrawsLoss", "MultiDrawDPSGDTrainer", "clip_each"]
