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
