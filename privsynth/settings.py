"""Settings files (fit configs, run configs, release policies, release information): YAML in, a frozen model out.

One reader for all of them, so every settings file fails the same way: a file that cannot be read, is not UTF-8
or is not YAML, and every invalid entry (named by its dotted path), is a :class:`~privsynth.errors.ConfigError`
(exit code 2) with a message saying what to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from privsynth.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def read_yaml(path: Path, *, what: str) -> Any:
    """The YAML content of ``path`` (``what`` names the file in messages, e.g. "the policy")."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text; save it as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: {what} must be a file, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({type(exc).__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: {what} is not valid YAML{where}") from None


def validation_lines(exc: ValidationError) -> str:
    """One line per invalid entry, named by its dotted path."""
    return "\n".join(f"  - {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())


def validate(model: type[Model], data: Any, *, source: Path | str, what: str) -> Model:
    """``data`` as ``model``, or a :class:`ConfigError` listing every invalid entry."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {what} is invalid:\n{validation_lines(exc)}") from None


def load_settings(model: type[Model], path: Path, *, what: str) -> Model:
    """Read and validate a settings file in one step (an empty file is an empty mapping)."""
    data = read_yaml(path, what=what)
    return validate(model, data if data is not None else {}, source=path, what=what)


__all__ = ["load_settings", "read_yaml", "validate", "validation_lines"]
