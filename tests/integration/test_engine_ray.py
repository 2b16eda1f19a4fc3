"""The Ray engine against the local one on the same inputs (one local Ray cluster for this module).

Deterministic computations (exact search, PII scans, embeddings, the whole audit with the same seed) must give
identical results whatever the engine and the number of workers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from privsynth.audit.memorization import distance_audit
from privsynth.audit.run import AuditConfig, Collaborators, run_audit
from privsynth.data.corpus import Corpus
from privsynth.data.demo import build_demo_records, demo_schema
from privsynth.engine import LocalEngine
from privsynth.pii.engine import PiiScanner

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'privsynth[ray]'")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from privsynth.engine.ray_engine import RayEngine

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fake embedder below, on the workers
    try:
        started = RayEngine(workers=2)
    except Exception as exc:  # noqa: BLE001 -- any failure to start is a reason to skip, shown as such
        pytest.skip(f"Ray could not start a local cluster here: {type(exc).__name__}: {exc}")
    yield started
    started.close()


class HashingTextEmbedder:
    """A cheap real text representation (character n-gram hashing), picklable for the workers."""

    name = "hashing-char-ngrams"
    evidence = True

    def embed(self, items: Sequence[object]) -> np.ndarray:
        vectorizer = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=256, alternate_sign=False)
        matrix = vectorizer.transform([t if isinstance(t, str) else "" for t in items]).toarray()
        return (matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def _splits(n: int) -> tuple[Corpus, Corpus, Corpus]:
    frame, images = build_demo_records(n, seed=5)
    frame = frame.copy()
    frame["scan"] = [images[rel] for rel in frame["scan"]]
    thirds = np.array_split(np.random.default_rng(1).permutation(len(frame)), 3)
    schema = demo_schema()
    return tuple(  # type: ignore[return-value]
        Corpus(records=frame.iloc[np.sort(t)].reset_index(drop=True), schema=schema, root=Path(".")) for t in thirds
    )


def test_sharded_search_equals_one_index_for_any_worker_count(engine: Any, rng: np.random.Generator) -> None:
    from privsynth.engine.ray_engine import RayEngine

    reference = rng.normal(size=(3000, 12)).astype(np.float32)
    queries = rng.normal(size=(200, 12)).astype(np.float32)
    local = LocalEngine().nearest(reference, queries, 3)
    for workers in (1, 2, 3):
        # joins the running cluster; every search sharded, however small
        d, i = RayEngine(workers=workers, driver_search_below=0).nearest(reference, queries, 3)
        np.testing.assert_array_equal(i, local[1])
        np.testing.assert_allclose(d, local[0], rtol=1e-5, atol=1e-6)


def test_the_local_cluster_keeps_its_files_owner_only(engine: Any) -> None:
    """Spilled objects (records, texts) and session files live in a folder only this user can enter."""
    assert engine._temp is not None and engine._temp.stat().st_mode & 0o777 == 0o700


def test_map_and_batches_keep_the_items_order(engine: Any) -> None:
    assert engine.map(abs, [-3, 1, -2]) == [3, 1, 2]
    items = [f"t{i}" for i in range(37)]
    assert engine.map_batches(lambda batch: [s.upper() for s in batch], items, batch_size=5) == [
        s.upper() for s in items
    ]
    assert engine.map_batches(len, [], batch_size=5) == []


def test_the_distance_audit_is_the_same_on_ray(engine: Any, rng: np.random.Generator) -> None:
    from privsynth.engine.ray_engine import RayEngine

    train, holdout, synthetic = (rng.normal(size=(n, 6)).astype(np.float32) for n in (900, 300, 400))
    local = distance_audit(train, holdout, synthetic, space="t", seed=3, bootstrap=50)
    sharded = RayEngine(workers=2, driver_search_below=0)  # joins the running cluster; every search on the workers
    assert distance_audit(train, holdout, synthetic, space="t", seed=3, bootstrap=50, engine=sharded) == local
    # by default searches this small run on the driver: the same answer, without the round trips
    assert distance_audit(train, holdout, synthetic, space="t", seed=3, bootstrap=50, engine=engine) == local


def test_the_attacks_nearest_neighbour_parts_are_the_same_sharded_on_ray(engine: Any, rng: np.random.Generator) -> None:
    """Membership, linkability and attribute inference with every search sharded over 2 workers equal local ones
    (the whole-audit test below runs its small searches on the driver)."""
    from privsynth.audit.attacks import attribute_inference, linkability, membership_inference
    from privsynth.engine.ray_engine import RayEngine

    train, control, synthetic = (rng.integers(0, 4, size=(n, 6)).astype(np.float32) for n in (600, 300, 400))
    sharded = RayEngine(workers=2, driver_search_below=0)  # joins the running cluster
    for attack in (
        lambda engine: membership_inference(train, control, synthetic, seed=1, bootstrap=20, engine=engine),
        lambda engine: linkability(train, control, synthetic, targets=100, seed=1, engine=engine),
        lambda engine: attribute_inference(train, control, synthetic, 2, targets=100, seed=1, engine=engine),
    ):
        assert attack(sharded) == attack(None)


class ProcessCopy:
    """A collaborator that says which worker process and which unpickled copy of it handled each item."""

    def __init__(self) -> None:
        self.name = "process-copy"  # some state: pickle skips __setstate__ for an empty one

    def __setstate__(self, state: dict[str, Any]) -> None:
        import uuid

        self.__dict__.update(state)
        self.copy = uuid.uuid4().hex  # a new one each time this object is unpickled

    def tag(self, items: list[int]) -> list[tuple[int, str]]:
        import os

        return [(os.getpid(), self.copy) for _ in items]


def test_a_worker_process_unpickles_a_collaborator_once_for_every_call(engine: Any) -> None:
    """Presidio and MiniLM are imported and built once per worker process, not once per batch or per call."""
    collaborator = ProcessCopy()
    copies: dict[int, set[str]] = {}
    calls: dict[int, int] = {}
    for _ in range(3):
        tags = set(engine.map_batches(collaborator.tag, list(range(40)), batch_size=4))
        for pid, copy in tags:
            copies.setdefault(pid, set()).add(copy)
        for pid in {pid for pid, _ in tags}:
            calls[pid] = calls.get(pid, 0) + 1
    assert all(len(c) == 1 for c in copies.values()), copies  # one copy per process, kept across calls
    assert max(calls.values()) > 1, calls  # processes outlive a call (actors started per call do not)


def test_the_whole_audit_is_the_same_on_ray(engine: Any) -> None:
    train, holdout, synthetic = _splits(300)
    config = AuditConfig(bootstrap=30, ocr="off", fidelity=False)

    def audit(collaborators: Collaborators) -> dict[str, Any]:
        out = run_audit(train, holdout, synthetic, config=config, collaborators=collaborators)
        out.pop("created")
        expected = collaborators.engine.name if collaborators.engine is not None else "local"
        assert out.pop("engine")["name"] == expected
        return out

    local = audit(Collaborators(text=HashingTextEmbedder(), pii=PiiScanner()))
    remote = audit(Collaborators(text=HashingTextEmbedder(), pii=PiiScanner(), engine=engine))
    assert set(remote["memorization"]) >= {"tabular", "text", "image", "record"}
    assert remote["pii"]["scanned_cells"] > 0 and remote["pii"]["replay_needles"] > 0
    _assert_same(remote, local)


def _assert_same(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), path
    else:
        assert a == b, path


def test_sharded_sampling_gives_the_same_records_for_any_worker_count(
    engine: Any, demo_dir: Path, tmp_path: Path
) -> None:
    from privsynth.config import load_config
    from privsynth.data.corpus import corpora_equal, read_corpus
    from privsynth.engine.ray_engine import RayEngine
    from privsynth.privacy.store import LedgerStore
    from privsynth.sampling import write_synthetic
    from privsynth.synthesizer import Synthesizer

    small = Path(__file__).resolve().parents[2] / "configs" / "small.yaml"
    store = LedgerStore(tmp_path / "ledger.sqlite")
    synth = Synthesizer(load_config(small)).fit(read_corpus(demo_dir), epsilon=3.0, store=store, source="demo")
    model = synth.save(tmp_path / "model")
    local = read_corpus(write_synthetic(synth, tmp_path / "local", n=90, seed=2, shard_records=30))
    for workers in (1, 2):
        out = write_synthetic(
            synth,
            tmp_path / f"ray{workers}",
            n=90,
            seed=2,
            shard_records=30,
            engine=RayEngine(workers=workers),
            model=model,
        )
        assert corpora_equal(read_corpus(out), local), workers


def test_the_dp_profile_on_ray_sums_shard_counts_before_the_one_noise_draw(
    engine: Any, demo_dir: Path, reproducible_noise: int
) -> None:
    from privsynth.data.corpus import read_corpus
    from privsynth.engine.ray_engine import RayEngine
    from privsynth.privacy.randomness import Streams
    from privsynth.profile.profiler import profile_corpus

    corpus = read_corpus(demo_dir)
    local = profile_corpus(corpus, epsilon=2.0, delta=1e-5, streams=Streams.private()).model_dump()
    remote = profile_corpus(
        corpus, epsilon=2.0, delta=1e-5, streams=Streams.private(), engine=RayEngine(workers=3)
    ).model_dump()
    for profile in (local, remote):
        for entry in profile["ledger"]["entries"]:
            entry.pop("at")  # when it was spent
    assert remote == local


def _small_trainer() -> Any:
    """A tiny DP-SGD problem: 300 records of 100 people, 15 steps (closures pickled by value to the actors)."""
    import torch

    from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
    from privsynth.privacy.accounting import Mechanism
    from privsynth.privacy.randomness import Streams

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    x = torch.randn(300, 4)
    y = x[:, :1] * 2.0 - x[:, 1:2]

    def loss(module: torch.nn.Module, rows: np.ndarray) -> torch.Tensor:
        return ((module(x[rows]) - y[rows]) ** 2).squeeze(1)

    return DPSGDTrainer(
        model,
        loss=loss,
        groups=Groups.from_labels(np.arange(300) // 3, 300),  # people with 3 records each
        mechanism=Mechanism(noise_multiplier=0.7, sample_rate=0.2, steps=15),
        config=OptimConfig(batch_size=20, lr=0.02),
        streams=Streams.private(),
        stream=("tabular", "*"),
        units=100,
    )


def _same_run(a: Any, b: Any) -> None:
    import torch

    assert a.step == b.step == 15
    assert torch.equal(a.noise.get_state(), b.noise.get_state())  # the same noise, drawn once per step
    for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.allclose(x, y, atol=1e-5)


def test_dp_sgd_on_two_ray_workers_takes_the_single_process_steps(engine: Any, reproducible_noise: int) -> None:
    """Clipped sums from 2 actors, noise once on the driver: the same weights and noise stream as one process."""
    local, remote = _small_trainer(), _small_trainer()
    local.run()
    remote.run(engine=engine)
    _same_run(remote, local)


def test_a_checkpoint_from_two_ray_workers_resumes_on_one(engine: Any, tmp_path: Path, reproducible_noise: int) -> None:
    """Interrupted after 6 steps on 2 actors, resumed on 1 actor of a new pool: the uninterrupted run's result."""
    from privsynth.engine.ray_engine import RayEngine

    local = _small_trainer()
    local.run()
    first = _small_trainer()
    first.run(until=6, checkpoint=tmp_path / "ckpt", checkpoint_every=3, engine=engine)
    assert first.step == 6
    resumed = _small_trainer()
    resumed.load_checkpoint(tmp_path / "ckpt")
    assert resumed.step == 6
    resumed.run(engine=RayEngine(workers=1))  # joins the running cluster
    _same_run(resumed, local)


