"""Presidio, imported without loading the Hugging Face pipeline it imports for engines privsynth never builds.

``presidio_analyzer`` imports ``transformers.pipeline`` as it loads, when transformers is installed, for its
Hugging Face NER engine and recognizer; that pulls in torchvision and transformers' image processing: 3.8 of the
7.1 s a fresh process took to import Presidio (measured with ``python -X importtime``), paid by every audit,
every sampling scrub and every Ray worker process that scans text, none of which uses those engines. Here, for
the importing thread only, transformers is hidden while Presidio imports; then Presidio's two references to
``transformers.pipeline`` are set to a function that imports it at first use, so its Hugging Face NER engine
and recognizer still work, in this process too, and transformers still imports normally. Nothing changes when
transformers or Presidio was imported already. One optional Presidio recognizer would stay off in such a process:
GLiNER (Presidio's ``gliner`` extra, not installed by privsynth), whose package imports transformers. privsynth's
scanner uses neither it nor the Hugging Face ones (its recognizers are listed in :mod:`privsynth.pii.engine`),
and it detects the same spans whether or not transformers was hidden (checked on a note with a name, an MRN, a
date, an age, an address, a phone number, an e-mail, a card, an IP, a URL, a VIN and an NPI).

Every privsynth module that needs Presidio at import time takes its names from here.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

#: Presidio's modules that keep ``transformers.pipeline`` as ``hf_pipeline`` (None when the import failed).
PIPELINE_HOLDERS = (
    "presidio_analyzer.nlp_engine.huggingface_token_pipe",
    "presidio_analyzer.predefined_recognizers.ner.huggingface_ner_recognizer",
)


class HideTransformers(importlib.abc.MetaPathFinder):
    """Answers "no such module" for ``transformers`` to the thread that made it; other threads import as usual."""

    def __init__(self) -> None:
        self._thread = threading.get_ident()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Refuse ``transformers`` and its submodules in the thread that made this finder."""
        if threading.get_ident() == self._thread and fullname.partition(".")[0] == "transformers":
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden while Presidio imports)", name=fullname)
        return None


def hf_pipeline(*args: Any, **kwargs: Any) -> Any:
    """``transformers.pipeline(*args, **kwargs)``, imported at the first call (what Presidio's engines call)."""
    from transformers import pipeline

    return pipeline(*args, **kwargs)


def import_quietly() -> None:
    """Import ``presidio_analyzer`` with transformers hidden from this thread, then give it a lazy pipeline."""
    if "presidio_analyzer" in sys.modules or "transformers" in sys.modules:
        return
    finder = HideTransformers()
    # new lists, not insert/remove: another thread may be walking the old list (the import system holds no lock
    # between finders), and removing in place would make it skip the finder after ours
    sys.meta_path = [finder, *sys.meta_path]
    try:
        import presidio_analyzer  # noqa: F401
    finally:
        sys.meta_path = [f for f in sys.meta_path if f is not finder]
    if importlib.util.find_spec("transformers") is None:  # not installed: Presidio saw the truth
        return
    for name in PIPELINE_HOLDERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "hf_pipeline", ...) is None:
            vars(module)["hf_pipeline"] = hf_pipeline


import_quietly()

from presidio_analyzer import EntityRecognizer, RecognizerResult  # noqa: E402 -- after the quiet import
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine, NoOpNlpEngine  # noqa: E402

__all__ = ["EntityRecognizer", "NlpArtifacts", "NlpEngine", "NoOpNlpEngine", "RecognizerResult"]
