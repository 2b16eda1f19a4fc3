"""The generators privsynth knows, in generation order: the record's fields first, then what follows them.

Each entry is a lazy factory, so naming a generator imports nothing heavy until a fit or a model needs it. A
plug-in adds one line here (or calls ``registry.register`` from its own package at start-up).
"""

from __future__ import annotations

from privsynth.generators.base import Generator, Registry


def _tabular() -> type[Generator]:
    from privsynth.generators.tabular.generator import TabularGenerator

    return TabularGenerator


def _text() -> type[Generator]:
    from privsynth.generators.text.generator import TextGenerator

    return TextGenerator


def _image() -> type[Generator]:
    from privsynth.generators.image.generator import ImageGenerator

    return ImageGenerator


registry = Registry()
registry.register("tabular", _tabular)
registry.register("text", _text)
registry.register("image", _image)

__all__ = ["registry"]
