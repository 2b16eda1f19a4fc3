"""DP-SGD with its clipped sums computed by several workers equals the single-process run (in-process workers).

The Ray engine runs the same workers as actors (tests/integration/test_engine_ray.py). Each test uses the
test-only reproducible noise so the two runs draw the same noise: what must not change with the worker count is
the mechanism (sampler, clip, noise) and therefore the weights, to float rounding.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from privsynth.engine import InProcessPool
from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
from privsynth.generators.dpsgd_draws import MultiDrawDPSGDTrainer
from privsynth.generators.dpsgd_workers import GradientWorker, pack
from privsynth.generators.record_loss import RecordLoss
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.randomness import Streams


class ShardedEngine:
    """A stand-in cluster: ``workers`` gradient workers in this process, each built from its own payload copy."""

    name = "test-shards"

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self.built: list[Any] = []

    @property
    def workers(self) -> int:
        return self._workers

    def pool(self, factory: Any, *args: Any) -> InProcessPool:
        workers = [factory(*args) for _ in range(self._workers)]
        self.built.extend(workers)
        return InProcessPool(workers)


def _problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    x = torch.randn(300, 4)
    return model, x, x[:, :1] * 2.0 - x[:, 1:2]


def _trainer(steps: int, *, people: bool = False, named: bool = False) -> DPSGDTrainer:
    """The test problem; ``named``: its loss names its records (a RecordLoss), so workers get only their shard."""
    model, x, y = _problem()

    def loss(module: nn.Module, rows: np.ndarray) -> torch.Tensor:
        return ((module(x[rows]) - y[rows]) ** 2).squeeze(1)

    def squared(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return ((module(xs) - ys) ** 2).squeeze(1)

    # 150 people of 1, 2 and 3 records in turn: records with different clips (C, C / 2, C / 3) share a shard and a
    # step, and the driver must send each its own
    labels = np.repeat(np.arange(150), np.tile([1, 2, 3], 50)) if people else None
    return DPSGDTrainer(
        model,
        loss=RecordLoss(squared, (x, y)) if named else loss,
        groups=Groups.from_labels(labels, 300),
        mechanism=Mechanism(noise_multiplier=0.7, sample_rate=0.2, steps=steps),
        config=OptimConfig(batch_size=60, lr=0.02),
        streams=Streams.private(),
        stream=("tabular", "*"),
        units=150 if people else 300,
        ema=0.9,
    )


def _close(a: DPSGDTrainer, b: DPSGDTrainer) -> bool:
    return all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("people", "named"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["records", "people-of-1-to-3", "records-sharded", "people-of-1-to-3-sharded"],
)
def test_two_and_three_workers_take_the_single_process_steps(
    reproducible_noise: int, people: bool, named: bool
) -> None:
    local = _trainer(12, people=people)
    local.run()
    for workers in (2, 3):
        spread = _trainer(12, people=people, named=named)
        spread.run(engine=ShardedEngine(workers))
        assert spread.step == local.step == 12
        assert _close(local, spread), f"{workers} workers"
        # the noise stream is the driver's alone: it stands exactly where the single-process run left it
        assert torch.equal(spread.noise.get_state(), local.noise.get_state())
        assert spread.optimizer.noise_multiplier == local.optimizer.noise_multiplier
        assert spread.optimizer.max_grad_norm == local.optimizer.max_grad_norm
        assert spread.optimizer.expected_batch_size == local.optimizer.expected_batch_size


def test_each_worker_holds_only_the_records_of_its_shard(reproducible_noise: int) -> None:
    """With a loss that names its records, worker j receives shard j's records and nothing of the others."""
    _, x, y = _problem()
    engine = ShardedEngine(3)
    trainer = _trainer(2, named=True)
    trainer.run(engine=engine)
    held = [worker.clipper.loss.columns for worker in engine.built]
    assert [len(xs) for xs, _ in held] == [100, 100, 100]
    for j, (xs, ys) in enumerate(held):
        assert torch.equal(xs, x[100 * j : 100 * (j + 1)]) and torch.equal(ys, y[100 * j : 100 * (j + 1)])
    # positive control: a plain closure cannot be cut, so every worker holds every record
    whole = ShardedEngine(2)
    _trainer(2).run(engine=whole)
    assert not any(hasattr(worker.clipper.loss, "columns") for worker in whole.built)


