"""The PII scanner: Presidio offline, with privsynth's recognizers for identifiers Presidio lacks.

Nothing is fetched: the NLP engine is a blank spaCy tokenizer (or the user's local NER model), and the e-mail
recognizer validates domains against ``tldextract``'s bundled public-suffix snapshot instead of downloading it.
URL hits inside e-mail addresses are dropped (Presidio reports the domain of every e-mail as a URL).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import Any

from typing_extensions import override

from privsynth.errors import ConfigError
from privsynth.pii.detection import Detection
from privsynth.pii.nlp import build_nlp_engine, forgetting
from privsynth.pii.recognizers import (
    AgeOver89Recognizer,
    MrnRecognizer,
    NameDictionaryRecognizer,
    StreetAddressRecognizer,
    UsZipRecognizer,
    VinRecognizer,
)


def _offline_email_recognizer() -> Any:
    from presidio_analyzer.predefined_recognizers import EmailRecognizer
    from tldextract import TLDExtract

    extractor = TLDExtract(suffix_list_urls=(), cache_dir=None)  # bundled snapshot: never fetches

    class OfflineEmailRecognizer(EmailRecognizer):
        @override
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extractor(pattern_text).fqdn != "")

    return OfflineEmailRecognizer()


def _predefined() -> list[Any]:
    from presidio_analyzer import predefined_recognizers as pr

    return [
        _offline_email_recognizer(),
        pr.UsSsnRecognizer(),
        pr.PhoneRecognizer(supported_regions=("US", "UK", "DE", "FR", "CA")),
        pr.CreditCardRecognizer(),
        pr.IbanRecognizer(),
        pr.IpRecognizer(),
        pr.UrlRecognizer(),
        pr.DateRecognizer(),
        pr.UsPassportRecognizer(),
        pr.UsBankRecognizer(),
        pr.UsItinRecognizer(),
        pr.UsLicenseRecognizer(),
        pr.MedicalLicenseRecognizer(),
        pr.UsNpiRecognizer(),
    ]


class PiiScanner:
    """Finds PII spans in texts.

    Args:
        spacy_model: an installed spaCy NER model name or local path; ``None`` uses the blank tokenizer.
        score_threshold: minimum Presidio score kept.
        extra_first_names, extra_last_names: names added to the dictionary recognizer.
    """

    def __init__(
        self,
        *,
        spacy_model: str | None = None,
        score_threshold: float = 0.4,
        extra_first_names: Iterable[str] = (),
        extra_last_names: Iterable[str] = (),
    ) -> None:
        self.spacy_model = spacy_model
        self.score_threshold = score_threshold
        self.extra_first_names = tuple(extra_first_names)
        self.extra_last_names = tuple(extra_last_names)

    def __getstate__(self) -> dict[str, Any]:
        """Settings only: a copy sent to another process or machine builds its own Presidio engine."""
        return {k: v for k, v in self.__dict__.items() if k != "_engine"}

    @cached_property
    def _engine(self) -> tuple[Any, list[str], list[str]]:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

        nlp_engine, nlp_name = build_nlp_engine(self.spacy_model)
        recognizers = [
            *_predefined(),
            MrnRecognizer(),
            UsZipRecognizer(),
            StreetAddressRecognizer(),
            VinRecognizer(),
            AgeOver89Recognizer(),
            NameDictionaryRecognizer(self.extra_first_names, self.extra_last_names),
        ]
        if self.spacy_model:
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            recognizers.append(SpacyRecognizer(supported_entities=["PERSON", "LOCATION", "NRP"]))
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
        engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
        entities = sorted({e for r in recognizers for e in r.supported_entities})
        detectors = [nlp_name, *(type(r).__name__ for r in recognizers)]
        return engine, entities, detectors

    @property
    def detectors(self) -> list[str]:
        """Names of the NLP engine and every active recognizer (written into the report)."""
        return self._engine[2]

    @property
    def entities(self) -> list[str]:
        """Entity types the scanner can report."""
        return self._engine[1]

    def scan(self, text: str) -> list[Detection]:
        """PII spans of one text, URL-inside-e-mail hits removed."""
        with forgetting(self._engine[0].nlp_engine):  # the text's words do not stay in spaCy's vocabulary
            return self._scan(text)

    def scan_many(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> list[list[Detection]]:
        """Scan every text (``progress`` is called with the number done, every 100 texts).

        The texts' words leave spaCy's vocabulary when the scan returns, so a scanner kept for later calls (a Ray
        worker keeps it between an audit's scans) holds nothing of the texts it read.
        """
        out = []
        with forgetting(self._engine[0].nlp_engine):
            for i, text in enumerate(texts):
                out.append(self._scan(text))
                if progress is not None and (i + 1) % 100 == 0:
                    progress(i + 1)
        return out

    def _scan(self, text: str) -> list[Detection]:
        engine, entities, _ = self._engine
        if not text:
            return []
        results = engine.analyze(text=text, language="en", entities=entities, score_threshold=self.score_threshold)
        found = [Detection(r.entity_type, r.start, r.end, float(r.score)) for r in results]
        emails = [(d.start, d.end) for d in found if d.entity == "EMAIL_ADDRESS"]
        return sorted(
            (d for d in found if not (d.entity == "URL" and any(s <= d.start and d.end <= e for s, e in emails))),
            key=lambda d: (d.start, d.end, d.entity),
        )


def default_scanner() -> PiiScanner:
    """One shared pattern-and-dictionary scanner (building Presidio's engine takes a moment; it is stateless)."""
    return scanner_for(None)


@functools.lru_cache(maxsize=4)
def scanner_for(spacy_model: str | None) -> PiiScanner:
    """One shared scanner per spaCy NER model (``None``: patterns and name lists), its engine built now.

    Built at once so a model that is not on disk fails here with what to do, not inside the first scan.
    """
    scanner = PiiScanner(spacy_model=spacy_model)
    if spacy_model:
        try:
            _ = scanner._engine
        except (OSError, ImportError, ValueError) as exc:
            raise ConfigError(
                f"text.spacy_model {spacy_model!r} cannot be loaded ({type(exc).__name__}): give the folder of a "
                "spaCy pipeline saved with nlp.to_disk or an installed model package (nothing is downloaded), or "
                "leave text.spacy_model out to find names by patterns and name lists"
            ) from None
    return scanner
