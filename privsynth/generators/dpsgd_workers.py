"""DP-SGD on several workers: each computes the clipped gradient sum of its part of a batch; noise is added once.

A step on ``n`` workers is the single-process step (:class:`~privsynth.generators.dpsgd.DPSGDTrainer`) with
its backward pass split:

1. the driver draws the Poisson batch of units at the global rate ``q`` with its own sampler (never sent);
2. the batch's records are cut into ``n`` contiguous parts; each worker loads the current trainable weights,
   runs the per-record loss on its part and returns the sum of its records' clipped gradients (each record
   clipped to the clip the driver sends with it, ``C / k`` for a person of ``k`` records, exactly as in one
   process);
3. the driver adds the parts up, adds ``N(0, (sigma C)^2)`` once from the run's noise generator, divides by the
   expected batch and updates the weights.

Clipping is per record and the sum is linear, so a unit of privacy still moves the step's sum by at most ``C``
wherever its records were computed, and the noise is the same draw as in one process: the mechanism the ledger
recorded, for any worker count. This is what Opacus' ``DistributedDPOptimizer`` does with an all-reduce (noise
on rank 0 only, then the sum); here the sum is taken on the driver so the noise, the sampler and the
checkpointed state never leave it, and a checkpoint resumes on any worker count.

What a worker receives (once): the network, the loss with the records it reads, and fresh random generators for
the loss's own draws (column orders, diffusion times); no generator *state* is ever sent (:func:`pack`
replaces every ``torch.Generator`` with a new one and refuses numpy generators, seed sequences, trainers and DP
optimizers; the fit's ``Streams`` refuse to be pickled). Each step it receives the weights, its part's record
indices and one seed per loss generator. The seeds are HMAC-SHA256 of (step, part) under a key hashed from that
generator's state on the driver: one-way, so no number of them gives back the stream behind them (raw outputs
of an MT19937 stream would: its state is linear in its outputs, and the state comes from the fit's secret root).
Loss draws are training randomness, not privacy noise: the guarantee holds for any of them. The clips a worker
receives tell it how many records each of its batch's people has; a worker holds training records themselves,
so it is inside the trust boundary, as the driver is.

The driver checks each part's sum against the clips it sent (a part sums to at most the sum of its records'
clips) before adding it, so a faulty worker (a stale version, a wrong clip) cannot push a step's norm past what
its records' clips allow. It does not make a hostile worker safe: one could spend its whole part's bound on one
person, or send the records it holds anywhere. Workers must be trusted machines.
With workers, the weights (noisy iterates) leave the driver at every step, so the run checkpoints before its
first step: an interrupted run then resumes and replays the same noise instead of restarting with fresh noise
whose iterates workers have already seen.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from privsynth.engine.base import Engine
    from privsynth.generators.dpsgd import DPSGDTrainer

log = logging.getLogger(__name__)

LOSS_PURPOSES = frozenset({"orders", "draws"})
"""The trainer's generators a loss may draw from on a worker (reseeded each step); every other one, the DP noise
first, stays on the driver. A loss that captured another generator gets a fresh, unseeded one there."""


def _fresh_generator(device: str) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.seed()  # OS entropy until the driver's first seed
    return generator


def pack(module: torch.nn.Module, clipper: Any, generators: dict[str, torch.Generator]) -> bytes:
    """The worker's payload: the network, the clipper with its loss and records, and stand-ins for the generators.

    One pickle, so a generator the loss captured and the one of the same purpose in ``generators`` stay one
    object on the worker. Every ``torch.Generator`` is written as a fresh one: no stream state travels.
    """
    import cloudpickle
    from opacus.optimizers import DPOptimizer

    # a trainer is refused through what it holds: its DP optimizer, its numpy sampler and its streams
    refused = (np.random.Generator, np.random.BitGenerator, np.random.SeedSequence, np.random.RandomState, DPOptimizer)

    class _NoGeneratorState(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, torch.Generator):
                return _fresh_generator, (str(obj.device),)
            if isinstance(obj, refused):
                # a numpy generator pickles its seed sequence, whose entropy may be the fit's secret root
                raise TypeError(
                    f"a DP-SGD loss sent to workers captured a {type(obj).__name__}: random streams and the "
                    "trainer never leave this process; draw from the torch generator the loss is given"
                )
            return super().reducer_override(obj)

    sendable = {k: g for k, g in generators.items() if k in LOSS_PURPOSES}
    buffer = io.BytesIO()
    _NoGeneratorState(buffer, protocol=5).dump((module, clipper, sendable))
    return buffer.getvalue()


class GradientWorker:
    """Holds the network and its records (its shard, or all of them); computes clipped gradient sums of batch parts.

    Built empty, then :meth:`load` once with its payload (so each worker of one pool can get its own shard).
    """

    def __init__(self, payload: bytes | None = None) -> None:
        if payload is not None:
            self.load(payload)

    def load(self, payload: bytes) -> int:
        """Take the network, the clipping with its loss and records, and the generators; returns the record count."""
        import pickle

        # written by pack() in this run's driver
        self.module, self.clipper, self.generators = pickle.loads(payload)  # noqa: S301
        self.module.train()
        self.optimizer = self.clipper.worker_optimizer(self.module)
        loss = self.clipper.loss
        return len(loss) if hasattr(loss, "__len__") else -1

    def clipped_sum(
        self, weights: list[torch.Tensor], indices: np.ndarray, seeds: dict[str, int], clips: np.ndarray
    ) -> tuple[list[torch.Tensor], float]:
        """The summed gradients of records ``indices`` (positions in what it holds) at ``weights``, clipped.

        Record ``indices[i]`` is clipped to ``clips[i]``, its person's clip as the driver computed it.
        """
        if len(indices) == 0:  # none of this step's batch is in its shard
            return [torch.zeros_like(p, device="cpu") for p in self.optimizer.params], 0.0
        with torch.no_grad():
            for p, w in zip(self.optimizer.params, weights, strict=True):
                p.copy_(w)
        for purpose, seed in seeds.items():
            self.generators[purpose].manual_seed(seed)
        grads, total = self.clipper(self.module, indices, self.optimizer, self.generators, clips)
        return [g.detach().cpu() for g in grads], total


def seed_key(generator: torch.Generator) -> bytes:
    """A key for per-step seeds, hashed from a generator's state, which it leaves as it is.

    A resumed run, whose generators come back from the checkpoint, derives the same key and replays the same loss
    draws.
    """
    state = generator.get_state().numpy().tobytes()
    return hashlib.sha256(b"privsynth/dpsgd-worker-seeds\x00" + state).digest()


def step_seed(key: bytes, step: int, part: int) -> int:
    """A 63-bit seed for one part of one step: HMAC-SHA256, so seeds reveal nothing of ``key``.

    >>> step_seed(b"k" * 32, 3, 0) == step_seed(b"k" * 32, 3, 0) != step_seed(b"k" * 32, 3, 1)
    True
    """
    digest = hmac.new(key, f"{step}:{part}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def shard_starts(records: int, workers: int) -> np.ndarray:
    """First record of each worker's shard, and ``records`` last: contiguous shards of (nearly) equal size.

    >>> shard_starts(10, 3).tolist()
    [0, 4, 7, 10]
    """
    sizes = [len(part) for part in np.array_split(np.arange(records), workers)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


class RemoteGradients:
    """A trainer's workers on ``engine``: one step = parts to workers, sum here, :meth:`DPSGDTrainer.apply`.

    When the loss names its records (:class:`~privsynth.generators.record_loss.RecordLoss`, every built-in
    generator's), worker ``j`` receives only the records of shard ``j`` (:func:`shard_starts`) and, each step,
    the positions of the batch's records in its shard. A loss that is a plain closure goes whole to every worker,
    which then gets a slice of the batch's global indices.
    """

    def __init__(self, trainer: DPSGDTrainer, engine: Engine) -> None:
        self.trainer = trainer
        # no payload size in the log: it is an exact function of the number of records and their lengths
        log.info("DP-SGD on %d worker(s)", engine.workers)
        self._keys = {p: seed_key(g) for p, g in trainer.generators.items() if p in LOSS_PURPOSES}
        self.pool = engine.pool(GradientWorker)
        size = self.pool.size
        loss = trainer.clipper.loss
        self.starts: np.ndarray | None = None
        if hasattr(trainer.clipper, "for_records") and hasattr(loss, "subset"):
            self.starts = shard_starts(len(loss), size)
            clippers = [trainer.clipper.for_records(np.arange(a, b)) for a, b in itertools.pairwise(self.starts)]
        else:
            log.info("the DP-SGD loss does not name its records: every worker holds all of them")
            clippers = [trainer.clipper] * size
        payloads = [pack(trainer.module, c, trainer.generators) for c in clippers]
        held = self.pool.call("load", [(p,) for p in payloads])
        if self.starts is not None and held != np.diff(self.starts).tolist():
            # no counts in the message: the shard sizes add up to the exact number of training records
            raise RuntimeError("a DP-SGD worker does not hold the shard it was sent; check the cluster's privsynth")

    def _seeds(self, parts: int) -> list[dict[str, int]]:
        """One seed per part and loss generator for this step."""
        step = self.trainer.step
        return [{purpose: step_seed(key, step, i) for purpose, key in self._keys.items()} for i in range(parts)]

    def _parts(self, indices: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """What each worker computes, with its records' clips.

        Positions in its shard, or (a loss that does not name its records) slices of the global indices.
        """
        clips = self.trainer.record_clips(indices)
        if self.starts is None:
            pieces = np.array_split(np.arange(len(indices)), self.pool.size)
            return [(indices[piece], clips[piece]) for piece in pieces if piece.size]
        if indices.size and not (indices.min() >= 0 and indices.max() < self.starts[-1]):
            raise RuntimeError("a DP-SGD batch names a record outside the training set")
        owner = np.searchsorted(self.starts, indices, side="right") - 1
        return [(indices[owner == j] - self.starts[j], clips[owner == j]) for j in range(self.pool.size)]

    def step(self, indices: np.ndarray) -> float:
        """One DP-SGD step on the Poisson batch ``indices``; returns the batch's mean loss."""
        parts = self._parts(indices)
        weights = [p.detach().cpu() for p in self.trainer.optimizer.params]
        results = self.pool.call(
            "clipped_sum",
            [
                (weights, part, seeds, clips)
                for (part, clips), seeds in zip(parts, self._seeds(len(parts)), strict=True)
            ],
        )
        for (_, clips), (grads, _) in zip(parts, results, strict=True):
            self._check_clipped(grads, clips)
        summed = [torch.stack([r[0][j] for r in results]).sum(dim=0) for j in range(len(weights))]
        self.trainer.apply(summed)
        return sum(r[1] for r in results) / len(indices)

    def _check_clipped(self, grads: list[torch.Tensor], clips: np.ndarray) -> None:
        """A part's clipped gradients sum to a norm of at most the sum of its records' clips."""
        norm = float(torch.stack([(g.double() ** 2).sum() for g in grads]).sum().sqrt()) if grads else 0.0
        bound = float(np.sum(clips))
        if not norm <= bound * (1 + 1e-4) + 1e-6:
            raise RuntimeError(
                "a DP-SGD worker returned a gradient sum larger than its records' clipping allows; the step was "
                "not taken (check that every worker runs this privsynth version)"
            )

    def close(self) -> None:
        """Stop the workers (and free the records they held)."""
        self.pool.close()


__all__ = ["LOSS_PURPOSES", "GradientWorker", "RemoteGradients", "pack", "seed_key", "shard_starts", "step_seed"]
