"""The fit's work folder: owner-only, one fit at a time, resumes only the same fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from privsynth.errors import ConfigError
from privsynth.workdir import FitWork

IDENTITY = {"fingerprint": "hmac-sha256:x", "config_sha256": "c", "epsilon": 2.0, "delta": None}


def test_a_second_fit_cannot_open_a_work_folder_in_use(tmp_path: Path) -> None:
    # Found in review: two fits sharing a work folder got one run id, one recorded spend, and two noise draws.
    first = FitWork.open(tmp_path / "w", identity=IDENTITY)
    with pytest.raises(ConfigError, match="another fit is using"):
        FitWork.open(tmp_path / "w", identity=IDENTITY)
    first.release()
    again = FitWork.open(tmp_path / "w", identity=IDENTITY)
    assert again.run_id == first.run_id  # the same fit, resumed
    again.release()


def test_a_work_folder_resumes_only_the_same_corpus_config_and_budget(tmp_path: Path) -> None:
    FitWork.open(tmp_path / "w", identity=IDENTITY).release()
    with pytest.raises(ConfigError, match="epsilon, fingerprint differ"):
        FitWork.open(tmp_path / "w", identity=IDENTITY | {"epsilon": 3.0, "fingerprint": "hmac-sha256:y"})
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "x").write_text("x")
    with pytest.raises(ConfigError, match=r"no run\.json"):
        FitWork.open(tmp_path / "stray", identity=IDENTITY)


def test_files_are_owner_only_and_discard_removes_everything(tmp_path: Path) -> None:
    work = FitWork.open(tmp_path / "w", identity=IDENTITY)
    work.save("split.json", {"train": ["r1"]})
    assert (tmp_path / "w").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "w" / "split.json").stat().st_mode & 0o777 == 0o600
    assert work.load("split.json") == {"train": ["r1"]}
    work.discard()
    assert not (tmp_path / "w").exists()
    ephemeral = FitWork.open(None, identity=IDENTITY)
    ephemeral.save("x.json", 1)
    assert ephemeral.load("x.json") is None and ephemeral.path("x.json") is None
