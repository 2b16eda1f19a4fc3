"""The engine interface, its settings and the pure parts shared by every engine."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")
R = TypeVar("R")


class EngineKind(StrEnum):
    """Where the parallel parts of a stage run."""

    LOCAL = "local"
    RAY = "ray"


class EngineSettings(BaseModel):
    """Engine choice (public settings; ``address`` falls back to the ``RAY_ADDRESS`` environment variable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EngineKind = EngineKind.LOCAL
    address: str | None = Field(
        default=None, description="Ray cluster address ('auto', 'ray://host:10001'); none starts a local cluster."
    )
    workers: int | None = Field(
        default=None, ge=1, le=4096, description="Parallel workers (shards); default: the cluster's CPUs."
    )

    @model_validator(mode="after")
    def _ray_settings_need_ray(self) -> EngineSettings:
        if self.kind is EngineKind.LOCAL and (self.workers is not None or self.address is not None):
            raise ValueError("engine: 'workers' and 'address' need kind: ray (the local engine is this process)")
        return self


class Engine(Protocol):
    """What a stage may ask of an engine. Results never depend on the number of workers."""

    name: str

    @property
    def workers(self) -> int:
        """How many shards work is split into."""
        ...

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``, in order (``fn`` must pickle: it may run on another machine)."""
        ...

    def map_batches(self, fn: Callable[[list[Any]], Any], items: Sequence[Any], *, batch_size: int = 256) -> list[Any]:
        """``fn`` over consecutive batches of ``items``, each batch's per-item results joined in order.

        A batch's result is a list or an array with one row per item. ``fn`` is typically a bound method of a
        collaborator (a PII scanner, an embedder) that builds its model once per worker.
        """
        ...

    def nearest(self, reference: np.ndarray, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Exact L2 nearest neighbours: distances (not squared) and indices into ``reference``, ``[n, k]``."""
        ...

    def pool(self, factory: Callable[..., Any], *args: Any) -> WorkerPool:
        """``workers`` long-lived workers, each ``factory(*args)`` built once (``args`` are sent once per worker).

        For stateful work that repeats many times on the same data, such as DP-SGD steps: each call sends only
        what changed (the weights, a batch's indices).
        """
        ...

    def close(self) -> None:
        """Release what the engine holds (a local engine holds nothing)."""
        ...


class WorkerPool(Protocol):
    """Long-lived workers built by :meth:`Engine.pool`."""

    @property
    def size(self) -> int:
        """How many workers."""
        ...

    def call(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``worker[i].method(*args[i])`` for the first ``len(args)`` workers, in parallel; results in order."""
        ...

    def close(self) -> None:
        """Stop the workers."""
        ...


class InProcessPool:
    """Workers that are plain objects in this process, called one after the other."""

    def __init__(self, workers: Sequence[Any]) -> None:
        self._workers = list(workers)

    @property
    def size(self) -> int:
        """How many workers."""
        return len(self._workers)

    def call(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Each worker's ``method`` in turn."""
        if len(args) > len(self._workers):
            raise ValueError(f"{len(args)} calls for {len(self._workers)} workers")
        return [getattr(worker, method)(*a) for worker, a in zip(self._workers, args, strict=False)]

    def close(self) -> None:
        """Drop the workers."""
        self._workers.clear()


QUERY_CHUNK = 65_536
"""Queries searched at once: bounds the distance blocks and results held in memory, whatever the query count."""


def flat_search(reference: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact search with FAISS' brute-force k-NN: distances (not squared) and indices, ``[n, k]``.

    ``faiss.knn`` reads ``reference`` in place (an ``IndexFlatL2`` would copy it) and the queries go in chunks of
    :data:`QUERY_CHUNK`, so memory is the reference plus a chunk's results.

    >>> d, i = flat_search(np.array([[0.0], [3.0]], dtype=np.float32), np.array([[1.0]], dtype=np.float32), 2)
    >>> d.tolist(), i.tolist()
    ([[1.0, 2.0]], [[0, 1]])
    """
    import faiss

    reference = np.ascontiguousarray(reference, dtype=np.float32)
    found = np.full((len(queries), k), -1, dtype=np.int64)
    if len(reference):
        for start in range(0, len(queries), QUERY_CHUNK):
            chunk = np.ascontiguousarray(queries[start : start + QUERY_CHUNK], dtype=np.float32)
            _, indices = faiss.knn(chunk, reference, min(k, len(reference)))
            found[start : start + len(chunk), : indices.shape[1]] = indices
    return _exact(reference, queries, found)


def _exact(
    reference: np.ndarray, queries: np.ndarray, indices: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """The found neighbours' distances computed again directly, in float64, and the rows re-sorted by them.

    FAISS computes distances as |x|^2 + |y|^2 - 2xy in float32 blocks whose layout depends on the reference's
    size: an identical row can come out at 3e-4 instead of 0, and by a different amount in another shard. Direct
    differences give the same number whatever the sharding (identical rows: exactly 0). ``-1`` (k beyond the
    reference's rows) gets an infinite distance.
    """
    distances = np.full(indices.shape, np.inf)
    if len(reference) == 0:  # nothing to compare with: every slot is padding
        return distances, indices
    for start in range(0, len(queries), chunk):
        found = indices[start : start + chunk]
        rows = reference[np.maximum(found, 0)].astype(np.float64)
        diff = rows - np.asarray(queries[start : start + chunk], dtype=np.float64)[:, None, :]
        distances[start : start + chunk] = np.where(found < 0, np.inf, np.sqrt((diff * diff).sum(axis=-1)))
    order = np.lexsort((np.where(indices < 0, np.iinfo(np.int64).max, indices), distances), axis=1)
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(indices, order, axis=1)


def merge_top_k(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` of per-shard results whose indices are already global; ties go to the smaller index.

    >>> a = (np.array([[1.0, 4.0]]), np.array([[0, 1]]))
    >>> b = (np.array([[2.0, 3.0]]), np.array([[5, 6]]))
    >>> [x.tolist() for x in merge_top_k([a, b], 3)]
    [[[1.0, 2.0, 3.0]], [[0, 5, 6]]]
    """
    distances = np.concatenate([d for d, _ in parts], axis=1)
    indices = np.concatenate([i for _, i in parts], axis=1)
    if distances.shape[1] < k:  # fewer reference rows than k in all: pad as one index would (-1, infinite)
        missing = k - distances.shape[1]
        distances = np.hstack([distances, np.full((len(distances), missing), np.inf)])
        indices = np.hstack([indices, np.full((len(indices), missing), -1, dtype=indices.dtype)])
    distances = np.where(indices < 0, np.inf, distances)
    order = np.lexsort((indices, distances), axis=1)[:, :k]
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(indices, order, axis=1)


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous, nearly equal ``[start, stop)`` ranges covering ``range(n)`` (empty ones dropped).

    >>> shard_bounds(10, 3)
    [(0, 3), (3, 7), (7, 10)]
    """
    edges = np.linspace(0, n, max(1, shards) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]
