"""A public, stateless byte-level tokenizer with typed placeholder tokens.

Token ids: 0-255 are UTF-8 bytes; then the special tokens (padding, begin, end); then placeholders, one per
PII type and one per (schema column, format) the text can mention. Every id is fixed by the *schema* (public),
never by the corpus: no vocabulary is ever fitted on private text (the bug of tokenizers trained on the data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from privsynth.data.schema import ColumnKind, Schema

PAD, BOS, EOS = 256, 257, 258
FIRST_PLACEHOLDER = 259

#: PII placeholders: the record's own identity, other people's, and generic ones from detectors.
IDENTITY_PLACEHOLDERS = (
    "PERSON",
    "PERSON_REV",
    "FIRST_NAME",
    "LAST_NAME",
    "SSN",
    "MRN",
    "EMAIL",
    "PHONE",
    "ADDRESS",
    "ZIP",
    "DOB:iso",
    "DOB:us",
)
OTHER_PLACEHOLDERS = (
    "OTHER_PERSON",
    "OTHER_PHONE",
    "OTHER_EMAIL",
    "OTHER_ADDRESS",
    "OTHER_ID",
    "DATE:iso",
    "DATE:us",
    "URL",
    "IP_ADDRESS",
    "CREDIT_CARD",
    "IBAN",
    "VIN",
    "AGE_OVER_89",
)
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*(?::[A-Za-z0-9_.\-]+)*(?:\|[a-z]+)?)>")


@dataclass(frozen=True)
class Vocabulary:
    """Placeholder names and ids for one schema."""

    placeholders: tuple[str, ...]

    @classmethod
    def for_schema(cls, schema: Schema) -> Vocabulary:
        """Identity and generic placeholders, plus value and date placeholders for the schema's columns."""
        names = list(IDENTITY_PLACEHOLDERS) + list(OTHER_PLACEHOLDERS)
        for column, spec in schema.columns.items():
            if spec.kind is ColumnKind.NUMERICAL:
                names.append(f"VAL:{column}")
            elif spec.kind is ColumnKind.DATETIME:
                names += [f"DATE:{column}|iso", f"DATE:{column}|us"]
            elif spec.kind is ColumnKind.CATEGORICAL:
                names.append(f"CAT:{column}")
        return cls(tuple(names))

    @property
    def size(self) -> int:
        """Number of output ids (bytes, specials and placeholders)."""
        return FIRST_PLACEHOLDER + len(self.placeholders)

    def id_of(self, name: str) -> int:
        """The token id of a placeholder name."""
        return FIRST_PLACEHOLDER + self.placeholders.index(name)

    def encode(self, text: str) -> list[int]:
        """Bytes of ``text``, with ``<NAME>`` placeholders as single tokens (unknown ones stay as bytes)."""
        index = {name: i for i, name in enumerate(self.placeholders)}
        out: list[int] = []
        last = 0
        for match in _PLACEHOLDER.finditer(text):
            name = match.group(1)
            if name not in index:
                continue
            out += list(text[last : match.start()].encode("utf-8"))
            out.append(FIRST_PLACEHOLDER + index[name])
            last = match.end()
        out += list(text[last:].encode("utf-8"))
        return out

    def decode(self, ids: list[int]) -> str:
        """Text with ``<NAME>`` placeholders (invalid UTF-8 from sampling is replaced, never raised)."""
        parts: list[str] = []
        buffer = bytearray()
        for token in ids:
            if token < 256:
                buffer.append(token)
                continue
            if buffer:
                parts.append(buffer.decode("utf-8", errors="replace"))
                buffer.clear()
            if token == EOS:
                break
            if token >= FIRST_PLACEHOLDER and token - FIRST_PLACEHOLDER < len(self.placeholders):
                parts.append(f"<{self.placeholders[token - FIRST_PLACEHOLDER]}>")
        if buffer:
            parts.append(buffer.decode("utf-8", errors="replace"))
        return "".join(parts)
