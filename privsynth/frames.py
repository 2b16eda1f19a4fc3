"""Notebook input: a pandas DataFrame (or a path) to a validated :class:`~privsynth.data.corpus.Corpus`.

``Synthesizer().fit(df, epsilon=8)`` goes through :func:`as_corpus`. Without a schema one is inferred as
``privsynth init`` does, with the same caveat: the inferred kinds and integer/date flags were read from the
records without noise, and nothing is declared public (declare domains and bounds from a codebook to do better
at small n). Image columns hold paths relative to ``root`` (default: the working folder) or encoded bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from privsynth.data.corpus import Corpus, read_corpus
from privsynth.data.infer import infer_schema
from privsynth.data.schema import Schema, load_schema, schema_from_dict
from privsynth.data.validate import coerce_records
from privsynth.errors import ConfigError, CorpusValidationError

log = logging.getLogger(__name__)

SchemaLike = Schema | dict[str, Any] | str | Path


def as_corpus(data: Any, *, schema: SchemaLike | None = None, root: Path | None = None) -> Corpus:
    """``data`` (a Corpus, a corpus folder, or a DataFrame) as a validated corpus."""
    if isinstance(data, Corpus):
        if schema is not None:
            raise ConfigError("a Corpus carries its schema; pass schema= only with a DataFrame")
        return data
    if isinstance(data, str | Path):
        if schema is not None:
            raise ConfigError("a corpus folder carries its schema.yaml; pass schema= only with a DataFrame")
        return read_corpus(data)
    if not isinstance(data, pd.DataFrame):
        raise ConfigError(f"fit() takes a pandas DataFrame, a Corpus or a corpus folder, not {type(data).__name__}")
    frame = data.reset_index(drop=True)
    resolved = _schema(frame, schema)
    base = root if root is not None else Path.cwd()
    records, problems = coerce_records(frame.astype(object), resolved, base)
    if problems:
        raise CorpusValidationError(problems, source="the DataFrame")
    return Corpus(records=records, schema=resolved, root=base)


def as_schema(schema: SchemaLike) -> Schema:
    """A Schema from a Schema, a dict like schema.yaml (``table`` optional), a schema.yaml path, or SDV metadata.

    SDV single-table metadata is a dict naming ``METADATA_SPEC_VERSION``, or a ``.json`` path
    (:mod:`privsynth.data.sdv_metadata`).
    """
    from privsynth.data.sdv_metadata import is_sdv_metadata, schema_from_sdv

    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, dict):
        if is_sdv_metadata(schema):
            return schema_from_sdv(schema)
        return schema_from_dict({"table": "records.parquet", **schema}, source="schema=")
    if Path(schema).suffix.lower() == ".json":
        return schema_from_sdv(Path(schema))
    return load_schema(Path(schema))


def _schema(frame: pd.DataFrame, schema: SchemaLike | None) -> Schema:
    if schema is not None:
        return as_schema(schema)
    inference = infer_schema(frame, table="records.parquet")
    log.warning(
        "no schema given: inferred one from the records (kinds and integer/date flags read without noise, outside "
        "the privacy guarantee; nothing declared public). Pass schema= (a Schema, a dict or schema.yaml) to control "
        "it; Synthesizer.plan() shows what will collapse without declared domains and bounds"
    )
    return inference.schema


__all__ = ["SchemaLike", "as_corpus", "as_schema"]
