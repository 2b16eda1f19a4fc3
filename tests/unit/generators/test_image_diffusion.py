"""The DPDM-style diffusion image model: tiny sizes train and sample on a CPU; per-record clipping is per record."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from privsynth.config import load_config
from privsynth.generators.dpsgd import Groups, OptimConfig
from privsynth.generators.dpsgd_draws import MultiDrawDPSGDTrainer
from privsynth.generators.image.diffusion import Denoiser, DiffusionConfig
from privsynth.generators.image.generator import ImageConfig, ImageGenerator
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.randomness import Streams
from tests.unit.generators.test_image import _fit_rgb, _rgb_corpus

ROOT = Path(__file__).resolve().parents[3]
TINY_DIFFUSION = ImageConfig(
    model="diffusion",
    diffusion=DiffusionConfig(
        width=8, multipliers=[1, 2], noise_multiplicity=2, sampling_steps=3, chunk=16, device="cpu", ema=0.9
    ),
    optim=OptimConfig(batch_size=16, epochs=1, lr=0.01, clipping="hooks"),
)


def test_tiny_diffusion_fits_samples_the_declared_size_and_is_deterministic(tmp_path: Path) -> None:
    corpus = _rgb_corpus(32, missing_every=8)
    generator = _fit_rgb(corpus, TINY_DIFFUSION, missing_rate=0.125)
    assert isinstance(generator.network_, Denoiser)
    pngs = generator.sample_pngs(corpus.records, streams=Streams.sampling(4))
    for png in (p for p in pngs if p is not None):
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (12, 10) and image.mode == "RGB"
    generator.save(tmp_path / "g")
    again = ImageGenerator.load(tmp_path / "g").sample_pngs(corpus.records, streams=Streams.sampling(4))
    assert again == pngs
    assert generator.sample_pngs(corpus.records, streams=Streams.sampling(5)) != pngs


def test_the_gpu_config_parses_and_names_the_diffusion_model() -> None:
    config = load_config(ROOT / "configs" / "fmnist-gpu.yaml")
    assert config.image.model == "diffusion"
    assert config.image.diffusion.noise_multiplicity > 1 and config.image.diffusion.ema > 0


def test_a_public_diffusion_checkpoint_of_another_shape_is_refused(tmp_path: Path) -> None:
    from privsynth.errors import ConfigError

    corpus = _rgb_corpus(16)
    _fit_rgb(corpus, TINY_DIFFUSION).save(tmp_path / "public")
    wider = TINY_DIFFUSION.diffusion.model_copy(update={"width": 16})
    with pytest.raises(ConfigError, match="does not fit"):
        _fit_rgb(corpus, TINY_DIFFUSION.model_copy(update={"pretrained": tmp_path / "public", "diffusion": wider}))


class _Scale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(self.w.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w(x)


def test_each_record_is_clipped_once_over_its_noise_draws() -> None:
    """A record's K rows are summed into one gradient before clipping (the unit of privacy is the record).

    Each record's loss is the mean over its K rows of -w * x with x = 1000: every record's gradient is -1000,
    clipped to norm C = 1. With sigma ~ 0 the noised sum over n records, divided by the expected batch n, is -1.
    Were the K rows clipped one by one, it would be -K.
    """
    n, k = 8, 4
    model = _Scale()
    x = torch.full((n, k), 1000.0)

    def loss(module: torch.nn.Module, rows: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        return -module(x[torch.as_tensor(rows)].reshape(-1, 1)).view(len(rows), k).mean(dim=1)

    trainer = MultiDrawDPSGDTrainer(
        model,
        loss=loss,
        draws=k,
        groups=Groups.from_labels(None, n),
        mechanism=Mechanism(noise_multiplier=1e-9, sample_rate=1.0, steps=1),
        config=OptimConfig(batch_size=n, max_sample_rate=1.0, epochs=1, lr=0.1),
        streams=Streams.private(),
        stream=("image", "x"),
        units=n,
        chunk=3,
    )
    captured: list[float] = []
    original = trainer.optimizer.original_optimizer.step

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        captured.append(float(model.w.weight.grad))
        return original(*args, **kwargs)

    trainer.optimizer.original_optimizer.step = spy  # type: ignore[method-assign]
    trainer.run()
    assert captured == [pytest.approx(-1.0, abs=1e-4)]  # sum of n clipped gradients (-1 each) / expected n


def _draws_trainer(steps: int) -> MultiDrawDPSGDTrainer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.SiLU(), torch.nn.Linear(8, 3))
    data = torch.randn(40, 3)
    k = 3

    def loss(module: torch.nn.Module, rows: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        clean = data[torch.as_tensor(rows)].repeat_interleave(k, dim=0)
        noisy = clean + torch.randn(clean.shape, generator=generator)  # the draws' randomness
        return ((module(noisy) - clean) ** 2).mean(dim=1).view(len(rows), k).mean(dim=1)

    return MultiDrawDPSGDTrainer(
        model,
        loss=loss,
        draws=k,
        groups=Groups.from_labels(None, len(data)),
        mechanism=Mechanism(noise_multiplier=0.8, sample_rate=0.3, steps=steps),
        config=OptimConfig(batch_size=12, epochs=1, lr=0.01),
        streams=Streams.private(),
        stream=("image", "x"),
        units=len(data),
        chunk=5,
        ema=0.9,
    )


def test_an_interrupted_multi_draw_run_resumes_exactly_from_its_checkpoint(
    tmp_path: Path, reproducible_noise: int
) -> None:
    """Long GPU runs are split by interruptions: weights, EMA, noise, sampler and the draws' RNG all resume."""
    full = _draws_trainer(steps=10)
    full.run()
    first = _draws_trainer(steps=10)
    first.run(until=4, checkpoint=tmp_path / "ckpt", checkpoint_every=4)
    resumed = _draws_trainer(steps=10)
    resumed.load_checkpoint(tmp_path / "ckpt")
    assert resumed.step == 4
    resumed.run()
    for name, value in full.averaged_state().items():
        assert torch.allclose(value, resumed.averaged_state()[name]), name
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(a, b)
    fresh = _draws_trainer(steps=10)
    state = first.state_dict()
    state["generators"] = {k: v for k, v in state["generators"].items() if k != "draws"}
    fresh.load_state_dict(state)  # everything but the draws' RNG: the run must then differ
    fresh.run()
    assert not all(torch.allclose(a, b) for a, b in zip(full.model.parameters(), fresh.model.parameters(), strict=True))


