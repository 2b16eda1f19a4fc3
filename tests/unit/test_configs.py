"""The shipped configs parse, and configs/default.yaml spells out exactly the built-in defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from privsynth.config import FitConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_default_yaml_is_the_built_in_defaults() -> None:
    assert load_config(CONFIGS / "default.yaml") == FitConfig()


@pytest.mark.parametrize(
    "name", ["adult-benchmark.yaml", "fmnist-benchmark.yaml", "fmnist-gpu.yaml", "small.yaml"]
)  # the others are pipeline configs (privsynth run), checked by the pipeline tests
def test_every_shipped_fit_config_parses(name: str) -> None:
    load_config(CONFIGS / name)


def test_an_optim_section_given_in_part_keeps_the_generators_other_defaults(tmp_path: Path) -> None:
    # ``tabular: {optim: {lr: 0.005}}`` used to replace the tabular optimiser with OptimConfig's bare defaults
    # (batch 512, 20 epochs instead of 2,048 and 40; ghost clipping instead of the text model's hooks)
    path = tmp_path / "partial.yaml"
    path.write_text("tabular:\n  optim:\n    lr: 0.005\ntext:\n  optim: {epochs: 3}\nimage:\n  optim: {}\n")
    config, defaults = load_config(path), FitConfig()
    assert config.tabular.optim == defaults.tabular.optim.model_copy(update={"lr": 0.005})
    assert config.text.optim == defaults.text.optim.model_copy(update={"epochs": 3.0})
    assert config.image.optim == defaults.image.optim
    # the small-cohort rule still fills what the config left at the default
    small = config.tabular.for_units(1_600).optim
    assert (small.lr, small.epochs, small.max_sample_rate) == (0.005, 80.0, 1.0)


@pytest.mark.parametrize("name", ["demo.yaml", "demo-backbone.yaml"])
def test_every_shipped_demo_pipeline_config_parses(name: str) -> None:
    from privsynth.pipeline import load_pipeline

    assert load_pipeline(CONFIGS / name).demo is not None


def test_a_pipeline_config_given_as_a_fit_config_says_what_to_do() -> None:
    # 'privsynth fit --config configs/demo-backbone.yaml' listed every top-level key as unknown
    from privsynth.errors import ConfigError

    with pytest.raises(ConfigError, match=r"pipeline config for 'privsynth run'.*'fit:' entries"):
        load_config(CONFIGS / "demo-backbone.yaml")
