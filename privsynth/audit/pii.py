"""The PII audit of a synthetic corpus: detectors, replay scan, surrogate-aware classification, OCR.

A detection is **generated** when its text is part of the synthetic record's own surrogate identity, or a date of
the record's own synthetic fields; **other record** when it is a distinctive fake of another synthetic record
(:data:`~privsynth.audit.registry.CROSS_RECORD_FIELDS`: a street address, a reserved URL; never a name or a date,
which a real identifier equals by chance); anything else is **unexplained**. A replay hit (a real identifier value
found verbatim) is unexplained unless the same value is also that record's surrogate (Faker may draw a name a real
patient has). Counts leave this module; the spans themselves only appear in INTERNAL example lists.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from privsynth.audit.registry import SurrogateRegistry
from privsynth.audit.replay import ReplayScanner, normalise, spaced
from privsynth.data.corpus import Corpus
from privsynth.data.schema import ColumnKind, Schema
from privsynth.engine import Engine, LocalEngine
from privsynth.pii.detection import Detection

if TYPE_CHECKING:  # Presidio (and torch, which it imports) load only when a scan runs
    from privsynth.pii.engine import PiiScanner

_KIND_OF_ENTITY = {"PERSON": "person"}


@dataclass
class EntityCounts:
    """Detections of one entity type in one column (a replay hit is never ``other_record``)."""

    generated: int = 0
    unexplained: int = 0
    other_record: int = 0  #: a distinctive fake of another synthetic record (still fake, but not this record's)


@dataclass
class PiiReport:
    """Aggregate PII findings (counts only unless examples were asked for)."""

    detectors: list[str]
    columns: dict[str, dict[str, EntityCounts]] = field(default_factory=dict)
    scanned_cells: int = 0
    replay_needles: int = 0
    replay: dict[str, EntityCounts] = field(default_factory=dict)
    ocr: str = "not run"
    ocr_images: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def unexplained(self) -> int:
        """Detections no surrogate or synthetic field explains."""
        return sum(c.unexplained for cols in self.columns.values() for c in cols.values())

    @property
    def replay_unexplained(self) -> int:
        """Real identifier values found in synthetic output and not explained by the record's surrogate."""
        return sum(c.unexplained for c in self.replay.values())


def _record_values(row: pd.Series) -> set[str]:
    return {v for v in row.to_numpy() if isinstance(v, str) and v}


#: Surrogate identity fields that hold names (``other_`` twins too): the only words a name span may be made of.
#: They are also the replay's name kinds (:class:`~privsynth.data.schema.PiiType` values, "person" for detected names).
_NAME_FIELDS = {"first_name", "last_name", "person"}


def _name_groups(row: pd.Series) -> tuple[frozenset[str], ...]:
    """The words of each fake person of a record's identity: its own name, and its ``other_`` person's."""
    groups: dict[str, set[str]] = {}
    for k, v in row.items():
        prefix = "other_" if str(k).startswith("other_") else ""
        if str(k).removeprefix(prefix) in _NAME_FIELDS and isinstance(v, str):
            groups.setdefault(prefix, set()).update(w for w in re.split(r"[^a-z'-]+", normalise(v)) if w)
    return tuple(frozenset(words) for words in groups.values())


@dataclass(frozen=True)
class _Own:
    """What a synthetic record may write of its own: its surrogate identity, dates and whole numbers."""

    raw: set[str]  #: as written
    values: set[str]  #: normalised (:func:`normalise`)
    written: set[str]  #: with their digit groups as written (:func:`spaced`)
    names: tuple[frozenset[str], ...]  #: the words of each of its fake persons' names (:func:`_name_groups`)

    @classmethod
    def of(cls, raw: set[str], names: tuple[frozenset[str], ...]) -> _Own:
        return cls(raw, {normalise(v) for v in raw}, {spaced(v) for v in raw}, names)


def _covered(text: str, start: int, end: int, values: Iterable[str]) -> bool:
    """Whether ``text[start:end]`` lies inside an occurrence of one of ``values`` in ``text`` (case ignored).

    A name detector reads "Oliver Loaf" in the record's own fake address "5800 Oliver Loaf, Mccartyview": those
    words are its own there, written as part of that address, and nowhere else.
    """
    for value in values:
        if len(value) > end - start:
            for found in re.finditer(re.escape(value), text, flags=re.IGNORECASE):
                if found.start() <= start and end <= found.end():
                    return True
    return False


_TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof"}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _own_name(value: str, names: tuple[frozenset[str], ...]) -> bool:
    """A name span ("chapman, ms") whose name words all belong to one of the record's fake persons (``names``).

    Only names: a real first name that happens to be a word of the record's fake street, city or e-mail ("5800
    Oliver Loaf") is not its own, nor is the record's first name with its other person's surname.
    """
    words = {w for w in re.split(r"[^a-z'-]+", value.lower()) if w and w not in _TITLES}
    return bool(words) and any(words <= person for person in names)


def _words_of(value: str, texts: Iterable[str]) -> bool:
    pattern = re.compile(rf"(?<![a-z0-9]){re.escape(value)}(?![a-z0-9])")
    return any(pattern.search(t) for t in texts)


def _within(value: str, own: set[str], as_written: str | None = None, own_written: Iterable[str] = ()) -> bool:
    """``value`` (normalised) is one of the record's ``own`` values or whole words of one, never part of a word.

    Could a real identifier pass as the record's own fake? A plain substring test let a real ZIP code pass as five
    digits of the record's own card or account number, and a real surname as part of its fake city
    ("Jackson" in "Jacksonville"); whole words cannot. Normalising glues digit groups together ("(421) 310-3262"
    is "(4213103262"), so a span's digit groups as written (``as_written``, :func:`spaced`) are also looked for
    whole among the record's values written the same way (``own_written``): "310-3262" is the end of its own phone.
    """
    if value in own or _words_of(value, own):
        return True
    return as_written is not None and bool(as_written) and _words_of(as_written, own_written)


def _whole(value: object) -> bool:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return number and math.isfinite(float(value)) and float(value).is_integer()  # type: ignore[arg-type]


def _date_forms(values: list[pd.Timestamp]) -> set[str]:
    out = set()
    for stamp in values:
        if pd.notna(stamp):
            out |= {stamp.strftime(f) for f in ("%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%B %d, %Y", "%b %d, %Y")}
    return out


def scan_texts(scanner: PiiScanner, texts: list[str], engine: Engine | None = None) -> list[list[Detection]]:
    """``scanner`` over every text on ``engine`` (each worker builds Presidio once), in order."""
    if engine is None or isinstance(engine, LocalEngine):
        return scanner.scan_many(texts)
    return engine.map_batches(scanner.scan_many, texts, batch_size=200)


@dataclass
class Needles:
    """What the replay scan looks for, gathered from real records (a table's batches add up, in order).

    Per identifier column its values, per text column the PII spans detected in its texts: kept apart so that a
    corpus read in batches adds them to the automaton in the same order as a whole table (identifiers first).
    """

    identifiers: dict[str, list[str]] = field(default_factory=dict)
    spans: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def extend(self, other: Needles) -> None:
        """Append ``other``'s values after this one's."""
        for name, values in other.identifiers.items():
            self.identifiers.setdefault(name, []).extend(values)
        for name, found in other.spans.items():
            self.spans.setdefault(name, []).extend(found)

    def scanner(self, schema: Schema) -> ReplayScanner:
        """The replay automaton over every needle."""
        replay = ReplayScanner()
        for name, spec in schema.columns.items():
            if name in self.identifiers and spec.pii is not None:
                replay.add(spec.pii.value, self.identifiers[name])
        for name in schema.names(ColumnKind.TEXT):
            for kind, span in self.spans.get(name, []):
                replay.add(kind, [span])
        return replay.finalize()


def find_needles(records: pd.DataFrame, schema: Schema, scanner: PiiScanner, engine: Engine | None = None) -> Needles:
    """Every identifier value of ``records`` and every PII span detected in any of their texts."""
    needles = Needles()
    for name, spec in schema.columns.items():
        if spec.kind is ColumnKind.IDENTIFIER and spec.pii is not None and name in records.columns:
            needles.identifiers[name] = records[name].dropna().astype(str).tolist()
    for name in schema.names(ColumnKind.TEXT):
        if name not in records.columns:
            continue
        texts = records[name].dropna().astype(str).tolist()
        found_spans = needles.spans.setdefault(name, [])
        for text, found in zip(texts, scan_texts(scanner, texts, engine), strict=True):
            for d in found:
                if d.entity not in ("DATE_TIME", "URL"):
                    found_spans.append((_KIND_OF_ENTITY.get(d.entity, d.entity.lower()), text[d.start : d.end]))
    return needles