def test_a_fit_on_ray_workers_spends_exactly_what_the_local_fit_spends(
    engine: Any, demo_dir: Path, tmp_path: Path, reproducible_noise: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Every DP-SGD stage (tabular, text, image) trains on the cluster; the ledger is the single-process one."""
    import logging

    caplog.set_level(logging.INFO, logger="privsynth.generators.dpsgd_workers")
    from privsynth.config import load_config
    from privsynth.data.corpus import read_corpus
    from privsynth.privacy.store import LedgerStore
    from privsynth.synthesizer import Synthesizer

    small = load_config(Path(__file__).resolve().parents[2] / "configs" / "small.yaml")
    corpus = read_corpus(demo_dir)
    fits = {}
    for name, where in (("local", None), ("ray", engine)):
        store = LedgerStore(tmp_path / f"{name}.sqlite")
        fits[name] = Synthesizer(small).fit(corpus, epsilon=3.0, store=store, source="demo", engine=where)
    ledgers = {}
    for name, synth in fits.items():
        state = synth.ledger_.state_dict()
        for entry in state["entries"]:
            entry.pop("at")  # when it was spent
        state.pop("run_id", None)
        ledgers[name] = state
    assert ledgers["ray"] == ledgers["local"]
    stages = {entry["stage"] for entry in ledgers["ray"]["entries"]}
    assert {"tabular", "text", "image"} <= stages
    on_workers = [r for r in caplog.records if r.getMessage().startswith("DP-SGD on 2 worker(s)")]
    assert len(on_workers) >= 3  # the tabular, text and image runs each started their workers
    # every built-in loss names its records, so each actor received only its shard of them
    assert not [r for r in caplog.records if "does not name its records" in r.getMessage()]
    assert len(fits["ray"].sample(40, seed=3)) == 40
