from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.randomness import Streams

# Resume tests compare an interrupted run with an uninterrupted one, so both must draw the same noise: they use
# the recorded, test-only reproducible mode (the reproducible_noise fixture). In a real fit every root is fresh.


def tiny_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x = torch.randn(200, 4)
    y = x[:, :1] * 2.0
    return model, x, y


def make(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, rate: float = 0.2, ema: float | None = None
) -> DPSGDTrainer:
    def loss(module: nn.Module, rows: np.ndarray) -> torch.Tensor:
        return ((module(x[rows]) - y[rows]) ** 2).squeeze(1)

    return DPSGDTrainer(
        model,
        loss=loss,
        groups=Groups.from_labels(None, len(x)),
        mechanism=Mechanism(noise_multiplier=0.5, sample_rate=rate, steps=steps),
        config=OptimConfig(batch_size=40, lr=0.01),
        streams=Streams.private(),
        stream=("tabular", "*"),
        units=len(x),
        ema=ema,
    )


def test_groups_sample_whole_people() -> None:
    groups = Groups.from_labels(np.array(["a", "b", "a", "c", "b", "a"]), 6)
    assert groups.count == 3 and groups.max_size == 3
    assert sorted(groups.records(np.array([0])).tolist()) == [0, 2, 5]
    assert sorted(groups.records(np.array([1, 2])).tolist()) == [1, 3, 4]
    assert groups.records(np.array([], dtype=int)).size == 0


def test_resume_gives_the_same_model_as_an_uninterrupted_run(reproducible_noise: int) -> None:
    model, x, y = tiny_problem()
    full = make(model, x, y, steps=20)
    full.run()
    model2, _, _ = tiny_problem()
    first = make(model2, x, y, steps=20)
    first.run(until=8)
    state = first.state_dict()
    model3, _, _ = tiny_problem()
    resumed = make(model3, x, y, steps=20)
    resumed.load_state_dict(state)
    resumed.run()
    for a, b in zip(full.module._module.parameters(), resumed.module._module.parameters(), strict=True):
        assert torch.allclose(a, b)


def test_empty_batches_still_take_a_noisy_step() -> None:
    model, x, y = tiny_problem()
    trainer = make(model, x, y, steps=30, rate=1e-4)  # nearly every Poisson batch is empty
    before = [p.detach().clone() for p in model.parameters()]
    seen: list[float] = []
    trainer.run(on_step=lambda _step, value: seen.append(value))
    assert trainer.step == 30
    assert sum(np.isnan(v) for v in seen) >= 25
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_checkpoint_files_resume_exactly(tmp_path, reproducible_noise: int) -> None:
    model, x, y = tiny_problem()
    full = make(model, x, y, steps=20)
    full.run()
    model2, _, _ = tiny_problem()
    first = make(model2, x, y, steps=20)
    first.run(until=10, checkpoint=tmp_path / "ckpt", checkpoint_every=5)
    assert not list(tmp_path.rglob("*.pt")) and (tmp_path / "ckpt" / "state.safetensors").exists()
    model3, _, _ = tiny_problem()
    resumed = make(model3, x, y, steps=20)
    resumed.load_checkpoint(tmp_path / "ckpt")
    assert resumed.step == 10
    resumed.run()
    for a, b in zip(full.module._module.parameters(), resumed.module._module.parameters(), strict=True):
        assert torch.allclose(a, b)


