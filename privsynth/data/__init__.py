"""Corpora: schema, reading/writing, validation, schema inference and the demo corpus."""

from privsynth.data.corpus import Corpus, read_corpus, write_corpus
from privsynth.data.schema import ColumnKind, ColumnSpec, ImageMode, PiiType, Schema, load_schema

__all__ = [
    "ColumnKind",
    "ColumnSpec",
    "Corpus",
    "ImageMode",
    "PiiType",
    "Schema",
    "load_schema",
    "read_corpus",
    "write_corpus",
]
