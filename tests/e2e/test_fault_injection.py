"""Fault injection (issue 17): ``fit`` and ``release`` killed (SIGKILL) at random points, then run again.

After each kill the output is absent or complete (a model that loads, a release that verifies), never a partial
folder that looks done. The re-run completes; the ledger store holds exactly the fit's own ledger (nothing spent
twice across the kills); no temporary folder of privsynth's making is left. The kill times come from a seeded RNG,
so a failure names its seed; ``make test`` runs one seed per command, the ``slow`` variant several.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from privsynth.privacy.store import LedgerStore
from privsynth.release.manifest import verify_release
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "configs" / "small.yaml"
INFO = ROOT / "configs" / "demo-release.yaml"
CLI = "import sys; from privsynth.cli import main; sys.exit(main(sys.argv[1:]))"
LEFTOVER = re.compile(r"^\..+\.(tmp|old)-\d+")


def run_killed(args: list[str], *, after: float | None) -> int:
    """Run the CLI in a child process; SIGKILL it after ``after`` seconds unless it ended (its exit code)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _, err = proc.communicate(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return -signal.SIGKILL
    assert proc.returncode == 0, err[-3000:]
    return 0


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if LEFTOVER.match(p.name))


def fit_with_kills(seed: int, corpus: Path, tmp: Path, *, kills: int = 2) -> None:
    rng = random.Random(seed)
    out, store = tmp / "model", tmp / "ledger.sqlite"
    args = ["fit", str(corpus), "-e", "4", "-o", str(out), "-c", str(SMALL), "--ledger-store", str(store)]
    code = -signal.SIGKILL
    work = tmp / ".model.work"
    for _ in range(kills):
        code = run_killed(args, after=rng.uniform(3.0, 25.0))
        if out.exists():
            Synthesizer.load(out)  # a model is written whole (it loads and matches its manifest) or not at all
        if code == 0 or (out.exists() and not work.exists()):  # done (killed after its last step)
            break
    if not (out.exists() and not work.exists()):
        assert run_killed(args, after=None) == 0  # resumes; or, killed while cleaning up, finishes the clean-up
    synth = Synthesizer.load(out)  # complete, and matches its manifest
    assert not (tmp / ".model.work").exists()  # the work folder (real keys, RNG states) is gone
    assert leftovers(tmp) == [], f"seed {seed}"
    rows = LedgerStore(store).rows()
    assert {r["run_id"] for r in rows} == {synth.run_id_}, f"seed {seed}: one run, however often it was killed"
    assert len(rows) == len(synth.ledger_.entries), f"seed {seed}: a spend recorded twice or lost"
    total = LedgerStore(store).total(synth.source_)
    assert total.runs == 1 and total.epsilon == pytest.approx(synth.ledger_.epsilon, rel=1e-6)  # an unkilled run's
    assert synth.ledger_.epsilon <= 4.0


def test_fit_killed_at_random_points_resumes_and_spends_once(demo_dir: Path, tmp_path: Path) -> None:
    fit_with_kills(0, demo_dir, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_fit_killed_at_random_points_many_seeds(demo_dir: Path, tmp_path: Path, seed: int) -> None:
    fit_with_kills(seed, demo_dir, tmp_path, kills=3)


@pytest.fixture(scope="module")
def audited(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from privsynth.cli import main

    folder = tmp_path_factory.mktemp("audited")
    model, synthetic, audit = folder / "model", folder / "synthetic", folder / "audit"
    store = str(folder / "l.sqlite")
    assert main(["fit", str(demo_dir), "-e", "8", "-o", str(model), "-c", str(SMALL), "--ledger-store", store]) == 0
    assert main(["sample", str(model), "--n", "120", "-o", str(synthetic)]) == 0
    args = ["audit", "-s", str(synthetic), "--model", str(model), "--corpus", str(demo_dir), "-o", str(audit)]
    assert main([*args, "--ocr", "off"]) == 0
    policy = folder / "lenient.yaml"
    policy.write_text(
        "name: lenient\nrelease_class: controlled\nmax_epsilon: 50\nmax_delta: 1.0e-4\n"
        "checks:\n  pii_replay: {threshold: 0, severity: hard, required: true}\n"
    )
    return synthetic, audit


def release_with_kills(seed: int, audited: tuple[Path, Path], tmp: Path) -> None:
    synthetic, audit = audited
    rng = random.Random(seed)
    out = tmp / "bundle"
    policy = audit.parent / "lenient.yaml"
    args = ["release", "-s", str(synthetic), "-a", str(audit), "-i", str(INFO), "-p", str(policy), "-o", str(out)]
    for _ in range(3):
        code = run_killed([*args, "--force"], after=rng.uniform(2.0, 9.0))
        if out.exists():  # written whole or not at all
            assert verify_release(out).ok, f"seed {seed}: a killed release left a bundle that does not verify"
        if code == 0:
            break
    assert run_killed([*args, "--force"], after=None) == 0
    assert verify_release(out).ok
    assert leftovers(tmp) == [], f"seed {seed}: a temporary folder (synthetic data, documents) was left"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]


def test_release_killed_at_random_points_leaves_a_whole_release_or_none(audited, tmp_path: Path) -> None:
    release_with_kills(0, audited, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_release_killed_at_random_points_many_seeds(audited, tmp_path: Path, seed: int) -> None:
    release_with_kills(seed, audited, tmp_path)
