"""Fashion-MNIST from its IDX files (``>IIII`` image headers, ``>II`` label headers)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def _images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        _, n, rows, cols = struct.unpack(">IIII", handle.read(16))
        return np.frombuffer(handle.read(), dtype=np.uint8).reshape(n, rows, cols)


def _labels(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        _, n = struct.unpack(">II", handle.read(8))
        return np.frombuffer(handle.read(), dtype=np.uint8)[:n]


def load_fmnist(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels); images uint8 [n, 28, 28]."""
    return (
        _images(folder / "train-images-idx3-ubyte.gz"),
        _labels(folder / "train-labels-idx1-ubyte.gz"),
        _images(folder / "t10k-images-idx3-ubyte.gz"),
        _labels(folder / "t10k-labels-idx1-ubyte.gz"),
    )
