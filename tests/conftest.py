"""Shared fixtures: seeded RNGs, a small demo corpus, and the CLI called through its real entry function."""

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
