"""Where a stage's heavy, parallel parts run: in this process (``local``) or on a Ray cluster (``ray``).

Stages call one small interface (:class:`Engine`): map a function over items in order, map a per-worker
function over batches (models built once per worker), and exact nearest-neighbour search over a reference set
sharded across workers with the top ``k`` merged on the driver. ``local`` is the plain in-process code path and
the default; ``ray`` needs ``pip install 'privsynth[ray]'`` and connects to ``address`` (or ``RAY_ADDRESS``), or
starts a local cluster.

What never leaves the driver: the privacy ledger, DP noise and its random streams, keys and secrets. Workers get
records, texts and images to scan, embed or count, the same trust domain as the machine that runs the audit.
"""

from __future__ import annotations

from privsynth.engine.base import Engine, EngineKind, EngineSettings, InProcessPool, WorkerPool, merge_top_k
from privsynth.engine.choice import engine_settings, make_engine
from privsynth.engine.local import LocalEngine

__all__ = [
    "Engine",
    "EngineKind",
    "EngineSettings",
    "InProcessPool",
    "LocalEngine",
    "WorkerPool",
    "engine_settings",
    "make_engine",
    "merge_top_k",
]