def build_replay(real: Corpus, scanner: PiiScanner, engine: Engine | None = None) -> ReplayScanner:
    """Needles: every identifier value of the real corpus and every PII span detected in any of its texts.

    All texts, not a sample: a name that only the 5,001st note holds is as much a real identifier as any other
    (measured: pattern-only Presidio scans ~550 notes/s, so 100k notes take about three minutes).
    """
    return find_needles(real.records, real.schema, scanner, engine).scanner(real.schema)


def _ocr(images: list[Image.Image], tesseract: str) -> list[str]:
    """Text burned into images, with the tesseract command-line tool (images upscaled for legibility)."""
    texts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, image in enumerate(images):
            path = Path(tmp) / f"{i}.png"
            scale = max(1, 256 // max(image.size))
            image.convert("L").resize((image.size[0] * scale, image.size[1] * scale)).save(path)
            proc = subprocess.run(
                [tesseract, str(path), "stdout", "--psm", "6"],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            texts.append(proc.stdout.strip())
    return texts


def audit_pii(
    real: Corpus | ReplayScanner,
    synthetic: Corpus,
    *,
    scanner: PiiScanner,
    registry: pd.DataFrame | SurrogateRegistry | None,
    include_examples: bool = False,
    ocr: str = "auto",
    ocr_limit: int = 300,
    progress: Callable[[str], None] | None = None,
    engine: Engine | None = None,
) -> PiiReport:
    """Scan every synthetic text and string column; replay real identifiers; classify what was found.

    ``real`` is the real records, or the replay automaton already built from them (:class:`Needles`).

    The detectors run on ``engine`` (this process by default); classifying and counting stay here.
    """
    report = PiiReport(detectors=[*scanner.detectors, "ReplayScanner (Aho-Corasick over real identifiers)"])
    if progress is not None and not isinstance(real, ReplayScanner):
        progress("building the replay automaton from real identifiers")
    replay = real if isinstance(real, ReplayScanner) else build_replay(real, scanner, engine)
    report.replay_needles = len(replay)
    schema = synthetic.schema
    records = synthetic.records
    if isinstance(registry, pd.DataFrame):
        registry = SurrogateRegistry.from_frame(registry, schema.key)
    surrogates = registry.own if registry is not None else None
    all_surrogates: Container[str] = registry if registry is not None else frozenset()
    dates = schema.names(ColumnKind.DATETIME)
    numbers = [n for n in schema.names(ColumnKind.NUMERICAL) if n in records.columns]
    scan_columns = [
        n
        for n, c in schema.columns.items()
        if c.kind in (ColumnKind.TEXT, ColumnKind.IDENTIFIER, ColumnKind.CATEGORICAL) and n in records.columns
    ]
    cells = [
        (row_index, column, value)
        for column in scan_columns
        for row_index, value in enumerate(records[column].tolist())
        if isinstance(value, str) and value
    ]
    found_in = dict(
        zip(
            ((r, c) for r, c, _ in cells),
            scan_texts(scanner, [v for _, _, v in cells], engine),
            strict=True,
        )
    )
    for row_index in range(len(records)):
        row = records.iloc[row_index]
        key = row[schema.key] if schema.key in records.columns else None
        written: set[str] = set()  # the record's own values as written, normalised below
        names: tuple[frozenset[str], ...] = ()
        if surrogates is not None and key in surrogates.index:
            written = _record_values(surrogates.loc[key])
            names = _name_groups(surrogates.loc[key])
            # the surrogate birth date as notes write it ("DOB 02/15/1971"), not only as the registry stores it
            stored = [v for v in surrogates.loc[key].to_numpy() if isinstance(v, str) and _ISO_DATE.fullmatch(v)]
            written |= _date_forms([pd.Timestamp(v) for v in stored])
        written |= _date_forms([row[d] for d in dates])
        # the record's own synthetic whole numbers ("a 92-year-old" when its age field is 92: AGE_OVER_89)
        written |= {str(int(row[n])) for n in numbers if _whole(row[n])}
        own = _Own.of(written, names)
        for column in scan_columns:
            value = row[column]
            if not isinstance(value, str) or not value:
                continue
            report.scanned_cells += 1
            _classify(report, column, value, found_in[row_index, column], own, all_surrogates, include_examples)
            for hit in replay.find(value):
                counts = report.replay.setdefault(hit.kind, EntityCounts())
                # a real name is the record's own only as one of its fake persons' names, never as words of its
                # fake street or city ("Hill" in "5800 Oliver Hill")
                if hit.kind not in _NAME_FIELDS:
                    mine = _within(hit.value, own.values)
                else:
                    mine = _own_name(hit.value, own.names) or _covered(normalise(value), hit.start, hit.end, own.values)
                if mine:
                    counts.generated += 1
                else:
                    counts.unexplained += 1
                    if include_examples and len(report.examples) < 50:
                        report.examples.append(
                            {
                                "check": "replay",
                                "column": column,
                                "record": str(key),
                                "kind": hit.kind,
                                "text": hit.value,
                            }
                        )
    _ocr_images(report, synthetic, scanner, replay, ocr, ocr_limit)
    return report


def _classify(
    report: PiiReport,
    column: str,
    value: str,
    found: list[Detection],
    own: _Own,
    all_surrogates: Container[str],
    include_examples: bool,
) -> None:
    per_entity = report.columns.setdefault(column, {})
    for d in found:
        span = normalise(value[d.start : d.end])
        counts = per_entity.setdefault(d.entity, EntityCounts())
        if d.entity == "PERSON":
            # "Mr. Smith" is explained when Smith is the record's surrogate surname, "Smith, Jane" when both words
            # are its own; "Valerie Smith" is not (a real first name before the fake surname), nor "Oliver Hill"
            # when its fake street is "5800 Oliver Hill", unless written as part of that address
            explained = _own_name(span, own.names) or _covered(value, d.start, d.end, own.raw)
        else:
            explained = span in own.values or (
                len(span) >= 4 and _within(span, own.values, spaced(value[d.start : d.end]), own.written)
            )
        if explained:
            counts.generated += 1
        elif span in all_surrogates:  # only distinctive fakes: a name or date of another record explains nothing
            counts.other_record += 1
        else:
            counts.unexplained += 1
            if include_examples and len(report.examples) < 50:
                report.examples.append(
                    {"check": "detector", "column": column, "kind": d.entity, "text": value[d.start : d.end]}
                )


def _ocr_images(
    report: PiiReport, synthetic: Corpus, scanner: PiiScanner, replay: ReplayScanner, mode: str, limit: int
) -> None:
    columns = synthetic.schema.names(ColumnKind.IMAGE)
    if mode == "off" or not columns:
        report.ocr = "off" if mode == "off" else "no image columns"
        return
    tesseract = shutil.which("tesseract")
    if tesseract is None:
        report.ocr = "tesseract not installed (Debian: apt-get install tesseract-ocr)"
        return
    images = []
    for column in columns:
        for i in range(min(limit, len(synthetic))):
            if synthetic.records[column].iloc[i] is not None:
                images.append(synthetic.image(column, i))
    texts = _ocr(images, tesseract)
    report.ocr_images = len(images)
    report.ocr = f"tesseract on {len(images)} image(s)" + (
        f" (first {limit} per column)" if len(synthetic) > limit else ""
    )
    for text in texts:
        if not text:
            continue
        per = report.columns.setdefault("<ocr>", {})
        for d in scanner.scan(text):
            per.setdefault(d.entity, EntityCounts()).unexplained += 1
        for hit in replay.find(text):
            report.replay.setdefault(hit.kind, EntityCounts()).unexplained += 1


def scrubbed_at_sampling(counts: Mapping[str, int], records: int) -> dict[str, Any]:
    """The spans the sampling scrub replaced (``synthetic.json``), per text column and as a rate per record.

    The PII scan reads texts after the scrub, so its unexplained count no longer shows what a model wrote of its
    own accord outside its placeholders; this does (the largest rate over text columns). Synthetic texts only.
    """
    columns = {str(c): int(n) for c, n in counts.items()}
    rate = max((n / max(records, 1) for n in columns.values()), default=None)
    return {"columns": columns, "records": records, "rate": rate}
