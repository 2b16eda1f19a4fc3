"""Text and images of the demo run follow their record (issues 7 and 8), and notes carry only surrogates.

Reads a finished `privsynth run` folder (default `runs/demo`, written by `make demo`): the real demo corpus, the
model's train/holdout split and the synthetic corpus with its surrogate registry. Outside any privacy guarantee
(a benchmark):

- notes: TF-IDF + logistic regression trained on real training notes predicts the diagnosis; its accuracy on the
  real holdout notes is the reference, its accuracy on each synthetic note against that synthetic record's own
  diagnosis is the measure (target: ratio >= 0.8); per diagnosis, its accuracy and the share of notes that name
  the diagnosis at all (its label's words), to tell notes that never say it from notes the classifier cannot read;
- scans: the same with logistic regression on real training scan pixels (target: ratio >= 0.8);
- identities in notes: every person name, SSN and MRN the PII scanner finds in a synthetic note is compared with
  that record's own surrogate identity (name, SSN, MRN) and with the fakes registered for other people;
- repetition: the share of notes that write a word twice in a row ("after after") and three times in a row
  ("type type type"), synthetic against real holdout notes (real ones do neither).

    python benchmarks/demo_modalities.py [--run runs/demo]

Prints two tables and writes benchmarks/results/demo_modalities.json.
"""

from __future__ import annotations

import argparse
import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
from _common import print_table, write_json
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from privsynth.audit.inputs import split_from_model
from privsynth.data.corpus import Corpus, read_corpus
from privsynth.data.images import load_image
from privsynth.data.layout import load_registry
from privsynth.pii.engine import PiiScanner

ROOT = Path(__file__).resolve().parents[1]
TARGET = "diagnosis"
#: Courtesy titles a detected name span may start with ("Ms. <LAST_NAME>"): not part of anyone's identity.
TITLES = {"mr", "ms", "mrs", "miss", "dr"}


