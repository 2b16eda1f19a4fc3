"""privsynth: differentially private synthetic copies of linked multimodal records, audited before release.

The public API is re-exported here; ``tests/unit/test_public_api.py`` pins it.
"""

from privsynth._version import __version__
from privsynth.data import (
    ColumnKind,
    ColumnSpec,
    Corpus,
    ImageMode,
    PiiType,
    Schema,
    load_schema,
    read_corpus,
    write_corpus,
)
from privsynth.errors import (
    BudgetExceededError,
    ConfigError,
    CorpusReadError,
    CorpusValidationError,
    DeltaTooLargeError,
    IntegrityError,
    NotFittedError,
    OutputExistsError,
    PrivacyError,
    PrivsynthError,
    Problem,
    SchemaError,
    UserError,
)

__all__ = [
    "BudgetExceededError",
    "ColumnKind",
    "ColumnSpec",
    "ConfigError",
    "Corpus",
    "CorpusReadError",
    "CorpusValidationError",
    "DeltaTooLargeError",
    "ImageMode",
    "IntegrityError",
    "NotFittedError",
    "OutputExistsError",
    "PiiType",
    "PrivacyError",
    "PrivsynthError",
    "Problem",
    "Schema",
    "SchemaError",
    "UserError",
    "__version__",
    "load_schema",
    "read_corpus",
    "write_corpus",
]
