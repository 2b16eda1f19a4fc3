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

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig, backward
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

    def _step(self, indices: np.ndarray) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        params = [p for p in self.model.parameters() if p.requires_grad]
        total, count = 0.0, 0
        for start in range(0, len(indices), self.chunk):
            rows = indices[start : start + self.chunk]
            losses = self.draws_loss(self.module, rows, self.rng)
            backward(losses.sum())
            for p in params:
                rows_grads: torch.Tensor = p.grad_sample  # type: ignore[attr-defined]  # [b * K, ...], per row
                per_record = rows_grads.view(len(rows), self.k, *rows_grads.shape[1:]).sum(dim=1)
                p.grad_sample = per_record  # type: ignore[attr-defined]
            self.optimizer.clip_and_accumulate()  # adds this chunk's clipped per-record gradients to summed_grad
            for p in params:
                p.grad_sample = None  # type: ignore[attr-defined]
                p.grad = None
            total += float(losses.detach().sum())
            count += len(rows)
        self._finish_step()
        return total / max(count, 1)


__all__ = ["DrawsLoss", "MultiDrawDPSGDTrainer"]
