"""Choosing an engine: settings from a config and command-line options, and the engine they name."""

from __future__ import annotations

import os

from privsynth.engine.base import Engine, EngineKind, EngineSettings
from privsynth.engine.local import LocalEngine
from privsynth.errors import ConfigError


def engine_settings(
    kind: str | None, *, workers: int | None = None, address: str | None = None, base: EngineSettings | None = None
) -> EngineSettings:
    """Settings from command-line options over ``base`` (a config's); a clear error for an unknown kind.

    >>> engine_settings("ray", workers=2).workers
    2
    """
    start = base if base is not None else EngineSettings()
    update: dict[str, object] = {}
    if kind is not None:
        try:
            update["kind"] = EngineKind(kind.strip().lower())
        except ValueError:
            raise ConfigError(f"--engine {kind!r} is not one of: local, ray") from None
    if workers is not None:
        update["workers"] = workers
    if address is not None:
        update["address"] = address
    if (update.get("kind", start.kind) is EngineKind.LOCAL) and (workers is not None or address is not None):
        raise ConfigError("--workers and --address need --engine ray (the local engine is this process)")
    if update.get("kind") is EngineKind.LOCAL:  # --engine local over a config's ray settings: drop them
        update |= {"workers": None, "address": None}
    return EngineSettings.model_validate(start.model_dump() | update)


def make_engine(settings: EngineSettings | None = None) -> Engine:
    """The engine ``settings`` ask for (local when none)."""
    if settings is None or settings.kind is EngineKind.LOCAL:
        return LocalEngine()
    from privsynth.engine.ray_engine import RayEngine

    return RayEngine(address=settings.address or os.environ.get("RAY_ADDRESS"), workers=settings.workers)
