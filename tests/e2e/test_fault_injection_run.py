"""Fault injection (issue 17): ``privsynth run`` killed (SIGKILL) at random points, then run again.

The re-run completes with a release that verifies, the ledger store holds the fit's spends once (one run id, as
many rows as the model's ledger has entries), and no temporary folder of privsynth's making is left anywhere in
the run folder. ``make test`` runs one seed; the ``slow`` variant several.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from privsynth.privacy.store import LedgerStore
from privsynth.release.manifest import verify_release
from privsynth.synthesizer import Synthesizer
from tests.e2e.test_fault_injection import LEFTOVER, run_killed
from tests.e2e.test_release_pipeline import write_run_config


def run_with_kills(seed: int, tmp: Path, *, kills: int = 1) -> None:
    rng = random.Random(seed)
    config = write_run_config(tmp, name="k")
    for _ in range(kills):
        if run_killed(["run", str(config)], after=rng.uniform(4.0, 60.0)) == 0:
            break
    assert run_killed(["run", str(config)], after=None) == 0  # resumes (or finds every stage done)
    root = tmp / "runs" / "k"
    assert verify_release(root / "release" / "bundle").ok
    assert not (root / "fit" / "work").exists()
    stray = [p for p in root.rglob("*") if LEFTOVER.match(p.name)]
    assert stray == [], f"seed {seed}: {stray}"
    synth = Synthesizer.load(root / "fit" / "model")
    rows = LedgerStore(tmp / "ledger.sqlite").rows()
    assert {r["run_id"] for r in rows} == {synth.run_id_}, f"seed {seed}: spent by more than one fit"
    assert len(rows) == len(synth.ledger_.entries), f"seed {seed}: a spend recorded twice or lost"


def test_run_killed_at_a_random_point_resumes_and_spends_once(tmp_path: Path) -> None:
    run_with_kills(0, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_run_killed_at_random_points_many_seeds(tmp_path: Path, seed: int) -> None:
    run_with_kills(seed, tmp_path, kills=3)
