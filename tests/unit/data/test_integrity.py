"""Strict folder checks (issue 17): links, special files and unlisted folders never pass as 'Verified'."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from privsynth.release.manifest import file_table, verify_release, write_manifest


@pytest.fixture
def release(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    (folder / "data" / "images").mkdir(parents=True)
    (folder / "data" / "records.csv").write_text("a\n1\n")
    (folder / "data" / "images" / "x.png").write_bytes(b"png")
    (folder / "README.md").write_text("card")
    write_manifest(folder, {"files": file_table(folder)})
    return folder


def test_an_intact_release_verifies(release: Path) -> None:
    assert verify_release(release).ok


def test_a_link_into_the_real_corpus_fails(release: Path, tmp_path: Path) -> None:
    # Before: a symlink to the real corpus' images placed inside a release was "Verified".
    real = tmp_path / "real-images"
    real.mkdir()
    (release / "data" / "real").symlink_to(real)
    assert "symbolic link not allowed: data/real" in verify_release(release).problems


def test_a_listed_file_replaced_by_a_link_fails(release: Path, tmp_path: Path) -> None:
    target = release / "data" / "images" / "x.png"
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"png")  # same bytes: following the link would pass
    target.unlink()
    target.symlink_to(outside)
    problems = verify_release(release).problems
    assert "symbolic link not allowed: data/images/x.png" in problems


def test_an_extra_empty_folder_and_a_fifo_fail(release: Path) -> None:
    (release / "extra").mkdir()
    os.mkfifo(release / "data" / "pipe")
    problems = verify_release(release).problems
    assert "folder not in the manifest: extra" in problems
    assert "special file not allowed (FIFO, socket or device): data/pipe" in problems
