"""A canary phrase in one training record never comes back out of the DP text model (issue 19).

DP-SGD bounds what any one person's record can change in the model, so a phrase only one person wrote should not
be sampled, while a phrase every record shares should be: that is the control that shows the test can fire (a
model that learned nothing would pass the first check trivially). The byte-level model at epsilon 8 on 120
records: the shared sentence comes back in most notes, the canary's words in none, and the audit's verbatim
check finds no synthetic note copying rare training content.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from privsynth.audit.text import verbatim_spans
from privsynth.config import FitConfig
from privsynth.data.corpus import Corpus
from privsynth.data.schema import schema_from_dict
from privsynth.privacy.store import LedgerStore
from privsynth.synthesizer import Synthesizer

SHARED = "the class of the object is fine."
CANARY = "zebra quantum marmalade 7731."


def _corpus(root: Path, n: int) -> Corpus:
    schema = schema_from_dict(
        {
            "key": "id",
            "columns": {
                "id": {"kind": "key"},
                "dx": {"kind": "categorical", "domain": ["flu", "cold"]},
                "note": {"kind": "text", "max_length": 64},
            },
        },
        source="t",
    )
    rng = np.random.default_rng(0)
    notes = [SHARED] * n
    notes[0] = CANARY  # one person's phrase, in no other record
    records = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "dx": rng.choice(["flu", "cold"], n), "note": notes})
    return Corpus(records=records, schema=schema, root=root)


def test_a_phrase_in_one_record_is_never_sampled_while_a_shared_one_is(tmp_path: Path) -> None:
    base = FitConfig().model_copy(update={"holdout_fraction": 0.0})
    text = base.text.model_copy(
        update={
            "backbone": "byte",
            "max_bytes": 40,
            "optim": base.text.optim.model_copy(update={"epochs": 20.0, "lr": 0.01, "batch_size": 64}),
        }
    )
    corpus = _corpus(tmp_path, 120)
    synth = Synthesizer(base.model_copy(update={"text": text})).fit(
        corpus, epsilon=8.0, store=LedgerStore(tmp_path / "l.sqlite")
    )
    notes = synth.sample(300, seed=1)["note"].tolist()
    assert sum(SHARED in note for note in notes) > 0.5 * len(notes)  # control: what everyone wrote comes back
    for word in ("zebra", "quantum", "marmalade", "7731"):
        assert not any(word in note for note in notes), word  # what one person wrote does not
    verbatim = verbatim_spans(corpus.records["note"].tolist(), [SHARED] * 60, notes, k=16)
    assert verbatim.copying == 0
