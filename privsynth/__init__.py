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

#: Heavy names (torch) imported on first use, so ``import privsynth.gate`` and the audit stay light.
_LAZY = {
    "Synthesizer": ("privsynth.synthesizer", "Synthesizer"),
    "FitConfig": ("privsynth.config", "FitConfig"),
    "LedgerStore": ("privsynth.privacy.store", "LedgerStore"),
    "parse_conditions": ("privsynth.conditions", "parse_conditions"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'privsynth' has no attribute {name!r}")


__all__ = [
    "BudgetExceededError",
    "ColumnKind",
    "ColumnSpec",
    "ConfigError",
    "Corpus",
    "CorpusReadError",
    "CorpusValidationError",
    "DeltaTooLargeError",
    "FitConfig",
    "ImageMode",
    "IntegrityError",
    "LedgerStore",
    "NotFittedError",
    "OutputExistsError",
    "PiiType",
    "PrivacyError",
    "PrivsynthError",
    "Problem",
    "Schema",
    "SchemaError",
    "Synthesizer",
    "UserError",
    "__version__",
    "load_schema",
    "parse_conditions",
    "read_corpus",
    "write_corpus",
]
