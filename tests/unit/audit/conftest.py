"""Real-like splits of the demo corpus for audit tests: train, holdout and an unseen 'oracle' third."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from privsynth.audit.run import AuditConfig, Collaborators
from privsynth.data.corpus import Corpus
from privsynth.data.demo import build_demo_records, demo_schema


class HashingTextEmbedder:
    """A cheap, real text representation for tests (character n-gram hashing, L2-normalised)."""

    name = "hashing-char-ngrams"
    evidence = True

    def __init__(self) -> None:
        self.vectorizer = HashingVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), n_features=512, alternate_sign=False
        )

    def embed(self, items: Sequence[object]) -> np.ndarray:
        matrix = self.vectorizer.transform([t if isinstance(t, str) else "" for t in items]).toarray()
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.maximum(norms, 1e-9)).astype(np.float32)


@dataclass(frozen=True)
class Splits:
    train: Corpus
    holdout: Corpus
    oracle: Corpus


@pytest.fixture(scope="session")
def splits() -> Splits:
    frame, images = build_demo_records(900, seed=21)
    frame = frame.copy()
    frame["scan"] = [images[rel] for rel in frame["scan"]]  # image bytes in the cells
    people = frame["patient_id"].unique()
    order = np.random.default_rng(0).permutation(people)
    thirds = np.array_split(order, 3)
    schema = demo_schema()
    parts = [
        Corpus(records=frame[frame["patient_id"].isin(set(t))].reset_index(drop=True), schema=schema, root=Path("."))
        for t in thirds
    ]
    return Splits(*parts)


@pytest.fixture
def fast_config() -> AuditConfig:
    return AuditConfig(attacks=False, pii=False, fidelity=False, bootstrap=50, ocr="off")


@pytest.fixture
def tools() -> Collaborators:
    return Collaborators(text=HashingTextEmbedder())


def replace_rows(target: pd.DataFrame, source: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    out = target.copy()
    for i, j in enumerate(rows):
        out.iloc[i] = source.iloc[j]
    return out