def pixels(corpus: Corpus, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale pixels in [0, 1] of records that have an image, and which records those are."""
    rows, keep = [], []
    for i, value in enumerate(corpus.records[column]):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        image = load_image(corpus.root, value).convert("L").resize((32, 32))
        rows.append(np.asarray(image, dtype=np.float32).ravel() / 255.0)
        keep.append(i)
    return np.stack(rows), np.asarray(keep)


def _norm(value: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(value).lower())


def identity_check(synthetic: Corpus, registry: pd.DataFrame, scanner: PiiScanner) -> dict[str, float]:
    """Share of person/SSN/MRN spans in synthetic notes equal to the record's own surrogate (or a registered fake)."""
    own_total = other_total = unexplained = 0
    by_key = registry.set_index(synthetic.schema.key)
    person_entities = {"PERSON"}
    for _, row in synthetic.records.iterrows():
        note = row.get("note")
        if not isinstance(note, str):
            continue
        identity = by_key.loc[row[synthetic.schema.key]]
        own = {_norm(row.get(c)) for c in ("name", "ssn", "mrn") if row.get(c) is not None}
        own |= {_norm(part) for part in str(row.get("name", "")).split()}
        others = {_norm(v) for k, v in identity.items() if str(k).startswith("other_") and isinstance(v, str)}
        others |= {_norm(part) for k, v in identity.items() if str(k) == "other_person" for part in str(v).split()}
        for hit in scanner.scan(note):
            if hit.entity not in person_entities | {"US_SSN", "MEDICAL_RECORD_NUMBER"}:
                continue
            span = _norm(note[hit.start : hit.end])
            parts = {_norm(p) for p in note[hit.start : hit.end].replace(",", " ").split()} - TITLES
            if span in own or (parts and parts <= own):
                own_total += 1
            elif span in others or (parts and parts <= others):
                other_total += 1
            else:
                unexplained += 1
    total = max(own_total + other_total + unexplained, 1)
    return {
        "identity_spans": float(own_total + other_total + unexplained),
        "own_surrogate_share": own_total / total,
        "registered_other_share": other_total / total,
        "unexplained_share": unexplained / total,
    }


def repetition(notes: pd.Series) -> dict[str, float]:
    """Shares of notes with a word written twice in a row, and three times in a row (letters only, any case).

    >>> repetition(pd.Series(["fever and cough", "after after the fall", "type type type 2"]))
    {'notes': 3.0, 'word_twice_in_a_row': 0.667, 'word_three_times_in_a_row': 0.333}
    """
    twice = thrice = 0
    for note in notes:
        words = re.findall(r"[a-z]+", str(note).lower())
        pairs = [words[i] == words[i + 1] for i in range(len(words) - 1)]
        twice += any(pairs)
        thrice += any(a and b for a, b in itertools.pairwise(pairs))
    count = max(len(notes), 1)
    return {
        "notes": float(len(notes)),
        "word_twice_in_a_row": round(twice / count, 3),
        "word_three_times_in_a_row": round(thrice / count, 3),
    }


def per_label(notes: pd.Series, labels: pd.Series, right: np.ndarray) -> list[dict[str, object]]:
    """Per diagnosis: how many notes, the classifier's accuracy, and the share of notes that name it at all.

    A note "names" its diagnosis when its label's words appear in it ("heart_failure": "heart failure"): a note can
    name it and still be classified otherwise when the rest of it reads like no real note.
    """
    lowered = notes.str.lower().to_numpy()
    rows = []
    for label in sorted(labels.unique()):
        mine = (labels == label).to_numpy()
        named = np.array([label.replace("_", " ").lower() in note for note in lowered[mine]])
        rows.append(
            {
                "diagnosis": label,
                "notes": int(mine.sum()),
                "accuracy": float(right[mine].mean()),
                "names_it": float(named.mean()),
                "accuracy_when_named": float(right[mine][named].mean()) if named.any() else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--synthetic", type=Path, default=None, help="Another synthetic corpus of the same model.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    real = read_corpus(args.run / "corpus" / "data")
    train, holdout = split_from_model(real, args.run / "fit" / "model")
    synthetic = read_corpus(args.synthetic or args.run / "sample" / "synthetic")
    registry = load_registry(synthetic.root)
    rows: list[dict[str, object]] = []

    notes_train = train.records["note"].fillna("").astype(str)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    text_model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(notes_train), train.records[TARGET])
    real_acc = float(
        (text_model.predict(vectorizer.transform(holdout.records["note"].fillna(""))) == holdout.records[TARGET]).mean()
    )
    synth_notes = synthetic.records["note"].fillna("").astype(str)
    right = text_model.predict(vectorizer.transform(synth_notes)) == synthetic.records[TARGET].to_numpy()
    synth_acc = float(right.mean())
    by_label = per_label(synth_notes, synthetic.records[TARGET].astype(str), right)
    rows.append(
        {
            "modality": "note",
            "real_holdout_acc": real_acc,
            "synthetic_acc": synth_acc,
            "ratio": synth_acc / real_acc,
            "target_ratio": 0.8,
        }
    )

    x_train, keep_train = pixels(train, "scan")
    x_hold, keep_hold = pixels(holdout, "scan")
    x_syn, keep_syn = pixels(synthetic, "scan")
    image_model = LogisticRegression(max_iter=2000, C=0.1).fit(x_train, train.records[TARGET].to_numpy()[keep_train])
    real_acc = float((image_model.predict(x_hold) == holdout.records[TARGET].to_numpy()[keep_hold]).mean())
    synth_acc = float((image_model.predict(x_syn) == synthetic.records[TARGET].to_numpy()[keep_syn]).mean())
    rows.append(
        {
            "modality": "scan",
            "real_holdout_acc": real_acc,
            "synthetic_acc": synth_acc,
            "ratio": synth_acc / real_acc,
            "target_ratio": 0.8,
        }
    )

    identities = identity_check(synthetic, registry, PiiScanner()) if registry is not None else {}
    repeats = [
        {"notes": "synthetic", **repetition(synth_notes)},
        {"notes": "real holdout", **repetition(holdout.records["note"].fillna("").astype(str))},
    ]
    print_table(rows, ["modality", "real_holdout_acc", "synthetic_acc", "ratio", "target_ratio"])
    print()
    print_table(by_label, ["diagnosis", "notes", "accuracy", "names_it", "accuracy_when_named"])
    print()
    print_table(repeats, ["notes", "word_twice_in_a_row", "word_three_times_in_a_row"])
    print("\nidentities in synthetic notes:", {k: round(v, 4) for k, v in identities.items()})
    for note in synth_notes[:3]:
        print("  example:", note[:240])
    write_json(
        "demo_modalities",
        {
            "rows": rows,
            "notes_by_diagnosis": by_label,
            "identities": identities,
            "repetition": repeats,
            "examples": list(synth_notes[:10]),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
