"""The release as a Hugging Face dataset: ``datasets.load_dataset(BUNDLE)`` with ``Image`` and ``ClassLabel``.

A release keeps its corpus as ``data/records.parquet`` with images as PNG files referenced by relative path (what
privsynth and most tools read). Hugging Face's Parquet loader resolves an image path against the working
directory, not the bundle, so the bundle also carries ``hf/train.parquet``: the same records with each image's
PNG bytes inside the table (Hugging Face's image storage, ``{bytes, path}``) and categories stored as class
indices. The dataset card (``README.md``) points ``load_dataset`` at it and declares the features. Everything in it
is the synthetic corpus already in the release: nothing new is disclosed.

The image bytes are stored twice (the files and the table); synthetic images are small PNGs, and the files stay
the reference the manifest, Croissant and ``privsynth`` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from privsynth.data.corpus import Corpus
from privsynth.data.images import ImageLimits, read_cell_bytes
from privsynth.data.schema import ColumnKind, ColumnSpec

HF_TABLE = "hf/train.parquet"


def class_names(values: pd.Series, spec: ColumnSpec) -> list[str]:
    """ClassLabel names of a categorical column: its declared domain, then any other value in the release, sorted.

    >>> from privsynth.data.schema import ColumnKind, ColumnSpec
    >>> spec = ColumnSpec(kind=ColumnKind.CATEGORICAL, domain=("F", "M"))
    >>> class_names(pd.Series(["M", "__other__", None]), spec)
    ['F', 'M', '__other__']
    """
    declared = list(spec.domain or ())
    seen = sorted({str(v) for v in values.dropna()} - set(declared))
    return declared + seen


def _value_type(spec: ColumnSpec) -> tuple[str, pa.DataType]:
    if spec.kind is ColumnKind.NUMERICAL:
        return ("int64", pa.int64()) if spec.integer else ("float64", pa.float64())
    if spec.kind is ColumnKind.DATETIME:
        return "timestamp[ns]", pa.timestamp("ns")
    if spec.kind is ColumnKind.BOOLEAN:
        return "bool", pa.bool_()
    return "string", pa.string()


def hf_view(corpus: Corpus) -> tuple[pa.Table, list[dict[str, Any]]]:
    """The records as a Hugging Face table (images embedded, categories as indices) and its feature list."""
    records, schema = corpus.records, corpus.schema
    arrays: dict[str, pa.Array] = {}
    features: list[dict[str, Any]] = []
    for name, spec in schema.columns.items():
        values = records[name]
        if spec.kind is ColumnKind.IMAGE:
            cells = [None if _missing(v) else {"bytes": _image_bytes(corpus.root, v), "path": _name(v)} for v in values]
            arrays[name] = pa.array(cells, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
            features.append({"name": name, "dtype": "image"})
        elif spec.kind is ColumnKind.CATEGORICAL:
            names = class_names(values, spec)
            index = {n: i for i, n in enumerate(names)}
            arrays[name] = pa.array([None if _missing(v) else index[str(v)] for v in values], type=pa.int64())
            features.append(
                {"name": name, "dtype": {"class_label": {"names": {str(i): n for i, n in enumerate(names)}}}}
            )
        else:
            dtype, arrow = _value_type(spec)
            if arrow == pa.string():
                arrays[name] = pa.array([None if _missing(v) else str(v) for v in values], type=arrow)
            else:
                arrays[name] = pa.array(values, type=arrow, from_pandas=True)
            features.append({"name": name, "dtype": dtype})
    return pa.table(arrays), features


def write_hf_view(corpus: Corpus, bundle: Path) -> list[dict[str, Any]]:
    """Write ``hf/train.parquet`` into ``bundle``; returns the features for the dataset card."""
    table, features = hf_view(corpus)
    path = bundle / HF_TABLE
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return features


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _name(value: object) -> str | None:
    return str(value) if isinstance(value, str) else None


def _image_bytes(root: Path, value: object) -> bytes:
    """The cell's image bytes: a path confined to the corpus folder, as the corpus reader reads it."""
    return read_cell_bytes(root, value, ImageLimits())


__all__ = ["HF_TABLE", "class_names", "hf_view", "write_hf_view"]
