"""privsynth's multi-worker DP-SGD step against Opacus' own distributed optimizer, on two gloo processes.

Opacus' ``DistributedDPOptimizerFastGradientClipping`` adds the noise on rank 0 only, divides by each rank's
expected batch and averages the ranks with an all-reduce. privsynth's workers return their parts' clipped sums
and the driver adds the noise once and divides by the global expected batch. Given the same noise generator
state and the same batch parts, the two updates must agree.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from privsynth.engine import InProcessPool
from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
from privsynth.generators.dpsgd_workers import GradientWorker, RemoteGradients
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.randomness import Streams

RECORDS, RATE, SIGMA, CLIP, LR, STEPS = 300, 0.2, 0.7, 1.0, 0.02, 3


def _data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    x = torch.randn(RECORDS, 4)
    return model, x, x[:, :1] * 2.0 - x[:, 1:2]


def _batches() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [np.flatnonzero(rng.random(RECORDS) < RATE) for _ in range(STEPS)]


def _rank(rank: int, port: int, noise_state: torch.Tensor, out: str) -> None:
    """One Opacus DDP rank: its half of each batch, noise on rank 0 only (Opacus' own design)."""
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DistributedDPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model, x, y = _data()
        module = GradSampleModuleFastGradientClipping(
            model, batch_first=True, loss_reduction="mean", max_grad_norm=CLIP, use_ghost_clipping=True
        )
        generator = torch.Generator()
        generator.set_state(noise_state)
        optimizer = DistributedDPOptimizerFastGradientClipping(
            torch.optim.Adam(model.parameters(), lr=LR),
            noise_multiplier=SIGMA,
            max_grad_norm=CLIP,
            expected_batch_size=round(RATE * RECORDS) // 2,  # per rank
            loss_reduction="mean",
            generator=generator,
            secure_mode=True,  # privsynth's default (OptimConfig.secure_mode)
        )
        for batch in _batches():
            rows = np.array_split(batch, 2)[rank]
            optimizer.zero_grad(set_to_none=True)
            per_sample = ((module(x[rows]) - y[rows]) ** 2).squeeze(1)
            DPTensorFastGradientClipping(module, optimizer, per_sample, "mean").backward()
            optimizer.step()
        if rank == 0:
            torch.save([p.detach() for p in model.parameters()], out)
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_privsynth_workers_take_the_step_opacus_distributed_optimizer_takes(
    tmp_path: Path, reproducible_noise: int
) -> None:
    model, x, y = _data()

    def loss(module: nn.Module, rows: np.ndarray) -> torch.Tensor:
        return ((module(x[rows]) - y[rows]) ** 2).squeeze(1)

    trainer = DPSGDTrainer(
        model,
        loss=loss,
        groups=Groups.from_labels(None, RECORDS),
        mechanism=Mechanism(noise_multiplier=SIGMA, sample_rate=RATE, steps=STEPS),
        config=OptimConfig(batch_size=round(RATE * RECORDS), lr=LR, max_grad_norm=CLIP),
        streams=Streams.private(),
        stream=("tabular", "*"),
        units=RECORDS,
    )
    start = trainer.noise.get_state()
    initial = [p.detach().clone() for p in trainer.model.parameters()]

    class TwoWorkers:
        workers = 2

        def pool(self, factory: object, *args: object) -> InProcessPool:
            return InProcessPool([GradientWorker(*args), GradientWorker(*args)])  # type: ignore[arg-type]

    remote = RemoteGradients(trainer, TwoWorkers())  # type: ignore[arg-type]
    for batch in _batches():
        remote.step(batch)
    out = tmp_path / "opacus.pt"
    try:
        torch.multiprocessing.spawn(_rank, args=(_free_port(), start, str(out)), nprocs=2, join=True)
    except Exception as exc:  # a machine without loopback sockets cannot run gloo
        if "gloo" in str(exc).lower() or "connect" in str(exc).lower():
            pytest.skip(f"torch.distributed (gloo) cannot start here: {exc}")
        raise
    opacus = torch.load(out)
    for ours, theirs, before in zip(trainer.model.parameters(), opacus, initial, strict=True):
        assert torch.allclose(ours, theirs, atol=1e-5)
        assert not torch.allclose(ours, before, atol=1e-3)  # the steps moved every parameter
