"""Defaults that fit the cohort: the size rule changes only what is left at default, once, from the DP count."""

from __future__ import annotations

from privsynth.generators.dpsgd import OptimConfig
from privsynth.generators.image.generator import ImageConfig, ImageGenerator
from privsynth.generators.sizing import SMALL_COHORT
from privsynth.generators.tabular.generator import TabularConfig, TabularGenerator


def test_small_cohorts_get_the_small_values_and_large_ones_the_defaults() -> None:
    small, large = TabularConfig().for_units(SMALL_COHORT - 1), TabularConfig().for_units(SMALL_COHORT)
    assert (small.optim.max_sample_rate, small.optim.lr, small.optim.epochs) == (1.0, 0.01, 80.0)
    assert large.optim == TabularConfig().optim and not large.size_rule
    assert ImageConfig().for_units(SMALL_COHORT - 1).rank == 1 and ImageConfig().for_units(SMALL_COHORT).rank == 16


def test_stated_values_are_kept_and_the_rule_can_be_turned_off() -> None:
    stated = TabularConfig(optim=OptimConfig(batch_size=2048, epochs=40, lr=0.004)).for_units(1_000)
    assert stated.optim.lr == 0.004  # stated: kept
    assert stated.optim.epochs == 80.0  # left at its default: the rule's
    assert TabularConfig(size_rule=False).for_units(1_000).optim == TabularConfig().optim


def test_the_rule_applies_once_so_a_loaded_or_resumed_model_keeps_what_it_trained_with() -> None:
    once = TabularConfig().for_units(1_000)
    assert once.for_units(50) == once and once.for_units(10**6) == once
    image = ImageConfig().for_units(1_000)
    assert ImageConfig.model_validate(image.model_dump()).for_units(10**6) == image  # saved as JSON, reloaded


def test_the_planner_sees_the_shape_the_fit_runs() -> None:
    for units in (300, 1_600, 9_999, 10_000, 60_000):
        tabular = TabularConfig().for_units(units).optim
        assert TabularGenerator(TabularConfig()).plan(units).steps == tabular.steps(units)
        assert TabularGenerator(TabularConfig()).plan(units).sample_rate == tabular.sample_rate(units)
        image = ImageConfig().for_units(units).optim
        assert ImageGenerator(ImageConfig()).plan(units).steps == image.steps(units)


def test_diffusion_settings_are_never_resized() -> None:
    config = ImageConfig(model="diffusion")
    assert config.for_units(100).optim == config.optim and config.for_units(100).keep == config.keep