def test_the_weights_average_follows_every_step_and_resumes_from_a_checkpoint(
    tmp_path, reproducible_noise: int
) -> None:
    model, x, y = tiny_problem()
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer = make(model, x, y, steps=3, ema=0.5)
    seen = []
    trainer.run(on_step=lambda _s, _v: seen.append({k: v.detach().clone() for k, v in model.named_parameters()}))
    expected = start
    for weights in seen:  # ema <- ema + (1 - decay) * (weights - ema), after every step
        expected = {k: 0.5 * expected[k] + 0.5 * weights[k] for k in expected}
    averaged = trainer.averaged_state()
    assert all(torch.allclose(averaged[k], expected[k]) for k in expected)
    assert not torch.equal(averaged["0.weight"], model.state_dict()["0.weight"])

    full_model, _, _ = tiny_problem()
    full = make(full_model, x, y, steps=12, ema=0.9)
    full.run()
    part_model, _, _ = tiny_problem()
    first = make(part_model, x, y, steps=12, ema=0.9)
    first.run(until=5, checkpoint=tmp_path / "ckpt", checkpoint_every=5)
    resumed_model, _, _ = tiny_problem()
    resumed = make(resumed_model, x, y, steps=12, ema=0.9)
    resumed.load_checkpoint(tmp_path / "ckpt")
    resumed.run()
    a, b = full.averaged_state(), resumed.averaged_state()
    assert all(torch.allclose(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\)"):
        make(tiny_problem()[0], x, y, steps=2, ema=1.0)


def test_two_runs_draw_different_noise_unless_the_test_switch_is_on() -> None:
    model, x, y = tiny_problem()
    one = make(model, x, y, steps=5)
    one.run()
    model2, _, _ = tiny_problem()
    two = make(model2, x, y, steps=5)
    two.run()
    assert not torch.allclose(one.model[0].weight, two.model[0].weight)  # fresh OS entropy per run


def test_a_person_with_m_records_moves_the_noised_sum_by_at_most_c_and_noise_is_sigma_c() -> None:
    # Per-person clipping through the trainer: 100 people x 2 records; each record is clipped to C / m.
    _, x, y = tiny_problem()
    people = Groups.from_labels(np.repeat(np.arange(100), 2), 200)
    c = 2.0

    def trainer(sigma: float) -> DPSGDTrainer:
        return DPSGDTrainer(
            tiny_problem()[0],
            loss=lambda module, rows: ((module(x[rows]) - y[rows]) ** 2).squeeze(1),
            groups=people,
            mechanism=Mechanism(noise_multiplier=sigma, sample_rate=0.5, steps=1),
            config=OptimConfig(batch_size=40, lr=0.01, max_grad_norm=c),
            streams=Streams.private(),
            stream=("tabular", "*"),
            units=people.count,
        )

    quiet = trainer(1e-9)
    assert quiet.record_clip == pytest.approx(c / 2)
    assert quiet.optimizer.max_grad_norm == pytest.approx(c / 2)
    # Opacus scales its noise by the record clip, so the trainer hands it sigma * m: the noise is sigma * C
    assert quiet.optimizer.noise_multiplier * quiet.optimizer.max_grad_norm == pytest.approx(1e-9 * c)
    huge = torch.full((2, 5), 1e6)  # one person's two records, aligned and far above the clip
    assert float(quiet.gaussian_sum(huge, np.array([0, 1])).norm()) == pytest.approx(c, rel=1e-6)
    loud = trainer(3.0)
    noise = torch.stack([loud.gaussian_sum(torch.zeros(2, 400), np.array([0, 1])) for _ in range(20)])
    assert float(noise.std()) == pytest.approx(3.0 * c, rel=0.05)


def test_the_record_clip_comes_from_the_schemas_bound_not_from_the_data(demo_dir) -> None:
    # Found in review: max_size was the largest group in the data, so removing the only person with two records
    # changed every other record's clip (C / 2 -> C) and the noise scaling: neighbours were not neighbours.
    from privsynth.data.corpus import read_corpus
    from privsynth.generators.dpsgd import unit_groups
    from privsynth.privacy.contribution import bound_contributions

    raw = read_corpus(demo_dir)
    corpus = raw.with_records(bound_contributions(raw.records, raw.schema, rng=np.random.default_rng(0)))
    assert corpus.schema.max_records_per_entity == 2
    singles = corpus.records.drop_duplicates(corpus.schema.entity)  # nobody has two records any more
    assert unit_groups(corpus).max_size == unit_groups(corpus.with_records(singles)).max_size == 2
    with pytest.raises(ValueError, match="bound contributions"):
        Groups.from_labels(np.array(["a", "a", "a"]), 3, max_size=2)


def _people_trainer(model: nn.Module, x: torch.Tensor, labels: np.ndarray, c: float, *, bound: int = 2) -> DPSGDTrainer:
    people = Groups.from_labels(labels, len(labels), max_size=bound)
    return DPSGDTrainer(
        model,
        loss=lambda module, rows: (module(x[rows]) * 1e6).squeeze(1),  # every gradient far above any clip
        groups=people,
        mechanism=Mechanism(noise_multiplier=1e-9, sample_rate=0.5, steps=1),
        config=OptimConfig(batch_size=4, lr=0.01, max_grad_norm=c),
        streams=Streams.private(),
        stream=("tabular", "*"),
        units=people.count,
    )


def _clipped_norm(trainer: DPSGDTrainer, rows: np.ndarray) -> float:
    grads, _ = trainer.clipper(trainer.module, rows, trainer.optimizer, trainer.generators, trainer.record_clips(rows))
    return float(torch.stack([(g**2).sum() for g in grads]).sum().sqrt())


def test_each_person_moves_the_clipped_sum_by_at_most_c_whatever_their_record_count() -> None:
    # A record is clipped to C over its own person's record count: a person of one record contributes up to C
    # (it was C / m for everyone, half the signal at the same noise where m = 2), a person of two records up to
    # C in all. Through Opacus' ghost clipping, as a fit runs it.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1))
    x = torch.ones(3, 4)  # identical records: their gradients are aligned, so a sum reaches its clips' sum
    c = 2.0
    trainer = _people_trainer(model, x, np.array(["a", "a", "b"]), c)
    assert trainer.record_clips(np.array([0, 1, 2])).tolist() == [c / 2, c / 2, c]
    assert _clipped_norm(trainer, np.array([0, 1])) == pytest.approx(c, rel=1e-4)  # person a: two records
    assert _clipped_norm(trainer, np.array([2])) == pytest.approx(c, rel=1e-4)  # person b: one record, clip C
    assert _clipped_norm(trainer, np.array([0])) == pytest.approx(c / 2, rel=1e-4)
    assert _clipped_norm(trainer, np.array([0, 1, 2])) == pytest.approx(2 * c, rel=1e-4)


def test_removing_a_person_changes_no_one_elses_clip() -> None:
    # Neighbouring datasets stay neighbours (DESIGN section 2): a record's clip reads its own person's records only.
    # Had the clip come from the data's largest group, removing "a" (the only person with two records) would move
    # b's and c's clips; had it come from the batch, it would depend on who else was sampled.
    labels = np.array(["a", "b", "a", "c"])
    full = Groups.from_labels(labels, 4, max_size=2)
    without_a = Groups.from_labels(labels[[1, 3]], 2, max_size=2)
    assert full.unit_sizes.tolist() == [2, 1, 2, 1]
    assert without_a.unit_sizes.tolist() == full.unit_sizes[[1, 3]].tolist() == [1, 1]
    assert Groups.from_labels(None, 3, max_size=2).unit_sizes.tolist() == [1, 1, 1]
    canaries = full.with_units(2, 2)  # the one-run audit's added units of m copies: C / m each, C in all
    assert canaries.unit_sizes.tolist() == [2, 1, 2, 1, 2, 2, 2, 2]


@pytest.mark.parametrize("chunk", [1, 2, 3])  # 2: person a's records and b's in different chunks; 3: one chunk
def test_multi_draw_clipping_gives_each_record_its_own_persons_clip(chunk: int) -> None:
    # The diffusion trainer clips each record's gradient summed over its K rows; the same rule: C / k per record.
    from privsynth.generators.dpsgd_draws import MultiDrawDPSGDTrainer

    torch.manual_seed(0)
    k, c = 3, 2.0
    x = torch.ones(3, 4)

    def loss(module: nn.Module, rows: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        out = module(x[torch.as_tensor(rows)].repeat_interleave(k, dim=0)) * 1e6
        return out.view(len(rows), k).mean(dim=1)

    people = Groups.from_labels(np.array(["a", "a", "b"]), 3, max_size=2)
    trainer = MultiDrawDPSGDTrainer(
        nn.Sequential(nn.Linear(4, 1)),
        loss=loss,
        draws=k,
        groups=people,
        mechanism=Mechanism(noise_multiplier=1e-9, sample_rate=0.5, steps=1),
        config=OptimConfig(batch_size=4, lr=0.01, max_grad_norm=c),
        streams=Streams.private(),
        stream=("image", "x"),
        units=people.count,
        chunk=chunk,
    )
    assert _clipped_norm(trainer, np.array([2])) == pytest.approx(c, rel=1e-4)
    assert _clipped_norm(trainer, np.array([0, 1])) == pytest.approx(c, rel=1e-4)
    assert _clipped_norm(trainer, np.array([0, 1, 2])) == pytest.approx(2 * c, rel=1e-4)


def test_secure_noise_is_opacus_secure_mode_draw_for_draw() -> None:
    # The noise privsynth adds itself (image class means) and the noise Opacus' optimizers add must come from one
    # sampler: with secure_mode, robust to the floating-point attack on a single draw's low bits (Jin et al. 2022).
    from opacus.optimizers.optimizer import _generate_noise

    from privsynth.generators.dpsgd import gaussian_noise

    ours, theirs = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    drawn = gaussian_noise(2.0, (50, 4), ours, secure=True)
    expected = _generate_noise(std=2.0, reference=torch.zeros(50, 4), generator=theirs, secure_mode=True)
    assert torch.equal(drawn, expected)
    assert float(gaussian_noise(2.0, (20000,), ours, secure=True).std()) == pytest.approx(2.0, rel=0.03)
    plain = _generate_noise(std=2.0, reference=torch.zeros(3), generator=torch.Generator().manual_seed(3))
    assert torch.equal(gaussian_noise(2.0, (3,), torch.Generator().manual_seed(3), secure=False), plain)


@pytest.mark.parametrize("secure", [True, False])
def test_the_ledger_records_whether_dp_sgd_noise_is_drawn_in_secure_mode(secure: bool) -> None:
    from privsynth.generators.dpsgd import spend_once
    from privsynth.privacy.ledger import PrivacyLedger

    model, x, y = tiny_problem()
    trainer = DPSGDTrainer(
        model,
        loss=lambda module, rows: ((module(x[rows]) - y[rows]) ** 2).squeeze(1),
        groups=Groups.from_labels(None, len(x)),
        mechanism=Mechanism(noise_multiplier=1.0, sample_rate=0.2, steps=3),
        config=OptimConfig(batch_size=40, secure_mode=secure),
        streams=Streams.private(),
        stream=("tabular", "*"),
        units=len(x),
    )
    assert trainer.optimizer.secure_mode is secure  # what Opacus draws with
    ledger = PrivacyLedger(epsilon=50, delta=1e-5)
    spend_once(
        ledger,
        "tabular",
        trainer.mechanism,
        note="DP-SGD",
        checkpoint=None,
        streams=Streams.private(),
        secure_mode=trainer.config.secure_mode,
    )
    (entry,) = ledger.entries
    assert ("secure_mode on" in entry.note) is secure
    assert ("secure_mode off" in entry.note) is not secure


def test_a_loss_that_is_not_one_value_per_record_is_refused_before_clipping() -> None:
    # A [b, 1] loss would broadcast against the [b] clips into a b x b coefficient: a wrong clip, silently.
    model, x, _ = tiny_problem()
    trainer = DPSGDTrainer(
        model,
        loss=lambda module, rows: module(x[rows]),  # [b, 1]
        groups=Groups.from_labels(None, len(x)),
        mechanism=Mechanism(noise_multiplier=1.0, sample_rate=0.2, steps=1),
        config=OptimConfig(batch_size=40),
        streams=Streams.private(),
        stream=("tabular", "*"),
        units=len(x),
    )
    with pytest.raises(ValueError, match="one loss per record, a vector as long as the batch"):
        trainer._step(np.arange(5))


def test_units_that_leave_a_record_out_are_refused_rather_than_given_an_infinite_clip() -> None:
    broken = Groups(order=np.array([0, 0]), starts=np.array([0, 1, 2]), max_size=1)  # record 1 in no unit
    with pytest.raises(ValueError, match="do not cover every record exactly once"):
        _ = broken.unit_sizes


def test_a_checkpoint_set_aside_by_a_writer_killed_mid_replacement_is_resumed_not_refused(tmp_path: Path) -> None:
    # atomic_dir renames the old checkpoint aside, then the new one in: a kill between the two leaves no checkpoint
    # but the old one, complete, beside it. The "drawn once" rule must resume from it, not refuse the run.
    import subprocess
    import sys

    from privsynth.generators.dpsgd import spend_once
    from privsynth.privacy.ledger import PrivacyLedger
    from privsynth.workdir import mark_saved

    ledger = PrivacyLedger(epsilon=50, delta=1e-5)
    mechanism = Mechanism(noise_multiplier=1.0, sample_rate=0.2, steps=3)
    streams = Streams.private()

    def spend() -> bool:
        return spend_once(
            ledger, "tabular", mechanism, note="DP-SGD", checkpoint=checkpoint, streams=streams, secure_mode=False
        )

    checkpoint = tmp_path / "tabular-checkpoint"
    assert spend() is False  # the first spend
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text("{}")
    mark_saved(checkpoint)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    checkpoint.rename(tmp_path / f".tabular-checkpoint.old-{int(dead.stdout)}")
    assert spend() is True and (checkpoint / "state.json").is_file()
    assert len(ledger.entries) == 1
