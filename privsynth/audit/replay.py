"""Replay scan: real identifier values searched verbatim (normalised) in synthetic output, with Aho-Corasick.

Needles are every identifier value of the real corpus (names in any order, e-mails, SSNs, MRNs, phones,
addresses...) and every PII span detected in real text. Text is normalised before matching (lower case,
collapsed whitespace, separators inside digit runs removed), and a match must sit on word boundaries. The
needles are real values: they never leave this module except as counts, or as examples in an INTERNAL report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

_SPACES = re.compile(r"\s+")
_DIGIT_SEPARATORS = re.compile(r"(?<=\d)[\s().\-/]+(?=\d)")
MIN_NEEDLE = 5


def normalise(text: str) -> str:
    """Lower case, one space between words, no separators inside digit runs.

    >>> normalise("  SSN: 123-45 6789, Ms.  Smith ")
    'ssn: 123456789, ms. smith'
    """
    return _DIGIT_SEPARATORS.sub("", _SPACES.sub(" ", text.strip().lower()))


def spaced(text: str) -> str:
    """As :func:`normalise`, but a separator inside a digit run becomes one space: digit groups stay words.

    >>> spaced("  Phone: (421) 310-3262 ")
    'phone: (421 310 3262'
    """
    return _SPACES.sub(" ", _DIGIT_SEPARATORS.sub(" ", text.strip().lower()))


def name_variants(full_name: str) -> set[str]:
    """A full name in the orders a note may use: 'First Last', 'Last, First', 'Last First'.

    >>> sorted(name_variants("Ann Lee"))
    ['ann lee', 'lee ann', 'lee, ann']
    """
    parts = normalise(full_name).split(" ")
    if len(parts) < 2:
        return {normalise(full_name)}
    first, last = " ".join(parts[:-1]), parts[-1]
    return {f"{first} {last}", f"{last}, {first}", f"{last} {first}"}


@dataclass(frozen=True)
class ReplayHit:
    """A real value found in synthetic output (``kind`` is the identifier type; ``value`` is internal)."""

    kind: str
    value: str
    start: int
    end: int


class ReplayScanner:
    """Aho-Corasick automaton over normalised real values, each tagged with its identifier type."""

    def __init__(self) -> None:
        self._machine = ahocorasick.Automaton()
        self._count = 0

    def add(self, kind: str, values: Iterable[str]) -> None:
        """Add real values of one identifier type (names get their orderings)."""
        for value in values:
            if not isinstance(value, str):
                continue
            needles = name_variants(value) if kind in ("person", "PERSON") else {normalise(value)}
            for raw in needles:
                needle = raw.strip("()[]{}<>.,;:'\"-/ ")
                if len(needle) >= MIN_NEEDLE and needle not in self._machine:
                    self._machine.add_word(needle, (kind, needle))
                    self._count += 1

    def __len__(self) -> int:
        return self._count

    def finalize(self) -> ReplayScanner:
        """Build the automaton (call once after every :meth:`add`)."""
        if self._count:
            self._machine.make_automaton()
        return self

    def find(self, text: str) -> list[ReplayHit]:
        """Real values occurring in ``text`` on word boundaries (positions in the normalised text)."""
        if not self._count or not text:
            return []
        norm = normalise(text)
        hits = []
        for end, (kind, needle) in self._machine.iter(norm):
            start = end - len(needle) + 1
            before = norm[start - 1] if start > 0 else " "
            after = norm[end + 1] if end + 1 < len(norm) else " "
            if not (before.isalnum() or after.isalnum()):
                hits.append(ReplayHit(kind, needle, start, end + 1))
        return hits
