"""The owner-only work folder of a fit: what an interrupted fit needs to resume exactly, never released.

A resumable fit keeps here, as it goes: ``run.json`` (its run id and what it was started with), the holdout split
and the records contribution bounding kept (real record keys), its DP count, its budget plan, its ledger (written
after every spend, before any noise), its DP profile and the DP-SGD checkpoints, whose RNG *states* can
recompute the run's noise. The folder is created owner-only (0700) and files in it are written atomically,
owner-only. One fit at a time: a second process opening the folder while a fit holds it is refused (two fits
would each draw their own noise under the one spend the folder records).

Starting again with the same folder continues the same run (same run id, nothing spent twice) only if it is the
same corpus (keyed fingerprint), the same config and the same budget; anything else is refused with the
difference named, never silently mixed. The folder is deleted once the model is saved
(:meth:`FitWork.discard`, called by ``Synthesizer.save``): it holds real record keys, and generator states from
which the run's noise can be recomputed, backwards as well as forwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from privsynth.data.atomic import write_text_atomic
from privsynth.errors import ConfigError, PrivacyError
from privsynth.privacy.store import new_run_id

RUN_FILE = "run.json"
LOCK_FILE = ".lock"


class FitWork:
    """A fit's work folder (``folder=None``: a fit that cannot resume, with nothing written)."""

    def __init__(self, folder: Path | None, run_id: str, lock: int | None = None) -> None:
        self.folder = folder
        self.run_id = run_id
        self._lock = lock

    @classmethod
    def open(cls, folder: Path | None, *, identity: dict[str, Any]) -> FitWork:
        """Start a new run in ``folder`` or continue the one it holds, if ``identity`` matches what it recorded."""
        if folder is None:
            return cls(None, new_run_id())
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"work folder {folder} is a file; pass a folder (it is created if missing)")
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder.chmod(0o700)
        except OSError as exc:
            raise ConfigError(
                f"work folder {folder}: cannot create it ({exc.strerror or type(exc).__name__}); pass --workdir "
                "in a folder you can write to"
            ) from None
        lock = _lock(folder)
        try:
            run_file = folder / RUN_FILE
            if not run_file.is_file():
                if any(p.name != LOCK_FILE for p in folder.iterdir()):
                    raise ConfigError(
                        f"work folder {folder} holds files but no {RUN_FILE} (an older privsynth, or not a work "
                        "folder); delete it or choose another"
                    )
                work = cls(folder, new_run_id(), lock)
                work.save(RUN_FILE, {"run_id": work.run_id, **identity})
                return work
            stored = json.loads(run_file.read_text(encoding="utf-8"))
            differs = sorted(k for k in identity if stored.get(k) != identity[k])
            if differs:
                raise ConfigError(
                    f"work folder {folder} belongs to another fit ({', '.join(differs)} differ): it can only resume "
                    "the same corpus with the same config and budget. Delete it to start afresh, or choose another "
                    "folder."
                )
            return cls(folder, str(stored["run_id"]), lock)
        except BaseException:
            os.close(lock)
            raise

    def path(self, name: str) -> Path | None:
        """Where ``name`` lives in the folder (``None`` without one)."""
        return self.folder / name if self.folder is not None else None

    def load(self, name: str) -> Any | None:
        """A JSON file written by :meth:`save`, or ``None`` when absent (or without a folder)."""
        path = self.path(name)
        if path is None or not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def save(self, name: str, payload: Any) -> None:
        """Write JSON atomically, owner-only (a kill leaves the old file or the new one)."""
        path = self.path(name)
        if path is not None:
            write_text_atomic(path, json.dumps(payload, indent=1, default=str), mode=0o600)

    def discard(self) -> None:
        """Delete the folder (after the model is saved): its keys and RNG states are no longer needed."""
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder)
        self.release()

    def release(self) -> None:
        """Let another process open the folder (also happens when this process ends)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __del__(self) -> None:
        self.release()


SAVED_SUFFIX = ".saved"


def mark_saved(path: Path) -> None:
    """Record beside ``path`` that a noisy output (a DP profile, a DP-SGD checkpoint) reached disk there.

    An output that never reached disk never left the process, so an interrupted stage may draw its noise again
    under the one spend the ledger holds; one that reached disk may have been read, so a second draw would be a
    second output of one counted mechanism. Call it after the output is written (atomically); it stays when the
    output is deleted.
    """
    marker = path.with_name(path.name + SAVED_SUFFIX)
    if not marker.is_file():
        write_text_atomic(marker, "", mode=0o600)


def refuse_redraw(path: Path, what: str) -> None:
    """Called when the output at ``path`` is missing: refuse to draw ``what`` again if :func:`mark_saved` recorded it.

    The marker sits in the same owner-only folder as the output: it catches a checkpoint or profile deleted by
    hand or by a clean-up, not someone who deletes both (the work folder is inside the trust boundary).
    """
    if path.with_name(path.name + SAVED_SUFFIX).is_file():
        raise PrivacyError(
            f"this run's {what} was saved once and is now missing ({path}). Drawing its noise again would be a "
            "second output of a mechanism the ledger counts once. Restore it, or start a new run: delete the work "
            f"folder {path.parent} (the ledger store keeps this run's spend; the new run spends again)."
        )


def finished_by(folder: Path, model: Path) -> dict[str, Any] | None:
    """The work folder's recorded identity if the fit it belongs to already wrote ``model``, else ``None``.

    A model folder is written whole (atomically), so a model whose run id is the folder's means that fit
    finished and was killed before deleting its work folder.
    """
    run, meta = folder / RUN_FILE, model / "model.json"
    if not (run.is_file() and meta.is_file()):
        return None
    try:
        stored = json.loads(run.read_text(encoding="utf-8"))
        model_run = json.loads(meta.read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return stored if isinstance(stored, dict) and stored.get("run_id") == model_run else None


def discard_finished(folder: Path) -> None:
    """Delete the leftover work folder of a finished fit, under its lock (never while a fit holds it)."""
    lock = _lock(folder)
    try:
        shutil.rmtree(folder)
    finally:
        os.close(lock)


def _lock(folder: Path) -> int:
    """An exclusive lock on the folder, or a clear refusal when another fit holds it."""
    fd = os.open(folder / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"another fit is using the work folder {folder}; wait for it to finish (two fits would each draw noise "
            "under one recorded spend)"
        ) from None
    return fd


__all__ = ["RUN_FILE", "SAVED_SUFFIX", "FitWork", "discard_finished", "finished_by", "mark_saved", "refuse_redraw"]