def test_the_gpu_config_network_trains_and_samples_at_28x28_on_a_cpu_at_tiny_scale() -> None:
    """configs/fmnist-gpu.yaml's U-Net (three levels at 28x28) runs end to end; only the sizes of the run shrink."""
    from privsynth.generators.tabular.codecs import CategoricalCodec
    from privsynth.generators.tabular.generator import TabularGenerator
    from privsynth.privacy.ledger import PrivacyLedger
    from privsynth.profile.model import ImageProfile, Source
    from tests.conftest import fit_context
    from tests.unit.generators.test_image import _rgb_corpus, _with

    gpu = load_config(ROOT / "configs" / "fmnist-gpu.yaml").image
    config = gpu.model_copy(
        update={
            "diffusion": gpu.diffusion.model_copy(update={"device": "cpu", "sampling_steps": 2}),
            "optim": gpu.optim.model_copy(update={"batch_size": 2, "epochs": 0.2}),
        }
    )
    corpus = _rgb_corpus(16)
    tabular = TabularGenerator()
    tabular.codecs_ = [CategoricalCodec("colour", categories=["red", "blue"], has_other=False, nullable=False)]
    profile = _with(ImageProfile(source=Source.PUBLIC, missing_rate=0.0, size=(28, 28), mode="L"))
    context = fit_context(
        corpus,
        profile=profile,
        ledger=PrivacyLedger(epsilon=50.0, delta=1e-5),
        noise_multiplier=1.0,
        upstream={"tabular": tabular},
    )
    generator = ImageGenerator(config).fit(corpus, columns=["photo"], context=context)
    arrays = generator.sample_arrays(corpus.records.head(3), streams=Streams.sampling(0))
    assert arrays.shape == (3, 1, 28, 28) and np.isfinite(arrays).all()


def test_label_dropout_trains_a_no_class_denoiser_that_guidance_uses() -> None:
    """With label dropout the network has one more class ("none"); guided sampling differs, and is deterministic."""
    corpus = _rgb_corpus(32)
    guided = TINY_DIFFUSION.diffusion.model_copy(update={"label_dropout": 0.5, "guidance": 2.0})
    generator = _fit_rgb(corpus, TINY_DIFFUSION.model_copy(update={"diffusion": guided}))
    assert isinstance(generator.network_, Denoiser)
    assert generator.network_.null_class == 2 and generator.network_.classes.num_embeddings == 3
    with_guidance = generator.sample_arrays(corpus.records.head(4), streams=Streams.sampling(1))
    assert np.array_equal(with_guidance, generator.sample_arrays(corpus.records.head(4), streams=Streams.sampling(1)))
    generator.config = generator.config.model_copy(update={"diffusion": guided.model_copy(update={"guidance": 0.0})})
    assert not np.allclose(with_guidance, generator.sample_arrays(corpus.records.head(4), streams=Streams.sampling(1)))


def test_hidden_rows_are_denoised_without_their_class() -> None:
    from privsynth.generators.image.diffusion import denoising_loss

    seen: list[torch.Tensor] = []

    def forward(x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append(labels)
        return torch.zeros_like(x)

    hidden = torch.tensor([[True, False], [False, True]])
    denoising_loss(
        forward,
        torch.zeros(2, 1, 4, 4),
        torch.tensor([0, 1]),
        torch.ones(2),
        torch.zeros(2, 2),
        torch.randn(2, 2, 1, 4, 4),
        sigma_data=0.5,
        hidden=hidden,
        null_class=7,
    )
    assert seen[0].tolist() == [7, 0, 1, 7]  # record-major rows: record 0's two draws, then record 1's


def test_guidance_without_label_dropout_is_refused() -> None:
    with pytest.raises(ValueError, match="label_dropout"):
        DiffusionConfig(guidance=1.0)
