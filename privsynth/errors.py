"""privsynth's exception tree.

Every error privsynth raises on purpose derives from :class:`PrivsynthError`, and mixes in the builtin whose
meaning matches, so ``except ValueError`` keeps working for callers who do not know privsynth::

    PrivsynthError
    +-- UserError                      bad input or usage; the CLI exits 2 without a traceback
    |   +-- SchemaError (ValueError)               schema.yaml is missing, malformed or inconsistent
    |   +-- CorpusReadError (ValueError)           the table file cannot be read at all
    |   +-- CorpusValidationError (ValueError)     records break the schema; carries every problem found
    |   +-- ConfigError (ValueError)               a pipeline config or option is invalid
    |   +-- OutputExistsError (FileExistsError)    refusing to overwrite without --force
    +-- PrivacyError                   a privacy rule would be broken; nothing was computed
    |   +-- BudgetExceededError                    a spend would exceed the target or the cap
    |   +-- DeltaTooLargeError (ValueError)        delta >= 1/n gives no meaningful guarantee
    +-- NotFittedError (AttributeError)            a generator or profile used before ``fit``
    +-- IntegrityError                 a model or release on disk does not match its manifest
    +-- ReleaseRefusedError            the release gate refused; the CLI exits 3

Messages name the column, record key, file or option at fault and say how to fix it. They never contain a
record's values: keys and column names only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PrivsynthError(Exception):
    """Root of every error privsynth raises on purpose."""


class UserError(PrivsynthError):
    """Bad input or usage: the user can fix it. The CLI prints the message and exits 2."""


class SchemaError(UserError, ValueError):
    """``schema.yaml`` is missing, malformed or inconsistent with itself."""


class CorpusReadError(UserError, ValueError):
    """The corpus table cannot be read at all (missing, empty, unparsable file)."""


class ConfigError(UserError, ValueError):
    """A pipeline configuration or a command-line option is invalid."""


class OutputExistsError(UserError, FileExistsError):
    """An output already exists and privsynth refuses to overwrite it without ``--force``."""


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is and what to do about it.

    ``record`` is the record's key (or ``row N`` when the key itself is unusable); it is never a value of any
    other column.
    """

    code: str
    message: str
    column: str | None = None
    record: str | None = None

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"column '{self.column}'" if self.column is not None else "",
                f"record {self.record}" if self.record is not None else "",
            )
            if part
        )
        return f"[{self.code}] {where + ': ' if where else ''}{self.message}"


class CorpusValidationError(UserError, ValueError):
    """Records break the schema. ``problems`` holds every problem found, not only the first."""

    def __init__(self, problems: Sequence[Problem], *, source: str) -> None:
        self.problems = tuple(problems)
        self.source = source
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(
            f"{source}: {len(self.problems)} problem(s) found; nothing was computed or written.\n{shown}{more}"
        )


class PrivacyError(PrivsynthError):
    """A privacy rule would be broken; privsynth stopped before computing anything."""


class BudgetExceededError(PrivacyError):
    """A spend would push the composed epsilon past the target or the per-source cap."""


class DeltaTooLargeError(PrivacyError, ValueError):
    """delta >= 1/n lets a mechanism publish a whole record with probability delta."""


class NotFittedError(PrivsynthError, AttributeError):
    """An estimator was used before ``fit`` was called."""


class IntegrityError(PrivsynthError):
    """A model or release on disk does not match its manifest (changed, missing or extra files)."""


class ReleaseRefusedError(PrivsynthError):
    """The release gate refused the release; ``reasons`` lists every hard failure."""

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)