def test_a_record_loss_whose_computation_captured_its_records_is_refused() -> None:
    """Else cloudpickle would send every record with ``fn`` to every worker, whatever its shard."""
    _, x, _ = _problem()

    def careless(module: nn.Module, xs: torch.Tensor) -> torch.Tensor:
        return ((module(xs) - xs[:, :1]) ** 2).squeeze(1) + 0.0 * x.shape[1]

    with pytest.raises(ValueError, match="captures one of its record columns"):
        RecordLoss(careless, (x,))


def test_a_checkpoint_resumes_on_another_number_of_workers(tmp_path: Path, reproducible_noise: int) -> None:
    local = _trainer(10)
    local.run()
    first = _trainer(10)
    first.run(until=4, checkpoint=tmp_path / "ckpt", checkpoint_every=4, engine=ShardedEngine(3))
    resumed = _trainer(10)
    resumed.load_checkpoint(tmp_path / "ckpt")
    resumed.run(engine=ShardedEngine(2))
    assert _close(local, resumed)


def test_no_generator_state_and_no_streams_reach_a_worker(reproducible_noise: int) -> None:
    trainer = _trainer(3)
    orders = trainer.generator("orders")
    torch.rand(5, generator=orders)
    payload = pack(trainer.module, trainer.clipper, trainer.generators)
    _, _, generators = pickle.loads(payload)
    assert "noise" not in generators
    assert not torch.equal(generators["orders"].get_state(), orders.get_state())  # a fresh one, not a copy
    # a loss that captured the fit's streams cannot be sent: the root would replay the noise
    streams = Streams.private()

    def leaky(module: nn.Module, rows: np.ndarray) -> torch.Tensor:
        streams.numpy("x", "y", "z")
        return torch.zeros(len(rows))

    with pytest.raises(TypeError, match="never leave this process"):
        pack(trainer.module, type(trainer.clipper)(leaky), {})


def test_a_worker_reseeds_the_loss_draws_each_step_from_the_driver(reproducible_noise: int) -> None:
    """Column orders and diffusion times on a worker come from seeds the driver draws from its own stream."""
    model, x, y = _problem()
    drawn: list[torch.Tensor] = []

    def loss(module: nn.Module, rows: np.ndarray) -> torch.Tensor:
        drawn.append(torch.rand(2, generator=orders))
        return ((module(x[rows]) - y[rows]) ** 2).squeeze(1)

    trainer = DPSGDTrainer(
        model,
        loss=loss,
        groups=Groups.from_labels(None, 300),
        mechanism=Mechanism(noise_multiplier=0.7, sample_rate=0.2, steps=2),
        config=OptimConfig(batch_size=60),
        streams=Streams.private(),
        stream=("tabular", "*"),
        units=300,
    )
    orders = trainer.generator("orders")
    payload = pack(trainer.module, trainer.clipper, trainer.generators)
    worker = GradientWorker(payload)
    weights = [p.detach() for p in trainer.optimizer.params]
    rows = np.arange(10)
    clips = trainer.record_clips(rows)
    first, _ = worker.clipped_sum(weights, rows, {"orders": 7}, clips)
    again, _ = worker.clipped_sum(weights, rows, {"orders": 7}, clips)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert worker.generators["orders"].initial_seed() == 7


def test_multi_draw_training_on_workers_equals_one_process_except_for_the_draws(reproducible_noise: int) -> None:
    """Diffusion-style K draws per record: the same noise and mechanism; the draws' randomness may differ."""

    def build(steps: int) -> MultiDrawDPSGDTrainer:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 8), nn.SiLU(), nn.Linear(8, 3))
        data = torch.randn(60, 3)
        k = 3

        def loss(module: nn.Module, rows: np.ndarray, generator: torch.Generator) -> torch.Tensor:
            clean = data[torch.as_tensor(rows)].repeat_interleave(k, dim=0)
            noisy = clean + 0.0 * torch.randn(clean.shape, generator=generator)  # draws that change nothing here
            return ((module(noisy) - clean) ** 2).mean(dim=1).view(len(rows), k).mean(dim=1)

        return MultiDrawDPSGDTrainer(
            model,
            loss=loss,
            draws=k,
            groups=Groups.from_labels(None, len(data)),
            mechanism=Mechanism(noise_multiplier=0.8, sample_rate=0.3, steps=steps),
            config=OptimConfig(batch_size=18, epochs=1, lr=0.01),
            streams=Streams.private(),
            stream=("image", "x"),
            units=len(data),
            chunk=5,
        )

    local = build(8)
    local.run()
    spread = build(8)
    spread.run(engine=ShardedEngine(2))
    assert _close(local, spread)
    assert torch.equal(spread.noise.get_state(), local.noise.get_state())


