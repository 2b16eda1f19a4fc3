"""The in-process engine: the plain code path every other engine must agree with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from privsynth.engine.base import InProcessPool, flat_search

T = TypeVar("T")
R = TypeVar("R")


class LocalEngine:
    """Runs everything in this process, one shard."""

    name = "local"

    @property
    def workers(self) -> int:
        """One: this process."""
        return 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``."""
        return [fn(x) for x in items]

    def map_batches(self, fn: Callable[[list[Any]], Any], items: Sequence[Any], *, batch_size: int = 256) -> list[Any]:
        """``fn`` over consecutive batches of ``batch_size`` items (memory bounded by the batch), joined in order."""
        out: list[Any] = []
        for start in range(0, len(items), batch_size):
            out.extend(fn(list(items[start : start + batch_size])))
        return out

    def nearest(self, reference: np.ndarray, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """FAISS brute-force search over the whole reference, queries in chunks."""
        return flat_search(reference, queries, k)

    def pool(self, factory: Callable[..., Any], *args: Any) -> InProcessPool:
        """One worker: ``factory(*args)`` in this process."""
        return InProcessPool([factory(*args)])

    def close(self) -> None:
        """Nothing to release."""
