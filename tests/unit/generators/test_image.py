"""The DP image generator: tiny configs train and sample in seconds, at the declared size and mode."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from privsynth.config import load_config
from privsynth.data.corpus import Corpus, read_corpus
from privsynth.data.images import encode_png
from privsynth.data.schema import schema_from_dict
from privsynth.errors import ConfigError
from privsynth.generators.dpsgd import OptimConfig
from privsynth.generators.image.basis import decode, encode
from privsynth.generators.image.generator import ImageConfig, ImageGenerator, choose_conditions
from privsynth.generators.tabular.codecs import BooleanCodec, CategoricalCodec
from privsynth.generators.tabular.generator import TabularGenerator
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.randomness import Streams
from privsynth.profile.model import ImageProfile, Profile, Source
from privsynth.sampling import write_synthetic
from privsynth.synthesizer import Synthesizer
from tests.conftest import fit_context

SMALL = Path(__file__).resolve().parents[3] / "configs" / "small.yaml"
TINY = ImageConfig(keep=4, rank=2, optim=OptimConfig(batch_size=16, epochs=1, lr=0.01))


@pytest.fixture(scope="module")
def scans(demo_dir: Path) -> Corpus:
    corpus = read_corpus(demo_dir)
    keep = ["record_id", "diagnosis", "scan"]
    schema = corpus.schema.model_copy(update={"columns": {k: corpus.schema.columns[k] for k in keep}, "entity": None})
    return Corpus(records=corpus.records[keep].copy(), schema=schema, root=corpus.root)


@pytest.fixture(scope="module")
def fitted(scans: Corpus) -> Synthesizer:
    return Synthesizer(load_config(SMALL)).fit(scans, epsilon=4.0)


def test_the_dct_basis_is_fixed_maths_that_inverts_on_kept_frequencies(rng: np.random.Generator) -> None:
    smooth = np.clip(rng.normal(size=(3, 1, 8, 8)), -1, 1).astype(np.float32)
    kept = decode(encode(smooth, 8), 1, 8, 8, 8)
    assert np.allclose(kept, smooth, atol=1e-5)  # every coefficient kept: exact inverse
    assert encode(smooth, 3).shape == (3, 9)


def test_tiny_config_fits_and_samples_pngs_at_the_declared_size_and_mode(fitted: Synthesizer, tmp_path: Path) -> None:
    assert [e.stage for e in fitted.ledger_.entries][-1] == Stage.IMAGE
    assert "image:scan" in fitted.generator_names and fitted.skipped_ == {}
    out = write_synthetic(fitted, tmp_path / "synth", n=40, seed=2)
    corpus = read_corpus(out)  # validated like any real corpus: relative paths inside the root
    paths = corpus.records["scan"].dropna()
    assert len(paths) > 20 and all(str(p).startswith("images/scan/") for p in paths)
    for value in paths:
        with Image.open(out / value) as image:
            assert image.size == (32, 32) and image.mode == "L" and image.format == "PNG"


def test_sampling_is_deterministic_for_a_seed_and_survives_save_load(fitted: Synthesizer, tmp_path: Path) -> None:
    a = fitted.sample(25, seed=9)
    b = fitted.sample(25, seed=9)
    c = fitted.sample(25, seed=10)
    assert a["scan"].tolist() == b["scan"].tolist()
    assert a["scan"].tolist() != c["scan"].tolist()
    fitted.save(tmp_path / "model")
    again = Synthesizer.load(tmp_path / "model").sample(25, seed=9)
    assert again["scan"].tolist() == a["scan"].tolist()


def test_the_default_condition_is_chosen_from_public_information(fitted: Synthesizer) -> None:
    image = fitted.images_["scan"]
    assert [c.name for c in image.conditions_] == ["diagnosis"]  # declared domain, the largest that fits
    codecs = [
        CategoricalCodec("a", categories=["x", "y"], has_other=False, nullable=False),
        BooleanCodec("b", nullable=False),
    ]
    schema = schema_from_dict(
        {"key": "id", "columns": {"id": {"kind": "key"}, "a": {"kind": "categorical"}, "b": {"kind": "boolean"}}},
        source="t",
    )
    with pytest.raises(ConfigError, match="not categorical or boolean"):
        choose_conditions(schema, codecs, ImageConfig(condition_on=["nope"]))
    with pytest.raises(ConfigError, match="max_classes"):
        choose_conditions(schema, codecs, ImageConfig(condition_on=["a", "b"], max_classes=2))
    assert [c.name for c in choose_conditions(schema, codecs, ImageConfig(condition_on=["a"]))] == ["a"]


def _rgb_corpus(n: int, *, missing_every: int = 0) -> Corpus:
    schema = schema_from_dict(
        {
            "key": "id",
            "columns": {
                "id": {"kind": "key"},
                "colour": {"kind": "categorical", "domain": ["red", "blue"], "nullable": False},
                "photo": {"kind": "image", "image_size": [12, 10], "image_mode": "RGB"},
            },
        },
        source="t",
    )
    colours, photos = [], []
    for i in range(n):
        colour = "red" if i % 2 else "blue"
        pixels = np.zeros((10, 12, 3), dtype=np.uint8)
        pixels[..., 0 if colour == "red" else 2] = 220
        colours.append(colour)
        photos.append(None if missing_every and i % missing_every == 0 else encode_png(Image.fromarray(pixels)))
    records = pd.DataFrame({"id": [str(i) for i in range(n)], "colour": colours, "photo": photos}, dtype=object)
    return Corpus(records=records, schema=schema, root=Path())


def _with(image: ImageProfile) -> Profile:
    """A DP profile holding only the image column's profile (what the image generator reads)."""
    return Profile(
        internal=False,
        records=64,
        unit_of_privacy="record",
        max_records_per_entity=1,
        noise_multiplier=1.0,
        queries=1,
        columns={"photo": image},
    )


