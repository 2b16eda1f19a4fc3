"""Text settings chosen when sampling, not fitting (``privsynth sample --text SETTING=VALUE``).

How a fitted text model is sampled (temperature, nucleus mass, best-of-k, guidance, n-gram blocking, which token
ids may be drawn) reads only the model and the synthetic records: post-processing, free of budget, so it can change
after the fit. A sample's provenance records the settings each text column was drawn with.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from privsynth.errors import ConfigError

if TYPE_CHECKING:
    from privsynth.synthesizer import Synthesizer

#: The text settings a sample may change (every other one shapes the fitted model).
SAMPLING_SETTINGS = (
    "temperature",
    "top_p",
    "candidates",
    "candidates_max",
    "candidate_score",
    "guidance",
    "guidance_fields",
    "no_repeat_ngram",
    "repetition_penalty",
    "placeholder_limit",
    "sample_vocab",
    "scrub",
    "lengths",
    "keyword_strength",
    "keyword_once",
)
#: The settings whose values are words (or true/false), not numbers.
WORD_SETTINGS = ("sample_vocab", "scrub", "lengths", "guidance_fields", "candidate_score", "keyword_once")


def parse_text_settings(items: Sequence[str]) -> dict[str, float | str]:
    """``SETTING=VALUE`` pairs (``candidates=4``) into a mapping; the values are checked per model later."""
    settings: dict[str, float | str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().removeprefix("text.")
        if not sep or name not in SAMPLING_SETTINGS:
            raise ConfigError(
                f"--text {item!r}: write SETTING=VALUE with SETTING one of {', '.join(SAMPLING_SETTINGS)} "
                "(e.g. --text candidates=4)"
            )
        if name in settings:
            raise ConfigError(f"--text {name} is given twice; give each setting once")
        if name in WORD_SETTINGS:
            settings[name] = value.strip()
            continue
        try:
            settings[name] = float(value)
        except ValueError:
            raise ConfigError(f"--text {item!r}: {value.strip()!r} is not a number") from None
    return settings


def apply(synth: Synthesizer, settings: Mapping[str, Mapping[str, Any]]) -> None:
    """Give each named text column's generator these sampling settings (validated with its whole config)."""
    for column, values in settings.items():
        generator = synth.texts_[column]
        unknown = set(values) - set(SAMPLING_SETTINGS)
        if unknown:
            raise ConfigError(f"{sorted(unknown)[0]!r} is not a text sampling setting ({', '.join(SAMPLING_SETTINGS)})")
        model = generator.config.backbone
        if model == "byte" and "top_p" in values and values["top_p"] != generator.config.top_p:
            raise ConfigError(f"text column '{column}': top_p is for a backbone; this column's model is the byte model")
        fitted_strength = generator.config.keyword_strength
        try:
            generator.config = type(generator.config).model_validate({**generator.config.model_dump(), **values})
        except ValidationError as error:
            problem = error.errors()[0]
            where = "".join(f"{p}: " for p in problem["loc"])
            message = str(problem["msg"]).removeprefix("Value error, ")
            raise ConfigError(
                f"text column '{column}' (fitted with text.backbone {model}, text.condition_dropout "
                f"{generator.config.condition_dropout:g}): {where}{message}"
            ) from None
        strength = values.get("keyword_strength", fitted_strength)
        # a new, non-zero weight for a prior the model lacks (a worker re-applying the settings in force changes none)
        if strength and strength != fitted_strength and getattr(generator, "keyword_prior_", None) is None:
            raise ConfigError(
                f"text column '{column}': keyword_strength weighs a keyword prior, and this model has none (fit it "
                "with text.keyword_column)"
            )
        if generator.config.guidance_fields:  # refused before any record is drawn, not after the tabular sample
            from privsynth.generators.text.finetune import check_guidance_fields

            check_guidance_fields(generator)


def effective(synth: Synthesizer) -> dict[str, dict[str, Any]]:
    """Each text column's sampling settings as they are now."""
    return {
        column: {name: getattr(generator.config, name) for name in SAMPLING_SETTINGS}
        for column, generator in synth.texts_.items()
    }


@contextmanager
def text_sampling(synth: Synthesizer, settings: Mapping[str, Any] | None) -> Iterator[dict[str, dict[str, Any]]]:
    """Sample ``synth`` with ``settings`` for every text column; yields the settings in force; restores after."""
    if settings and not synth.texts_:
        raise ConfigError("text sampling settings were given, but this model has no text column")
    before = {column: generator.config for column, generator in synth.texts_.items()}
    try:
        apply(synth, {column: dict(settings or {}) for column in synth.texts_})
        yield effective(synth)
    finally:
        for column, config in before.items():
            synth.texts_[column].config = config


__all__ = ["SAMPLING_SETTINGS", "apply", "effective", "parse_text_settings", "text_sampling"]
