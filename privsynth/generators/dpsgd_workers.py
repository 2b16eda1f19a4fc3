"""DP-SGD on several workers: each computes the clipped gradient sum of its part of a batch; noise is added once.

A step on ``n`` workers is the single-process step (:class:`~privsynth.generators.dpsgd.DPSGDTrainer`) with
its backward pass split:

1. the driver draws the Poisson batch of units at the global rate ``q`` with its own sampler (never sent);
2. the batch's records are cut into ``n`` contiguous parts; each worker loads the current trainable weights,
   runs the per-record loss on its part and returns the sum of its records' clipped gradients (each record
   clipped to ``C / m``, exactly as in one process);
3. the driver adds the parts up, adds ``N(0, (sigma C)^2)`` once from the run's noise generator, divides by the
   expected batch and updates the weights.

Clipping is per record and the sum is linear, so a unit of privacy still moves the step's sum by at most ``C``
wherever its records were computed, and the noise is the same draw as in one process: the mechanism the ledger
recorded, for any worker count. This is what Opacus' ``DistributedDPOptimizer`` does with an all-reduce (noise
on rank 0 only, then the sum); here the sum is taken on the driver so the noise, the sampler and the
checkpointed state never leave it, and a checkpoint resumes on any worker count.

What a worker receives (once): the network, the loss with the records it reads, and fresh random generators for
the loss's own draws (column orders, diffusion times); no generator *state* is ever sent (:func:`pack`
replaces every ``torch.Generator`` with a new one, and the fit's ``Streams`` refuse to be pickled). Each step it
receives the weights, its part's record indices and one seed per loss generator, drawn by the driver from that
generator's checkpointed stream. Loss draws are training randomness, not privacy noise: the guarantee holds for
any of them.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from privsynth.engine.base import Engine
    from privsynth.generators.dpsgd import DPSGDTrainer

log = logging.getLogger(__name__)

NOISE_PURPOSES = frozenset({"noise"})
"""Generators that never leave the driver, not even reseeded (the DP noise)."""


def _fresh_generator(device: str) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.seed()  # OS entropy until the driver's first seed
    return generator


def pack(module: torch.nn.Module, clipper: Any, generators: dict[str, torch.Generator], record_clip: float) -> bytes:
    """The worker's payload: the network, the clipper with its loss and records, and stand-ins for the generators.

    One pickle, so a generator the loss captured and the one of the same purpose in ``generators`` stay one
    object on the worker. Every ``torch.Generator`` is written as a fresh one: no stream state travels.
    """
    import cloudpickle

    class _NoGeneratorState(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, torch.Generator):
                return _fresh_generator, (str(obj.device),)
            return super().reducer_override(obj)

    sendable = {k: g for k, g in generators.items() if k not in NOISE_PURPOSES}
    buffer = io.BytesIO()
    _NoGeneratorState(buffer, protocol=5).dump((module, clipper, sendable, record_clip))
    return buffer.getvalue()


class GradientWorker:
    """Holds the network and the records; computes clipped gradient sums of batch parts."""

    def __init__(self, payload: bytes) -> None:
        import pickle

        # written by pack() in this run's driver
        self.module, self.clipper, self.generators, record_clip = pickle.loads(payload)  # noqa: S301
        self.module.train()
        self.optimizer = self.clipper.worker_optimizer(self.module, record_clip)

    def clipped_sum(
        self, weights: list[torch.Tensor], indices: np.ndarray, seeds: dict[str, int]
    ) -> tuple[list[torch.Tensor], float]:
        """The summed clipped gradients of records ``indices`` at ``weights``, and their loss sum."""
        with torch.no_grad():
            for p, w in zip(self.optimizer.params, weights, strict=True):
                p.copy_(w)
        for purpose, seed in seeds.items():
            self.generators[purpose].manual_seed(seed)
        grads, total = self.clipper(self.module, indices, self.optimizer, self.generators)
        return [g.detach().cpu() for g in grads], total


class RemoteGradients:
    """A trainer's workers on ``engine``: one step = parts to workers, sum here, :meth:`DPSGDTrainer.apply`."""

    def __init__(self, trainer: DPSGDTrainer, engine: Engine) -> None:
        self.trainer = trainer
        payload = pack(trainer.module, trainer.clipper, trainer.generators, trainer.record_clip)
        log.info("DP-SGD on %d worker(s): %.1f MB sent to each once", engine.workers, len(payload) / 1e6)
        self.pool = engine.pool(GradientWorker, payload)

    def _seeds(self, parts: int) -> list[dict[str, int]]:
        """One seed per part and loss generator, from the driver's (checkpointed) generator of that purpose."""
        drawn = {
            purpose: torch.randint(0, 2**62, (parts,), generator=g, device=g.device).tolist()
            for purpose, g in self.trainer.generators.items()
            if purpose not in NOISE_PURPOSES
        }
        return [{purpose: int(values[i]) for purpose, values in drawn.items()} for i in range(parts)]

    def step(self, indices: np.ndarray) -> float:
        """One DP-SGD step on the Poisson batch ``indices``; returns the batch's mean loss."""
        parts = [part for part in np.array_split(indices, self.pool.size) if part.size]
        weights = [p.detach().cpu() for p in self.trainer.optimizer.params]
        results = self.pool.call(
            "clipped_sum", [(weights, part, seeds) for part, seeds in zip(parts, self._seeds(len(parts)), strict=True)]
        )
        grads = [torch.stack([r[0][j] for r in results]).sum(dim=0) for j in range(len(weights))]
        self.trainer.apply(grads)
        return sum(r[1] for r in results) / len(indices)

    def close(self) -> None:
        """Stop the workers (and free the records they held)."""
        self.pool.close()


__all__ = ["GradientWorker", "RemoteGradients", "pack"]
