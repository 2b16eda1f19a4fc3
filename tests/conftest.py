"""Shared fixtures: seeded RNGs, a small demo corpus, the CLI through its real entry function, a private ledger store.

Sampling RNGs are seeded here. Privacy noise never is: a test that needs it fixed asks for the ``reproducible_noise``
fixture, which sets the one recorded, test-only switch (``PRIVSYNTH_UNSAFE_REPRODUCIBLE_NOISE``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# One thread and no network for everything the tests run (see DESIGN.md, "Traps measured on these machines").
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def ledger_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's default ledger store is a file of its own (fits record their spends by default)."""
    path = tmp_path_factory.mktemp("store") / "ledger.sqlite"
    monkeypatch.setenv("PRIVSYNTH_LEDGER_STORE", str(path))
    return path


@pytest.fixture
def reproducible_noise(monkeypatch: pytest.MonkeyPatch) -> int:
    """Turn on the UNSAFE reproducible-noise test mode (recorded in ledgers, refused by release policies)."""
    from privsynth.privacy.randomness import UNSAFE_ENV

    monkeypatch.setenv(UNSAFE_ENV, "20261129")
    return 20261129


@pytest.fixture
def rng() -> np.random.Generator:
    """Every test RNG is seeded here."""
    return np.random.default_rng(12345)


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``privsynth ARGS`` in-process through the same ``main`` the console script calls."""
    from privsynth.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo corpus built once per test session (read-only: copy it before changing it)."""
    from privsynth.data.demo import write_demo_corpus

    return write_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", n=150, seed=7)


@pytest.fixture
def demo_copy(demo_dir: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the demo corpus."""
    target = tmp_path / "corpus"
    shutil.copytree(demo_dir, target)
    return target


def fit_context(
    corpus: object,
    *,
    profile: object,
    ledger: object,
    noise_multiplier: float,
    upstream: dict[str, object] | None = None,
    checkpoint: Path | None = None,
) -> object:
    """A :class:`FitContext` for fitting one generator directly (fresh private streams, the corpus' own groups)."""
    from privsynth.generators.base import FitContext
    from privsynth.generators.dpsgd import unit_groups
    from privsynth.privacy.randomness import Streams

    groups = unit_groups(corpus)  # type: ignore[arg-type]
    return FitContext(
        profile=profile,  # type: ignore[arg-type]
        ledger=ledger,  # type: ignore[arg-type]
        noise_multiplier=noise_multiplier,
        streams=Streams.private(),
        groups=groups,
        units=groups.count,
        upstream=upstream or {},  # type: ignore[arg-type]
        checkpoint=checkpoint,
    )
