"""Settings files (fit configs, run configs, release policies, release information): YAML in, a frozen model out.

One reader for all of them, so every settings file fails the same way: a file that cannot be read, is not UTF-8
or is not YAML, and every invalid entry (named by its dotted path), is a :class:`~privsynth.errors.ConfigError`
(exit code 2) with a message saying what to fix.
"""

from __future__ import annotations

import difflib
import typing
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


def validation_lines(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per invalid entry, named by its dotted path.

    With ``model``, an unknown key lists the known ones and gets "did you mean" when one is close (``domian`` ->
    ``domain``).
    """
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden" and model is not None and error["loc"]:
            known = _fields_at(model, error["loc"][:-1])
            close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1, cutoff=0.6)
            message = f"unknown key{f'; did you mean {close[0]!r}?' if close else ''} (known: {', '.join(known)})"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The field names of the model found by following ``path`` (dict keys and list indexes pass through)."""
    annotation: Any = model
    for part in path:
        annotation = _model_in(annotation, by_key=isinstance(part, str))
        if annotation is None:
            return []
        if isinstance(part, str) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        elif not isinstance(part, str | int):
            return []
    found = _model_in(annotation, by_key=False)
    return sorted(found.model_fields) if found is not None else []


def _model_in(annotation: Any, *, by_key: bool) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (through Optional, dict values and list items)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg, by_key=by_key)
        if found is not None:
            return found
    return None


def validate(model: type[Model], data: Any, *, source: Path | str, what: str) -> Model:
    """``data`` as ``model``, or a :class:`ConfigError` listing every invalid entry."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {what} is invalid:\n{validation_lines(exc, model)}") from None


def load_settings(model: type[Model], path: Path, *, what: str) -> Model:
    """Read and validate a settings file in one step (an empty file is an empty mapping)."""
    data = read_yaml(path, what=what)
    return validate(model, data if data is not None else {}, source=path, what=what)


__all__ = ["load_settings", "read_yaml", "validate", "validation_lines"]
