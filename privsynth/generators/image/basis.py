"""A public image basis: low-frequency 2-D DCT coefficients (fixed maths, nothing learned from data).

Images are mapped to [-1, 1], transformed with the orthonormal 2-D DCT per channel, and the top-left ``keep`` x
``keep`` block of coefficients is kept; the inverse zero-fills the rest. Low frequencies carry shape and
intensity; dropping the highest ones removes pixel noise a private model should not learn anyway.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn, idctn


def to_array(image: Image.Image, size: tuple[int, int], mode: str) -> np.ndarray:
    """``[channels, height, width]`` floats in [-1, 1] at the declared size and mode."""
    converted = image.convert(mode)
    if converted.size != size:
        converted = converted.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.float32) / 127.5 - 1.0
    return array[None, :, :] if array.ndim == 2 else np.transpose(array, (2, 0, 1))


def encode(arrays: np.ndarray, keep: int) -> np.ndarray:
    """``[n, channels, h, w]`` -> ``[n, channels * keep * keep]`` low-frequency DCT coefficients."""
    coefficients = dctn(arrays, axes=(-2, -1), norm="ortho")[..., :keep, :keep]
    return coefficients.reshape(len(arrays), -1).astype(np.float32)


def decode(features: np.ndarray, channels: int, height: int, width: int, keep: int) -> np.ndarray:
    """Inverse of :func:`encode` (high frequencies zero): ``[n, channels, height, width]`` in [-1, 1] (clipped)."""
    full = np.zeros((len(features), channels, height, width), dtype=np.float32)
    full[..., :keep, :keep] = features.reshape(len(features), channels, keep, keep)
    return np.clip(idctn(full, axes=(-2, -1), norm="ortho"), -1.0, 1.0)


def to_image(array: np.ndarray, mode: str) -> Image.Image:
    """A PIL image from one ``[channels, h, w]`` array in [-1, 1]."""
    pixels = np.clip(np.round((array + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(pixels[0], mode="L")
    return Image.fromarray(np.transpose(pixels, (1, 2, 0)), mode="RGB")