def _fit_rgb(corpus: Corpus, config: ImageConfig = TINY, missing_rate: float = 0.0) -> ImageGenerator:
    codec = CategoricalCodec("colour", categories=["red", "blue"], has_other=False, nullable=False)
    ledger = PrivacyLedger(epsilon=50.0, delta=1e-5)
    profile = ImageProfile(source=Source.PUBLIC, missing_rate=missing_rate, size=(12, 10), mode="RGB")
    tabular = TabularGenerator()
    tabular.codecs_ = [codec]
    context = fit_context(
        corpus, profile=_with(profile), ledger=ledger, noise_multiplier=0.8, upstream={"tabular": tabular}
    )
    generator = ImageGenerator(config).fit(corpus, columns=["photo"], context=context)
    assert [e.stage for e in ledger.entries] == [Stage.IMAGE]
    return generator


def test_rgb_images_have_the_declared_size_and_missing_images_are_left_out() -> None:
    corpus = _rgb_corpus(64, missing_every=4)
    generator = _fit_rgb(corpus, missing_rate=0.25)
    pngs = generator.sample_pngs(corpus.records, streams=Streams.sampling(0))
    assert 0 < sum(p is None for p in pngs) < len(pngs)
    for png in (p for p in pngs if p is not None):
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (12, 10) and image.mode == "RGB"


def test_a_public_checkpoint_starts_training_and_a_mismatched_one_is_refused(tmp_path: Path) -> None:
    corpus = _rgb_corpus(32)
    public = _fit_rgb(corpus)
    public.save(tmp_path / "public")
    still = TINY.model_copy(update={"optim": TINY.optim.model_copy(update={"lr": 1e-9})})  # DP-SGD barely moves
    warm = _fit_rgb(corpus, still.model_copy(update={"pretrained": tmp_path / "public"}))
    cold = _fit_rgb(corpus, still)
    for name, value in public.network_.state_dict().items():
        assert np.allclose(warm.network_.state_dict()[name], value, atol=1e-4), name  # started from the checkpoint
    assert any(
        not np.allclose(cold.network_.state_dict()[n], v, atol=1e-4) for n, v in public.network_.state_dict().items()
    )
    with pytest.raises(ConfigError, match="does not fit"):
        _fit_rgb(corpus, TINY.model_copy(update={"pretrained": tmp_path / "public", "rank": 3}))
    with pytest.raises(ConfigError, match="not found"):
        _fit_rgb(corpus, TINY.model_copy(update={"pretrained": tmp_path / "missing"}))


def test_the_size_rule_sets_small_cohort_settings_once_and_keeps_what_the_config_states(fitted: Synthesizer) -> None:
    image = fitted.images_["scan"]
    assert image.config.size_rule is False  # resolved at fit and saved: sampling uses what was trained
    assert (image.config.keep, image.config.rank, image.config.optim.epochs) == (8, 4, 1)  # stated in small.yaml
    assert (image.config.temperature, image.config.init_scale) == (0.6, 0.1)  # left at defaults: the small-cohort rule
    # the planner sees the same shape the fit runs: 30 epochs at the capped 10 % rate below 10,000 people
    assert ImageGenerator(ImageConfig()).plan(1_600).steps == 300
    assert ImageGenerator(ImageConfig()).plan(60_000).steps == ImageConfig().optim.steps(60_000)
    assert ImageGenerator(ImageConfig(size_rule=False)).plan(1_600).steps == 100


def test_sample_can_return_pil_images_equal_to_the_png_bytes(fitted: Synthesizer) -> None:
    as_bytes = fitted.sample(12, seed=4)
    as_pil = fitted.sample(12, seed=4, images="pil")
    for raw, image in zip(as_bytes["scan"], as_pil["scan"], strict=True):
        if raw is None:
            assert image is None
            continue
        assert isinstance(image, Image.Image) and image.size == (32, 32) and image.mode == "L"
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(raw))))
    with pytest.raises(ValueError, match="'bytes' or 'pil'"):
        fitted.sample(2, images="tensor")  # type: ignore[arg-type]


def test_a_class_floor_redraws_images_the_model_cannot_tell_apart() -> None:
    """Two overlapping classes: with a floor every draw is one the model itself assigns to its class, the same
    generator seed gives the same images, and floor 0 is the plain draw."""
    import torch

    from privsynth.generators.image.mixture import MixtureOfFactorAnalysers

    model = MixtureOfFactorAnalysers(classes=2, components=1, dims=4, rank=1, init_scale=1.0)
    with torch.no_grad():
        model.means.weight.copy_(torch.tensor([[0.0] * 4, [1.0] * 4]))  # 1 apart per coordinate, unit spread
        model.factors.weight.zero_()
    labels = torch.tensor([0, 1] * 500)

    def draw(floor: float) -> torch.Tensor:
        return model.sample_recognisable(labels, torch.Generator().manual_seed(3), floor=floor)

    plain, floored = draw(0.0), draw(0.9)
    assert torch.equal(plain, model.sample(labels, torch.Generator().manual_seed(3)))
    before, after = model.class_posterior(plain, labels), model.class_posterior(floored, labels)
    assert (before < 0.9).float().mean() > 0.5  # positive control: most plain draws sit where the classes overlap
    assert (after >= 0.9).float().mean() > 0.95 and after.mean() > before.mean()
    assert torch.equal(floored, draw(0.9))
    assert ImageConfig().for_units(1_600).class_floor == 0.9 and ImageConfig().for_units(60_000).class_floor == 0.0
