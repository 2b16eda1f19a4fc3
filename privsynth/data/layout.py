"""File names of the folders privsynth writes, and the small readers every stage shares.

A *model folder* (``privsynth fit``) holds ``model.json``, ``ledger.json``, ``profile.json``, ``schema.yaml``, one
sub-folder per generator and an owner-only ``internal/`` with the real record keys of the holdout split and the
canary audit's scores. A *synthetic corpus* (``privsynth sample``) is a corpus folder plus ``synthetic.json``
(provenance) and an owner-only ``internal/surrogates.parquet`` (the fake identities given to each record). Audits
and releases read these by name from here, without importing the code that writes them (and torch with it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from privsynth.errors import ConfigError

MODEL_META = "model.json"
MODEL_LEDGER = "ledger.json"
MODEL_PROFILE = "profile.json"
MODEL_MANIFEST = "manifest.json"  # SHA-256 of every file of a model folder outside internal/
INTERNAL = "internal"
SPLIT = Path(INTERNAL) / "split.json"
CANARIES = Path(INTERNAL) / "canaries.json"
PROVENANCE = "synthetic.json"
REGISTRY = Path(INTERNAL) / "surrogates.parquet"


def read_json(path: Path) -> Any | None:
    """A JSON file privsynth wrote, or ``None`` when it does not exist."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(f"{path} is not readable JSON; was it written by privsynth?") from None


def load_provenance(synthetic: Path) -> dict[str, Any]:
    """A synthetic corpus' ``synthetic.json`` (empty for corpora other tools wrote)."""
    data = read_json(synthetic / PROVENANCE)
    return data if isinstance(data, dict) else {}


def load_registry(synthetic: Path) -> pd.DataFrame | None:
    """The surrogate registry of a synthetic corpus written by privsynth, if it has one."""
    path = synthetic / REGISTRY
    return pd.read_parquet(path) if path.exists() else None  # a file, or a folder of parts (sharded sampling)


def load_canaries(model: Path) -> dict[str, Any] | None:
    """The canary audit's scores a model folder keeps under ``internal/``, if it was fitted with canaries."""
    data = read_json(model / CANARIES)
    return data if isinstance(data, dict) else None


__all__ = [
    "CANARIES",
    "INTERNAL",
    "MODEL_LEDGER",
    "MODEL_MANIFEST",
    "MODEL_META",
    "MODEL_PROFILE",
    "PROVENANCE",
    "REGISTRY",
    "SPLIT",
    "load_canaries",
    "load_provenance",
    "load_registry",
    "read_json",
]
