"""What every generator provides, and the registry that names them.

A generator learns one modality of the corpus under DP-SGD. ``fit`` spends its own ledger entry (planned
jointly with the other stages) before drawing any noise; ``sample`` needs no real data. Generators save to a
model folder as safetensors weights plus JSON, and load without pickle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from privsynth.errors import NotFittedError


class Generator(ABC):
    """Base class: scikit-learn's contract (``__init__`` stores config; learned state ends in ``_``)."""

    name: ClassVar[str]
    #: Set by the synthesizer after a DP fit (keyed corpus fingerprint, run id) and saved with the weights, so a
    #: fit asked to start from this checkpoint can refuse when it was fitted on the same corpus.
    provenance_: dict[str, object] | None = None

    def _check_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() or load() first")

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write weights (safetensors) and metadata (JSON) into ``folder``."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> Generator:
        """Read a generator written by :meth:`save` (no pickle)."""


class Registry:
    """Named generator classes; refuses duplicate names (like Opacus' accountant registry)."""

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], type[Generator]]] = {}

    def register(self, name: str, factory: Callable[[], type[Generator]]) -> None:
        """Register a lazy factory returning the class (heavy imports happen on first use)."""
        if name in self._factories:
            raise ValueError(f"a generator named '{name}' is already registered")
        self._factories[name] = factory

    def get(self, name: str) -> type[Generator]:
        """The generator class registered under ``name``."""
        try:
            return self._factories[name]()
        except KeyError:
            known = ", ".join(sorted(self._factories))
            raise KeyError(f"no generator named '{name}' (registered: {known})") from None

    def names(self) -> list[str]:
        """Registered names."""
        return sorted(self._factories)


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

__all__ = ["Generator", "Registry", "registry"]
