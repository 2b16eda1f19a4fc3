from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from privsynth.data.corpus import read_corpus
from privsynth.data.demo import DIAGNOSES, build_demo_records, write_demo_corpus


@pytest.fixture(scope="module")
def records() -> tuple[pd.DataFrame, dict[str, bytes]]:
    return build_demo_records(600, seed=3)


def test_same_seed_same_corpus_byte_for_byte(tmp_path: Path) -> None:
    a = write_demo_corpus(tmp_path / "a", n=40, seed=1)
    b = write_demo_corpus(tmp_path / "b", n=40, seed=1)
    c = write_demo_corpus(tmp_path / "c", n=40, seed=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "records.parquet").read_bytes() != (c / "records.parquet").read_bytes()


def test_demo_corpus_is_valid(demo_dir: Path) -> None:
    corpus = read_corpus(demo_dir)
    assert len(corpus) == 150
    assert corpus.schema.entity == "patient_id"
    assert corpus.records["patient_id"].value_counts().max() >= 2  # some people have several visits


def test_identities_are_consistent(records: tuple[pd.DataFrame, dict[str, bytes]]) -> None:
    frame, _ = records
    for _, row in frame.iterrows():
        birth = pd.Timestamp(row["date_of_birth"])
        years = (row["visit_date"] - birth).days / 365.25
        assert abs(years - row["age"]) < 1.01
        last = row["name"].split(" ", 1)[1]
        assert last in row["note"]
        assert row["visit_date"].date().isoformat() in row["note"]
        assert row["mrn"] in row["note"]
    # one identity per patient across visits
    per_patient = frame.groupby("patient_id")[["name", "ssn", "mrn", "date_of_birth"]].nunique()
    assert (per_patient == 1).all().all()
    assert frame["ssn"].str.fullmatch(r"\d{3}-\d{2}-\d{4}").all()
    assert not frame["ssn"].isin(["078-05-1120", "123-45-6789"]).any()


def test_correlations_are_realistic(records: tuple[pd.DataFrame, dict[str, bytes]]) -> None:
    frame, _ = records
    by = frame.groupby("diagnosis")
    assert by["glucose"].mean()["diabetes"] > by["glucose"].mean()["healthy"] + 50
    assert by["wbc"].mean()["pneumonia"] > by["wbc"].mean()["healthy"] + 4
    assert by["age"].mean()["heart_failure"] > by["age"].mean()["healthy"] + 15
    assert by["length_of_stay"].mean()["healthy"] == 0
    assert set(frame["diagnosis"]) == set(DIAGNOSES)


def test_notes_and_scans_predict_the_diagnosis(records: tuple[pd.DataFrame, dict[str, bytes]]) -> None:
    frame, images = records
    labels = frame["diagnosis"].to_numpy()
    chance = frame["diagnosis"].value_counts(normalize=True).max()
    text_model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    text_acc = cross_val_score(text_model, frame["note"].to_numpy(), labels, cv=3).mean()
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(images[rel]))).ravel() / 255 for rel in frame["scan"]])
    image_acc = cross_val_score(LogisticRegression(max_iter=2000, C=0.1), pixels, labels, cv=3).mean()
    assert text_acc > 0.95
    assert image_acc > chance + 0.3
