"""Writing files and folders so that a kill leaves the old version or the new one, never half of one.

Every file privsynth writes goes through :func:`write_text_atomic` or :func:`atomic_dir`: content goes to a hidden
temporary name beside the target, ``.NAME.tmp-PID-XXXX``, which is renamed into place only once complete. A kill
(power cut, OOM, Ctrl-C twice) can leave such a temporary behind; the next write of the same target removes every
temporary whose process is gone (:func:`remove_stale`), so a release's half-written synthetic data never lingers.
:func:`check_writable` tells, before any privacy budget is spent, whether a target can be written at all.

Temporaries are recognised by the PID in their name, which assumes the writer ran on this host (a local file
system). Under a shared file system a temporary of a live process on another host could be removed: give each
host its own output folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privsynth.errors import ConfigError, OutputExistsError

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-.*)?$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(target: Path) -> list[Path]:
    """Remove temporaries of ``target`` left by dead processes (``.NAME.tmp-PID-*`` and ``.NAME.old-PID``).

    An old version set aside by a writer killed while replacing ``target`` is removed, never put back: the writer
    was replacing it (``--force``), and a folder the user deleted since must not come back. Returns what was
    removed.
    """
    removed: list[Path] = []
    parent = target.parent
    if not parent.is_dir():
        return removed
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if match is None or match["name"] != target.name or _alive(int(match["pid"])):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def recover_replaced(target: Path) -> bool:
    """Put back the old ``target`` a writer killed mid-replacement set aside (``.NAME.old-PID``, PID dead).

    :func:`atomic_dir` with ``force`` renames the old folder aside, then the new one into place; a kill between the
    two renames leaves no ``target``. For a resumable state (a DP-SGD checkpoint) the old version is the one to
    resume from: call this before deciding the state is lost (:func:`remove_stale` would delete it). Returns
    whether one was put back.
    """
    if target.exists() or target.is_symlink() or not target.parent.is_dir():
        return False
    for entry in sorted(target.parent.iterdir()):
        match = _LEFTOVER.match(entry.name)
        if match and match["name"] == target.name and match["kind"] == "old" and not _alive(int(match["pid"])):
            entry.rename(target)
            return True
    return False


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and not probe.is_symlink():
        probe = probe.parent
    return probe


def check_writable(target: Path, *, force: bool = False, what: str = "output") -> None:
    """Raise a clear :class:`ConfigError` / :class:`OutputExistsError` now if ``target`` could not be written later.

    Run before anything costly or private is computed (a fit spends privacy budget), so that a bad ``--out`` costs
    nothing. Creates nothing that stays: a probe folder is made and removed in the nearest existing ancestor.
    Leftovers of killed writers of ``target`` are removed first (as the write itself would).
    """
    remove_stale(target)
    if target.exists() or target.is_symlink():
        if not force:
            raise OutputExistsError(f"{target} already exists; choose another path or pass --force to replace it")
        if target.is_symlink():
            raise ConfigError(f"{what} {target} is a symbolic link; give a real path")
    ancestor = _nearest_existing(target.parent)
    if not ancestor.is_dir():
        raise ConfigError(
            f"{what} {target}: {ancestor} is a file, not a folder, so nothing can be written under it; "
            "choose another path"
        )
    try:
        probe = tempfile.mkdtemp(prefix=".privsynth-probe-", dir=ancestor)
    except OSError as exc:
        raise ConfigError(
            f"{what} {target}: cannot write in {ancestor} ({exc.strerror or type(exc).__name__}); "
            "choose a folder you can write to"
        ) from None
    Path(probe).rmdir()


def write_text_atomic(path: Path, text: str, *, mode: int = 0o644) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, with permission bits ``mode`` (0o600 for private files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        tmp.chmod(mode)  # the umask may have narrowed it at creation
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def shared_mode() -> int:
    """The permission bits a plain ``open()`` gives a new file (0o666 less the umask), for files meant to be read."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where the system allows (no window for other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # elsewhere: set and restore (a racing thread would get the stricter mask)
    os.umask(mask)
    return mask


@contextmanager
def atomic_dir(out: Path, *, force: bool = False, private: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``out`` that becomes ``out`` only if the block succeeds.

    On an error the temporary folder is removed; after a kill it is removed by the next write of ``out``. ``out``
    is never half-written. With ``force`` an existing ``out`` (folder or file) is replaced. The folder is
    owner-only while being written and stays so by default (it may hold real records: a converted corpus);
    ``private=False`` gives the complete folder the permissions the user's umask allows (as ``mkdir`` would), for
    outputs meant to be shared (releases, synthetic corpora, DP models, the fake demo corpus). Sub-folders
    written owner-only (``internal/``) stay so.
    """
    remove_stale(out)
    if (out.exists() or out.is_symlink()) and not force:
        raise OutputExistsError(f"{out} already exists; choose another path or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o700 if private else 0o777 & ~_umask())
        if out.exists() or out.is_symlink():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            _remove(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["atomic_dir", "check_writable", "recover_replaced", "remove_stale", "shared_mode", "write_text_atomic"]
