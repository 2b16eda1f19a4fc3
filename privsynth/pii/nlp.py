"""An offline NLP engine for Presidio: spaCy's blank English tokenizer, lowercased words as lemmas.

Presidio's default engine downloads a spaCy model. This one needs nothing: pattern recognizers work as usual,
and context words ("MRN", "patient") still raise scores because tokens and lemmas exist. When the user has a
spaCy NER model installed, :func:`build_nlp_engine` uses it instead and names become detectable by NER too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typing_extensions import override

from privsynth.errors import ConfigError
from privsynth.pii.presidio import NlpArtifacts, NlpEngine, NoOpNlpEngine

log = logging.getLogger(__name__)


class BlankSpacyNlpEngine(NoOpNlpEngine):
    """Tokens from ``spacy.blank('en')``; lemmas are lowercased token texts; no entities."""

    engine_name = "blank_spacy"

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank"}])
        import spacy

        self._blank = spacy.blank("en")

    @override
    def process_text(self, text: str, language: str) -> NlpArtifacts:
        doc = self._blank(text)
        return NlpArtifacts(
            entities=[],
            tokens=doc,
            tokens_indices=[t.idx for t in doc],
            lemmas=[t.lower_ for t in doc],
            nlp_engine=self,
            language=language,
        )

    @override
    def process_batch(
        self, texts: Any, language: str, batch_size: int = 1, n_process: int = 1, as_tuples: bool = False, **kwargs: Any
    ) -> Any:
        for item in texts:
            if as_tuples:
                text, context = item
                yield text, self.process_text(str(text), language), context
            else:
                yield item, self.process_text(str(item), language)


def build_nlp_engine(spacy_model: str | None) -> tuple[NlpEngine, str]:
    """A spaCy NER engine for ``spacy_model`` (an installed package or a local path) or the blank engine."""
    if spacy_model:
        import spacy.util
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        # Presidio downloads a model it cannot find: nothing is downloaded at run time here
        if not (spacy.util.is_package(spacy_model) or Path(spacy_model).is_dir()):
            raise ConfigError(
                f"spaCy model {spacy_model!r} is neither an installed package nor a folder (nothing is downloaded): "
                "give the folder of a pipeline saved with nlp.to_disk, or install the model package first"
            )
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": spacy_model}])
        engine.load()
        return engine, f"spacy:{spacy_model}"
    engine_blank = BlankSpacyNlpEngine()
    engine_blank.load()
    return engine_blank, "blank-spacy (no NER model: names by dictionary and context)"


@contextlib.contextmanager
def forgetting(nlp_engine: NlpEngine) -> Iterator[None]:
    """Texts processed inside leave no trace in the engine's spaCy pipelines once it exits.

    spaCy keeps every new string it tokenizes (its vocabulary's string store) and how it split each piece of text
    (the tokenizer's cache) for the life of the pipeline: a scanner that lives on (in this process, or in a Ray
    worker process between calls) would hold the names, MRNs and numbers of every real text it scanned. Inside
    ``memory_zone`` (spaCy 3.8) they are dropped when the zone closes; nothing scanned may keep a token past it
    (detections are plain offsets and scores).
    """
    pipelines = [getattr(nlp_engine, "_blank", None), *(getattr(nlp_engine, "nlp", None) or {}).values()]
    with contextlib.ExitStack() as stack:
        for nlp in pipelines:
            if nlp is not None and hasattr(nlp, "memory_zone"):
                stack.enter_context(nlp.memory_zone())
        yield
