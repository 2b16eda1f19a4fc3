"""The Ray engine: the same interface on a Ray cluster (``pip install 'privsynth[ray]'``).

- ``map``: one Ray task per item.
- ``map_batches``: Ray Data ``map_batches`` over at most ``workers`` tasks at a time. Tasks run in Ray's pooled
  worker processes, which live for the whole session, and each process keeps the last collaborators it was sent
  (Presidio, MiniLM: their settings, pickled, name them), so a collaborator's model is imported and built once per
  worker process, not once per batch nor once per call (actors, started and stopped per call, paid Presidio's
  import, then 8 seconds, every call); results come back with their positions and are put back in order.
- ``nearest``: a search smaller than ``driver_search_below`` multiply-adds runs on the driver (a round trip to
  the workers costs more); in a larger one the reference rows are cut into ``workers`` contiguous shards, put in
  the object store once; the queries go to every shard in chunks (one task each), searched exactly (FAISS brute
  force), with global indices;
  the driver keeps the exact top ``k`` (:func:`~privsynth.engine.base.merge_top_k`): the same neighbours at the same
  distances (recomputed in float64) for any number of workers, except between rows within float32 rounding.

Nothing here touches the ledger, noise or keys: those stay in the driver's process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from privsynth.engine.base import QUERY_CHUNK, flat_search, merge_top_k, shard_bounds
from privsynth.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "engine 'ray' needs Ray: pip install 'privsynth[ray]' (or use --engine local, the default)"
        ) from exc
    return ray


def _search_shard(reference: np.ndarray, queries: np.ndarray, k: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """One shard (read in place from the object store) against one chunk of queries; global indices."""
    distances, indices = flat_search(reference, queries, min(k, len(reference)))
    return distances, np.where(indices < 0, -1, indices + offset)


def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


#: A search of fewer multiply-adds (reference rows x queries x dimensions) than this runs on the driver: shipping
#: it to the workers and back costs more (measured: about 20 ms a call on a local cluster; the whole-audit test
#: made 387 such calls, 19 s on Ray against under 1 s on the driver).
DRIVER_SEARCH_BELOW = 1 << 25

#: Collaborators a worker process keeps between calls, newest last: an audit sends its PII scanner, MiniLM and an
#: embedder per image column; more would only hold memory.
KEEP_COLLABORATORS = 6
_collaborators: OrderedDict[str, Callable[[list[Any]], Any]] = OrderedDict()


def _collaborator(digest: str, payload: bytes) -> Callable[[list[Any]], Any]:
    """The function pickled as ``payload``, unpickled once per worker process and kept for the next calls.

    The items and results of a call leave the process with the call; what ``fn`` itself holds stays until
    :data:`KEEP_COLLABORATORS` newer functions replace it. So ``fn`` is a collaborator's method (a scanner or an
    embedder, which pickle to their settings and load their model in the worker) that keeps nothing of what it
    reads (the PII scanner drops its texts' words from spaCy's vocabulary after each batch), never a function
    bound to records: the audit's replay needles (real identifiers) are matched on the driver, not sent here.
    """
    fn = _collaborators.get(digest)
    if fn is None:
        fn = pickle.loads(payload)  # noqa: S301 -- pickled by map_batches below, in this run
        _collaborators[digest] = fn
        while len(_collaborators) > KEEP_COLLABORATORS:
            _collaborators.popitem(last=False)
    _collaborators.move_to_end(digest)
    return fn


def _map_batch(batch: dict[str, np.ndarray], *, digest: str, payload: bytes) -> dict[str, np.ndarray]:
    """A Ray Data task: one batch through the worker process' copy of the function."""
    fn = _collaborator(digest, payload)
    items = [pickle.loads(x) for x in batch["item"]]  # noqa: S301 -- pickled by map_batches below, this run
    results = list(fn(items))
    # pickled one by one: lists, dataclasses and arrays come back exactly as the function returned them
    # (Ray Data would turn nested lists into tensors or nulls)
    out = np.empty(len(results), dtype=object)
    for j, result in enumerate(results):
        out[j] = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    return {"position": batch["position"], "result": out}