def test_worker_seeds_are_one_way_and_the_key_leaves_the_generator_as_it_was() -> None:
    """Raw MT19937 outputs would give back the stream's state (and the root behind it); HMAC outputs do not."""
    from privsynth.generators.dpsgd_workers import seed_key, step_seed

    generator = Streams.private().torch("tabular", "*", "orders")
    before = generator.get_state().clone()
    key = seed_key(generator)
    assert torch.equal(generator.get_state(), before)  # hashing the state draws nothing
    seeds = {step_seed(key, step, part) for step in range(50) for part in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)
    raw = set(torch.randint(0, 2**62, (200,), generator=generator).tolist())
    assert not seeds & raw


def test_a_loss_that_captured_a_numpy_generator_is_not_sent() -> None:
    trainer = _trainer(2)
    rng = np.random.default_rng(0)  # a numpy generator pickles its seed sequence: possibly the fit's root

    def careless(module: nn.Module, rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(rng.random(len(rows)), dtype=torch.float32) * module(torch.zeros(len(rows), 4))[:, 0]

    with pytest.raises(TypeError, match="never leave this process"):
        pack(trainer.module, type(trainer.clipper)(careless), {})


def test_a_worker_returning_more_than_its_clip_allows_stops_the_run(reproducible_noise: int) -> None:
    class Inflating(GradientWorker):
        def clipped_sum(self, *args: Any) -> Any:
            grads, total = super().clipped_sum(*args)
            return [g * 100.0 for g in grads], total

    class Hostile(ShardedEngine):
        def pool(self, factory: Any, *args: Any) -> InProcessPool:
            return InProcessPool([GradientWorker(*args), Inflating(*args)])

    trainer = _trainer(5)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(RuntimeError, match="larger than its records' clipping allows"):
        trainer.run(engine=Hostile(2))
    assert trainer.step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_a_run_on_workers_checkpoints_before_its_first_step(tmp_path: Path, reproducible_noise: int) -> None:
    """Its iterates leave the driver from the first step: an interruption must resume, never restart afresh."""

    def interrupt(step: int, _value: float) -> None:
        raise KeyboardInterrupt

    trainer = _trainer(5)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(engine=ShardedEngine(2), checkpoint=tmp_path / "ckpt", on_step=interrupt)
    assert (tmp_path / "ckpt" / "state.json").is_file()
    local = _trainer(5)
    with pytest.raises(KeyboardInterrupt):
        local.run(checkpoint=tmp_path / "local", on_step=interrupt)
    assert not (tmp_path / "local").exists()  # in one process the iterates never left: a restart is fine


def test_a_run_on_workers_checkpoints_before_its_first_gradient_step_after_steps_spent_as_queries(
    tmp_path: Path, reproducible_noise: int
) -> None:
    """Steps spent as queries before DP-SGD's first step (the image's class means): the noisy results go out with
    the weights from then on, so a resume must bring them back, not redraw."""

    def interrupt(step: int, _value: float) -> None:
        raise KeyboardInterrupt

    trainer = _trainer(5)
    trainer.outputs["counts"] = trainer.gaussian_sum(torch.ones(300, 2), np.arange(300))
    trainer.step += 1
    with pytest.raises(KeyboardInterrupt):
        trainer.run(engine=ShardedEngine(2), checkpoint=tmp_path / "ckpt", on_step=interrupt)
    resumed = _trainer(5)
    resumed.load_checkpoint(tmp_path / "ckpt")
    assert resumed.step == 1  # the state before the first gradient step, queries counted
    assert torch.equal(resumed.outputs["counts"], trainer.outputs["counts"])  # the query's draw, not a new one
