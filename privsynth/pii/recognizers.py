"""Recognizers for HIPAA Safe-Harbor identifiers Presidio lacks offline.

MRN, US ZIP, street address, VIN, ages over 89, and person names by dictionary and context.

Every recognizer here is self-contained (regular expressions, dictionaries, Aho-Corasick); none needs a spaCy
model. They are tuned for recall on clinical text: the audit would rather flag a surrogate than miss a leak,
and the surrogate registry then explains what was generated.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import ahocorasick
from faker.providers.address.en_US import Provider as AddressProvider
from faker.providers.person.en_US import Provider as PersonProvider
from typing_extensions import override

from privsynth.pii.presidio import EntityRecognizer, NlpArtifacts, RecognizerResult

TITLES = ("Mr", "Mrs", "Ms", "Miss", "Dr", "Prof", "Mx")
_STREET_SUFFIXES = sorted(
    set(AddressProvider.street_suffixes)
    | {
        "St",
        "Ave",
        "Rd",
        "Blvd",
        "Ln",
        "Dr",
        "Ct",
        "Pl",
        "Ter",
        "Hwy",
        "Pkwy",
        "Cir",
        "Sq",
        "Trl",
    },
    key=len,
    reverse=True,
)


class GroupPatternRecognizer(EntityRecognizer):
    """Regular expressions whose named group ``value`` is the entity (context stays outside the span)."""

    def __init__(self, entity: str, patterns: Iterable[tuple[str, float]], *, name: str) -> None:
        super().__init__(supported_entities=[entity], name=name, supported_language="en")
        self.entity = entity
        self.compiled = [(re.compile(p), score) for p, score in patterns]

    @override
    def load(self) -> None:
        return None

    def validate(self, value: str) -> float | None:
        """Score adjustment for a match: ``None`` keeps the pattern's score; 0 drops the match."""
        del value
        return None

    @override
    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None) -> list[RecognizerResult]:
        del nlp_artifacts
        if self.entity not in entities:
            return []
        found: dict[tuple[int, int], float] = {}
        for pattern, score in self.compiled:
            for match in pattern.finditer(text):
                start, end = match.span("value")
                checked = self.validate(match.group("value"))
                final = score if checked is None else checked
                if final > 0 and final > found.get((start, end), 0.0):
                    found[(start, end)] = final
        return [RecognizerResult(self.entity, s, e, score) for (s, e), score in found.items()]


class MrnRecognizer(GroupPatternRecognizer):
    """Medical record numbers next to their context word (MRN, medical record, chart number)."""

    def __init__(self) -> None:
        super().__init__(
            "MEDICAL_RECORD_NUMBER",
            [
                (
                    r"(?i)\b(?:MRN|med(?:ical)?\s+rec(?:ord)?(?:\s+(?:no\.?|number|#))?|chart\s*(?:no\.?|number|#))"
                    r"[\s:#.]*(?P<value>[A-Z]{0,3}-?\d{5,12})\b",
                    0.9,
                ),
                (r"(?i)\bpatient\s+(?:id|number|no\.?)[\s:#]*(?P<value>[A-Z]{0,3}-?\d{5,12})\b", 0.75),
            ],
            name="MrnRecognizer",
        )


class UsZipRecognizer(GroupPatternRecognizer):
    """US ZIP codes after a state abbreviation or a ZIP context word."""

    _STATES = "|".join(sorted(AddressProvider.states_abbr))

    def __init__(self) -> None:
        super().__init__(
            "US_ZIP_CODE",
            [
                (rf"\b(?:{self._STATES}),?\s+(?P<value>\d{{5}}(?:-\d{{4}})?)\b", 0.85),
                (r"(?i)\b(?:zip|zip\s*code|postal\s*code)[\s:#]*(?P<value>\d{5}(?:-\d{4})?)\b", 0.85),
            ],
            name="UsZipRecognizer",
        )


class StreetAddressRecognizer(GroupPatternRecognizer):
    """Street addresses: a house number, one to four capitalised words and a street suffix (unit optional)."""

    def __init__(self) -> None:
        suffix = "|".join(re.escape(s) for s in _STREET_SUFFIXES)
        pattern = (
            rf"(?P<value>\b\d{{1,6}}\s+(?:[A-Z][a-zA-Z'-]*\.?\s+){{1,4}}(?:{suffix})\b\.?"
            r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[\w-]+)?)"
        )
        super().__init__("STREET_ADDRESS", [(pattern, 0.8)], name="StreetAddressRecognizer")


