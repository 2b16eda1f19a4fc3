"""docs/api.md's quickstart runs as written (issue 20): a DataFrame in, a DataFrame out, the ledger recorded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_store: Path) -> None:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)  # our own documentation
    synthetic = namespace["synthetic"]
    assert len(synthetic) == 1000 and list(synthetic.columns) == ["visit_id", "age", "diagnosis", "stay_days"]
    assert (namespace["flu"]["diagnosis"] == "flu").all()
    assert (tmp_path / "model" / "manifest.json").is_file()
    from privsynth import LedgerStore, Synthesizer

    assert len(LedgerStore(ledger_store).rows()) == len(Synthesizer.load(tmp_path / "model").ledger_.entries)


def test_a_frame_without_a_schema_is_inferred_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    import pandas as pd

    from privsynth.frames import as_corpus

    frame = pd.DataFrame({"record_id": [f"r{i}" for i in range(30)], "score": [float(i) for i in range(30)]})
    corpus = as_corpus(frame)
    assert corpus.schema.key == "record_id" and corpus.schema.columns["score"].kind.value == "numerical"
    assert "inferred" in caplog.text


def test_a_schema_inferred_from_the_records_is_stated_outside_the_guarantee(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from privsynth.config import load_config
    from privsynth.release.disclosure import outside_guarantee
    from privsynth.synthesizer import Synthesizer

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"record_id": [f"r{i}" for i in range(200)], "score": rng.normal(size=200)})
    small = Path(__file__).resolve().parents[2] / "configs" / "small.yaml"
    synth = Synthesizer(load_config(small)).fit(frame, epsilon=4)
    assert synth.schema_inferred_ is True
    synth.save(tmp_path / "model")
    assert Synthesizer.load(tmp_path / "model").schema_inferred_ is True
    said = outside_guarantee(publish_audit_statistics=False, declared_public=[], public_data=[], schema_inferred=True)
    assert any("inferred from the real records" in line for line in said)
