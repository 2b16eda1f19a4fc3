"""Pins the public API: adding or removing a name is a deliberate change to this list."""

from __future__ import annotations

import privsynth

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(privsynth.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in privsynth.__all__:
        assert hasattr(privsynth, name), name


def test_errors_share_one_root_and_builtin_meanings() -> None:
    from privsynth import errors

    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert issubclass(obj, privsynth.PrivsynthError), name
    assert issubclass(privsynth.SchemaError, ValueError)
    assert issubclass(privsynth.OutputExistsError, FileExistsError)
    assert issubclass(privsynth.NotFittedError, AttributeError)
