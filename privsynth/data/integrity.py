"""File tables for folders privsynth writes (releases, model folders) and the strict check of one.

A file table maps every regular file of a folder (relative POSIX path) to its SHA-256 and size. The check walks
the folder *without following links* and reports, by path only (never content):

- changed, missing and unlisted files;
- symbolic links, wherever they point (a link inside a release could point at the real corpus);
- special files (FIFOs, sockets, devices), which no privsynth folder holds;
- folders that hold no listed file (an extra folder is content the manifest never vouched for).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class FolderScan:
    """What a walk of a folder found: regular files with their hashes, folders, and what may not be there."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def scan_folder(folder: Path, *, skip: Iterable[str] = (), skip_folders: Iterable[str] = ()) -> FolderScan:
    """Hash every regular file under ``folder`` (not following links) except ``skip`` and ``skip_folders/``."""
    skipped, skipped_folders = set(skip), set(skip_folders)
    result = FolderScan()
    for top, dirs, names in os.walk(folder, followlinks=False):
        base = Path(top)
        rel_top = base.relative_to(folder).as_posix()
        for name in sorted(dirs):
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            if (base / name).is_symlink():
                result.problems.append(f"symbolic link not allowed: {rel}")
            elif rel not in skipped_folders:
                result.folders.add(rel)
        dirs[:] = sorted(d for d in dirs if not (base / d).is_symlink() and _rel(rel_top, d) not in skipped_folders)
        for name in sorted(names):
            rel = _rel(rel_top, name)
            if rel in skipped:
                continue
            mode = (base / name).lstat().st_mode
            if stat.S_ISLNK(mode):
                result.problems.append(f"symbolic link not allowed: {rel}")
            elif not stat.S_ISREG(mode):
                result.problems.append(f"special file not allowed (FIFO, socket or device): {rel}")
            else:
                result.files[rel] = {"sha256": sha256_file(base / name), "bytes": (base / name).stat().st_size}
    return result


def _rel(top: str, name: str) -> str:
    return name if top == "." else f"{top}/{name}"


def file_table(folder: Path, *, skip: Iterable[str] = (), skip_folders: Iterable[str] = ()) -> dict[str, Any]:
    """``{relative path: {sha256, bytes}}`` for every regular file under ``folder`` except those skipped."""
    return scan_folder(folder, skip=skip, skip_folders=skip_folders).files


def compare_files(listed: dict[str, Any], scan: FolderScan) -> list[str]:
    """Every difference between a manifest's file table and a folder as found, by path."""
    problems = list(scan.problems)
    actual = scan.files
    for rel in sorted(set(listed) - set(actual)):
        problems.append(f"missing file: {rel}")
    for rel in sorted(set(actual) - set(listed)):
        problems.append(f"file not in the manifest: {rel}")
    for rel in sorted(set(listed) & set(actual)):
        entry = listed[rel] if isinstance(listed[rel], dict) else {}
        if entry.get("sha256") != actual[rel]["sha256"] or entry.get("bytes") != actual[rel]["bytes"]:
            problems.append(f"changed file: {rel}")
    expected = {parent.as_posix() for rel in listed for parent in Path(rel).parents if parent != Path()}
    for rel in sorted(scan.folders - expected):
        problems.append(f"folder not in the manifest: {rel}")
    return problems


def write_folder_manifest(folder: Path, name: str, *, skip_folders: Iterable[str] = ()) -> None:
    """Write ``folder/name``: the file table of everything else in ``folder`` (JSON, sorted keys)."""
    table = file_table(folder, skip={name}, skip_folders=skip_folders)
    payload = {"files": table, "unchecked_folders": sorted(skip_folders)}
    (folder / name).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def check_folder_manifest(folder: Path, name: str, *, skip_folders: Iterable[str] = ()) -> list[str]:
    """Every problem of ``folder`` against its manifest ``name`` (empty when intact); paths only, never content."""
    path = folder / name
    if path.is_symlink() or not path.is_file():
        return [f"no {name}: the folder was changed, or written by a privsynth without manifests"]
    try:
        listed = json.loads(path.read_text(encoding="utf-8")).get("files")
    except (ValueError, UnicodeDecodeError, AttributeError):
        listed = None
    if not isinstance(listed, dict):
        return [f"{name} is not a file table (changed or corrupted)"]
    return compare_files(listed, scan_folder(folder, skip={name}, skip_folders=skip_folders))


__all__ = [
    "FolderScan",
    "check_folder_manifest",
    "compare_files",
    "file_table",
    "scan_folder",
    "sha256_file",
    "write_folder_manifest",
]