class RayPool:
    """Ray actors called in parallel (see :meth:`RayEngine.pool`)."""

    def __init__(self, actors: list[Any]) -> None:
        self._actors = actors

    @property
    def size(self) -> int:
        """How many actors."""
        return len(self._actors)

    def call(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``actor[i].method(*args[i])`` on the first ``len(args)`` actors at once; results in order."""
        ray = _import_ray()
        if len(args) > len(self._actors):
            raise ValueError(f"{len(args)} calls for {len(self._actors)} workers")
        return list(ray.get([getattr(a, method).remote(*x) for a, x in zip(self._actors, args, strict=False)]))

    def close(self) -> None:
        """Stop the actors (their memory, with the records they held, goes with them)."""
        ray = _import_ray()
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


class RayEngine:
    """Runs map, batch and search work on a Ray cluster (a local one when no address is given)."""

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        driver_search_below: int = DRIVER_SEARCH_BELOW,
    ) -> None:
        ray = _import_ray()
        self._driver_search_below = driver_search_below
        self._started = False
        self._temp: Path | None = None
        if ray.is_initialized():
            if address:
                log.warning("this process is already connected to a Ray cluster: using it, not %s", address)
        else:
            os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # workers use this interpreter as is
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if address:
                ray.init(address=address, **options)
            else:
                # A cluster of our own: its session files and object spills (records, texts, embeddings) go inside
                # a folder only this user can enter (Ray makes its own folder world-readable, as /tmp/ray is)
                self._temp = Path(tempfile.mkdtemp(prefix="privsynth-ray-"))
                ray.init(
                    address="local",  # a new cluster, even if another one runs on this machine
                    num_cpus=workers or os.cpu_count() or 1,
                    _temp_dir=str(self._temp / "ray"),
                    **options,
                )
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._cpus = max(1, cpus)
        self._workers = workers or self._cpus
        log.info("Ray engine: %d worker(s), cluster CPUs %d", self._workers, cpus)

    @property
    def workers(self) -> int:
        """Shards per call."""
        return self._workers

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """One task per item, results in order."""
        ray = _import_ray()
        task = ray.remote(num_cpus=1)(_apply)
        fn_ref = ray.put(fn)
        return list(ray.get([task.remote(fn_ref, x) for x in items]))

    def map_batches(self, fn: Callable[[list[Any]], Any], items: Sequence[Any], *, batch_size: int = 256) -> list[Any]:
        """Ray Data ``map_batches`` over ``items``, ``workers`` tasks at a time; results in the items' order."""
        if not len(items):
            return []
        ray = _import_ray()
        context = ray.data.DataContext.get_current()
        # quiet: Ray Data's bars and start lines print exact counts of the real texts and images being processed
        context.enable_progress_bars = context.enable_operator_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # items travel pickled, so the function sees exactly the objects the local engine would pass (Ray Data
        # would turn them into numpy scalars and arrays)
        rows = [{"position": i, "item": pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL)} for i, x in enumerate(items)]
        blocks = max(1, min(len(rows), self._workers * 4))
        # the function travels with its settings only (collaborators pickle without their models), so the same
        # scanner or embedder pickles to the same bytes in every call and a worker process reuses its copy
        payload = ray.cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        digest = hashlib.sha256(payload).hexdigest()
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _map_batch,
            fn_kwargs={"digest": digest, "payload": payload},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(size=self._workers),
            num_cpus=1,
        )
        out: list[Any] = [None] * len(items)
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for position, result in zip(batch["position"], batch["result"], strict=True):
                out[int(position)] = pickle.loads(result)  # noqa: S301 -- written by _map_batch above, in this run
        return out

    def nearest(self, reference: np.ndarray, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Sharded exact search: one task per reference shard and chunk of queries; the top ``k`` merged here.

        Each shard is put in the object store once; queries go in chunks of
        :data:`~privsynth.engine.base.QUERY_CHUNK`. A task reads its shard in place and holds one chunk of queries,
        so memory does not grow with the queries.
        """
        ray = _import_ray()
        bounds = shard_bounds(len(reference), self._workers)
        work = len(reference) * len(queries) * (reference.shape[1] if reference.ndim == 2 else 1)
        if not bounds or work < self._driver_search_below:
            return flat_search(reference, queries, k)
        # tasks, not actors: warm worker processes are reused, and actors killed between calls hold their CPUs
        # for a while (measured: the whole-audit test went from 110 s to 520 s with one actor per shard per call)
        task = ray.remote(num_cpus=min(1.0, self._cpus / len(bounds)))(_search_shard)
        shards = [ray.put(np.ascontiguousarray(reference[start:stop], dtype=np.float32)) for start, stop in bounds]
        distances, indices = [], []
        for first in range(0, len(queries), QUERY_CHUNK):
            chunk = ray.put(np.ascontiguousarray(queries[first : first + QUERY_CHUNK], dtype=np.float32))
            parts = ray.get([task.remote(ref, chunk, k, start) for ref, (start, _) in zip(shards, bounds, strict=True)])
            d, i = merge_top_k(parts, k)
            distances.append(d)
            indices.append(i)
        if not distances:
            return np.zeros((0, k)), np.zeros((0, k), dtype=np.int64)
        return np.concatenate(distances), np.concatenate(indices)

    def pool(self, factory: Callable[..., Any], *args: Any) -> RayPool:
        """``workers`` Ray actors, each ``factory(*args)``; ``args`` go through the object store once."""
        ray = _import_ray()
        # one core each; on a cluster with fewer cores than workers they share (else the extra ones never start)
        share = min(1.0, self._cpus / self._workers)
        actor = ray.remote(num_cpus=share)(factory)
        refs = [ray.put(a) for a in args]
        return RayPool([actor.remote(*refs) for _ in range(self._workers)])

    def close(self) -> None:
        """Shut down the local cluster this engine started (a cluster it connected to keeps running)."""
        ray = _import_ray()
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)  # session logs and spilled objects
            self._temp = None
