"""PyTorch access to a synthetic corpus or a release: ``SyntheticDataset`` and ``loader``.

    from privsynth.torch import SyntheticDataset, loader
    data = SyntheticDataset("runs/demo/release/bundle")
    batch = next(iter(loader(data, batch_size=32)))
    batch["scan"].shape        # torch.Size([32, 1, 32, 32])
    batch["diagnosis"][:3]     # ['pneumonia', 'healthy', 'fracture']

Each item is a dict with every column: numbers as floats (``nan`` when missing), categories, texts and
identifiers as strings (``None`` when missing), booleans as bools, dates as ISO strings, and images as float
tensors in [0, 1] of shape (channels, height, width) at the schema's size and mode (``None`` when missing), or as
PIL images with ``images="pil"``. ``loader`` batches them: tensors are stacked (a missing image becomes zeros and
``<column>_present`` says which), everything else is a list. A release folder (with ``data/``) or a synthetic
corpus folder both work; nothing is trained or decoded until an item is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from privsynth.data.corpus import Corpus, read_corpus
from privsynth.data.images import load_image
from privsynth.data.schema import ColumnKind


def _corpus_folder(folder: Path) -> Path:
    """The corpus inside a release bundle (``data/``), or the folder itself."""
    return folder / "data" if (folder / "manifest.json").is_file() and (folder / "data").is_dir() else folder


class SyntheticDataset(Dataset[dict[str, Any]]):
    """The records of a synthetic corpus or release as a map-style dataset.

    Args:
        folder: a release bundle or a synthetic corpus folder.
        images: ``"tensor"`` (float, [0, 1], C x H x W) or ``"pil"``.
        transform: applied to each image after loading (e.g. torchvision transforms; with ``images="pil"``).
    """

    def __init__(
        self,
        folder: str | Path | Corpus,
        *,
        images: Literal["tensor", "pil"] = "tensor",
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if images not in ("tensor", "pil"):
            raise ValueError(f"images must be 'tensor' or 'pil', not {images!r}")
        self.corpus = folder if isinstance(folder, Corpus) else read_corpus(_corpus_folder(Path(folder)))
        self.schema = self.corpus.schema
        self.images = images
        self.transform = transform
        self._rows = self.corpus.records.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} is out of range (the corpus has {len(self)})")
        row = self._rows.iloc[index]
        return {name: self._value(name, row[name]) for name in self.schema.columns}

    def _value(self, name: str, value: Any) -> Any:
        spec = self.schema.columns[name]
        missing = value is None or (not isinstance(value, bytes | str) and bool(pd.isna(value)))
        if spec.kind is ColumnKind.IMAGE:
            if missing:
                return None
            image = load_image(self.corpus.root, value)
            if spec.image_mode is not None:
                image = image.convert(spec.image_mode.value)
            if self.images == "tensor":
                array = np.asarray(image, dtype=np.float32) / 255.0
                tensor = torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
                return self.transform(tensor) if self.transform else tensor
            return self.transform(image) if self.transform else image
        if missing:
            return float("nan") if spec.kind is ColumnKind.NUMERICAL else None
        if spec.kind is ColumnKind.NUMERICAL:
            return float(value)
        if spec.kind is ColumnKind.BOOLEAN:
            return bool(value)
        if spec.kind is ColumnKind.DATETIME:
            return pd.Timestamp(value).isoformat()
        return str(value)


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: tensors stacked, numbers as one float tensor, everything else as lists.

    A missing image becomes zeros, and ``<column>_present`` says which images are real.
    """
    out: dict[str, Any] = {}
    for name in items[0]:
        values = [item[name] for item in items]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        if tensors:
            blank = torch.zeros_like(tensors[0])
            out[name] = torch.stack([v if isinstance(v, torch.Tensor) else blank for v in values])
            out[f"{name}_present"] = torch.tensor([isinstance(v, torch.Tensor) for v in values])
        elif all(isinstance(v, float) for v in values):
            out[name] = torch.tensor(values, dtype=torch.float32)
        else:
            out[name] = values
    return out


def loader(
    dataset: SyntheticDataset | str | Path, *, batch_size: int = 64, shuffle: bool = False, **kwargs: Any
) -> DataLoader[Any]:
    """A ``DataLoader`` over a dataset (or a folder) with :func:`collate`; ``kwargs`` go to ``DataLoader``."""
    data = dataset if isinstance(dataset, SyntheticDataset) else SyntheticDataset(dataset)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, **kwargs)


__all__ = ["SyntheticDataset", "collate", "loader"]