_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_check_digit_ok(vin: str) -> bool:
    """ISO 3779 / North American check digit (position 9).

    >>> vin_check_digit_ok("1M8GDM9AXKP042788"), vin_check_digit_ok("1M8GDM9A1KP042788")
    (True, False)
    """
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin.upper(), _VIN_WEIGHTS, strict=True))
    check = total % 11
    return vin[8].upper() == ("X" if check == 10 else str(check))


class VinRecognizer(GroupPatternRecognizer):
    """Vehicle identification numbers: 17 characters without I, O, Q; higher score with a valid check digit."""

    def __init__(self) -> None:
        super().__init__(
            "VIN",
            [(r"\b(?P<value>(?=[A-HJ-NPR-Z0-9]*\d)(?=[A-HJ-NPR-Z0-9]*[A-HJ-NPR-Z])[A-HJ-NPR-Z0-9]{17})\b", 0.4)],
            name="VinRecognizer",
        )

    @override
    def validate(self, value: str) -> float | None:
        return 0.95 if vin_check_digit_ok(value) else None


class AgeOver89Recognizer(GroupPatternRecognizer):
    """Ages of 90 and above (HIPAA treats them as identifiers)."""

    def __init__(self) -> None:
        super().__init__(
            "AGE_OVER_89",
            [
                (r"(?i)\b(?P<value>(?:9\d|1[0-2]\d))[\s-]*(?:years?|yrs?|y/?o)[\s-]*(?:old)?\b", 0.85),
                (r"(?i)\b(?:aged?|age:)\s*(?P<value>(?:9\d|1[0-2]\d))\b", 0.85),
            ],
            name="AgeOver89Recognizer",
        )


class NameDictionaryRecognizer(EntityRecognizer):
    """Person names from dictionaries (Faker's en_US first and last names, plus extra names) with context.

    Patterns: 'First Last', 'Last, First', and a title before a known name ('Ms. Calderon').

    Matching uses an Aho-Corasick automaton over whole words, so adding the real corpus' own names (the replay
    scan does) costs little.
    """

    def __init__(self, extra_first: Iterable[str] = (), extra_last: Iterable[str] = ()) -> None:
        super().__init__(supported_entities=["PERSON"], name="NameDictionaryRecognizer", supported_language="en")
        self.first = {n.lower() for n in PersonProvider.first_names} | {n.lower() for n in extra_first}
        self.last = {n.lower() for n in PersonProvider.last_names} | {n.lower() for n in extra_last}
        self._word = re.compile(r"[A-Z][a-zA-Z'-]+")
        self._title = re.compile(rf"\b(?:{'|'.join(TITLES)})\.?\s+(?P<last>[A-Z][a-zA-Z'-]+)")

    @override
    def load(self) -> None:
        return None

    @override
    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None) -> list[RecognizerResult]:
        del nlp_artifacts
        if "PERSON" not in entities:
            return []
        out: dict[tuple[int, int], float] = {}
        words = list(self._word.finditer(text))
        for a, b in itertools.pairwise(words):
            gap = text[a.end() : b.start()]
            first, second = a.group().lower(), b.group().lower()
            if gap in (" ", "  ") and first in self.first and second in self.last:
                out[(a.start(), b.end())] = 0.85
            elif gap in (", ", ",") and first in self.last and second in self.first:
                out[(a.start(), b.end())] = 0.8
        for match in self._title.finditer(text):
            if match.group("last").lower() in self.last or match.group("last").lower() in self.first:
                out.setdefault(match.span(), 0.85)
        return [RecognizerResult("PERSON", s, e, score) for (s, e), score in out.items()]


def automaton(words: Iterable[str]) -> ahocorasick.Automaton:
    """An Aho-Corasick automaton over normalised words (values are the words themselves)."""
    machine = ahocorasick.Automaton()
    for word in words:
        if word:
            machine.add_word(word, word)
    machine.make_automaton()
    return machine
