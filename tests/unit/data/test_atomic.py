"""Atomic writes (issue 17): a kill leaves the old version or the new one, and its leftovers go at the next write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from privsynth.data.atomic import atomic_dir, check_writable, remove_stale, write_text_atomic
from privsynth.errors import ConfigError, OutputExistsError


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_dead_writers_temporaries_are_removed_by_the_next_write(tmp_path: Path) -> None:
    # Before: '.X.tmp-*' folders of a killed release (full synthetic data and documents) stayed forever.
    dead = _dead_pid()
    stale_dir = tmp_path / f".bundle.tmp-{dead}-abc"
    stale_dir.mkdir()
    (stale_dir / "records.parquet").write_text("half-written")
    stale_file = tmp_path / f".notes.txt.tmp-{dead}"
    stale_file.write_text("half")
    other = tmp_path / f".other.tmp-{dead}-x"  # another target's: left alone
    other.mkdir()
    live = tmp_path / f".bundle.tmp-{os.getpid()}-mine"  # a live writer's (this process): left alone
    live.mkdir()
    with atomic_dir(tmp_path / "bundle") as tmp:
        (tmp / "a").write_text("complete")
    write_text_atomic(tmp_path / "notes.txt", "x")
    assert not stale_dir.exists() and not stale_file.exists()
    assert other.exists() and live.exists()
    assert (tmp_path / "bundle" / "a").read_text() == "complete"


def test_force_over_a_file_leaves_nothing_behind(tmp_path: Path) -> None:
    # Before: 'fit --force' over an existing file left '.out.old-<pid>' (rmtree cannot remove a file).
    target = tmp_path / "out"
    target.write_text("old")
    with atomic_dir(target, force=True) as tmp:
        (tmp / "new").write_text("n")
    assert (target / "new").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_old_version_set_aside_by_a_killed_writer_is_removed_not_put_back(tmp_path: Path) -> None:
    # The writer was replacing it (--force); a model the user deleted since (its internal/ holds real keys) must
    # not come back.
    target = tmp_path / "model"
    old = tmp_path / f".model.old-{_dead_pid()}"
    old.mkdir()
    (old / "model.json").write_text("{}")
    assert remove_stale(target) == [old]
    assert not target.exists() and not old.exists()
    assert remove_stale(tmp_path / "x") == [] and _alive_overflow()


def _alive_overflow() -> bool:
    from privsynth.data.atomic import _alive

    return not _alive(10**30)


def test_a_failed_block_leaves_no_temporary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_names_the_problem_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "model")
    with pytest.raises(OutputExistsError):
        check_writable(tmp_path / "file")
    check_writable(tmp_path / "file", force=True)
    check_writable(tmp_path / "new" / "deeper" / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    if Path("/proc/self").is_dir():
        with pytest.raises(ConfigError, match="cannot write in /proc"):
            check_writable(Path("/proc/x"))
