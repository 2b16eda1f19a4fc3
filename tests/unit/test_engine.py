"""The engine seam's pure parts and the local engine (Ray is tested in tests/integration/test_engine_ray.py)."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from privsynth.audit.embedders import MiniLMEmbedder
from privsynth.engine import EngineKind, EngineSettings, LocalEngine, make_engine, merge_top_k
from privsynth.engine.base import flat_search, shard_bounds
from privsynth.errors import ConfigError
from privsynth.pii.engine import PiiScanner


def test_merging_shard_results_gives_the_exact_top_k(rng: np.random.Generator) -> None:
    reference = rng.normal(size=(1000, 8)).astype(np.float32)
    queries = rng.normal(size=(50, 8)).astype(np.float32)
    whole = flat_search(reference, queries, 5)
    for shards in (2, 3, 7, 999):
        parts = []
        for start, stop in shard_bounds(len(reference), shards):
            d, i = flat_search(reference[start:stop], queries, min(5, stop - start))
            parts.append((d, i + start))
        merged = merge_top_k(parts, 5)
        np.testing.assert_array_equal(merged[1], whole[1])
        np.testing.assert_allclose(merged[0], whole[0], rtol=1e-5, atol=1e-6)


def test_ties_go_to_the_smaller_index_whatever_the_sharding() -> None:
    reference = np.zeros((6, 2), dtype=np.float32)  # six identical rows: every distance ties
    queries = np.ones((3, 2), dtype=np.float32)
    parts = [
        (d, i + start)
        for start, stop in shard_bounds(6, 3)
        for d, i in [flat_search(reference[start:stop], queries, 2)]
    ]
    assert merge_top_k(parts, 3)[1].tolist() == [[0, 1, 2]] * 3


def test_shards_cover_every_row_once() -> None:
    for n in (0, 1, 5, 100):
        for shards in (1, 2, 3, 16):
            rows = [r for a, b in shard_bounds(n, shards) for r in range(a, b)]
            assert rows == list(range(n))


def test_the_local_engine_is_the_default_and_maps_in_order() -> None:
    engine = make_engine(None)
    assert isinstance(engine, LocalEngine) and engine.workers == 1
    assert isinstance(make_engine(EngineSettings(kind=EngineKind.LOCAL)), LocalEngine)
    assert engine.map(lambda x: x * 2, [3, 1, 2]) == [6, 2, 4]
    assert engine.map_batches(lambda xs: [x + 1 for x in xs], [1, 2, 3]) == [2, 3, 4]
    assert engine.map_batches(lambda xs: xs, []) == []


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="workers"):
        EngineSettings(kind=EngineKind.RAY, workers=0)
    with pytest.raises(ValueError, match="kind"):
        EngineSettings.model_validate({"kind": "spark"})
    with pytest.raises(ValueError, match="need kind: ray"):  # a run config asking workers of the local engine
        EngineSettings.model_validate({"kind": "local", "workers": 4})


def test_collaborators_travel_as_settings_not_as_loaded_models() -> None:
    """A scanner or embedder sent to a worker carries its settings; the worker builds its own model."""
    scanner = PiiScanner(extra_last_names=["Quenby"])
    scanner.scan("Call Ada Quenby")  # builds Presidio in this process
    copy = pickle.loads(pickle.dumps(scanner))
    assert "_engine" not in copy.__dict__ and copy.extra_last_names == ("Quenby",)
    assert [d.entity for d in copy.scan("Call Ada Quenby")] == [d.entity for d in scanner.scan("Call Ada Quenby")]
    embedder = MiniLMEmbedder(batch_size=7)
    embedder.__dict__["_model"] = object()  # as if loaded
    assert "_model" not in pickle.loads(pickle.dumps(embedder)).__dict__


def test_asking_for_ray_without_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'privsynth\[ray\]'"):
        make_engine(EngineSettings(kind=EngineKind.RAY))


def test_an_identical_row_is_at_distance_zero_whatever_the_sharding(rng: np.random.Generator) -> None:
    """FAISS' float32 |x|^2 + |y|^2 - 2xy puts a copy at ~3e-4 and by a shard-dependent amount; the audit's
    'identical' and tie checks need exactly 0 on every engine."""
    reference = rng.random((3000, 64)).astype(np.float32)  # ECDF-like values in [0, 1], as the audit encodes
    copies = rng.choice(3000, size=2000)
    queries = np.ascontiguousarray(reference[copies])  # FAISS alone put about 35 % of these at up to 5e-3
    d, i = flat_search(reference, queries, 2)
    assert (d[:, 0] == 0.0).all() and (i[:, 0] == copies).all()
    parts = []
    for start, stop in shard_bounds(len(reference), 3):
        ds, is_ = flat_search(reference[start:stop], queries, 2)
        parts.append((ds, is_ + start))
    merged = merge_top_k(parts, 2)
    np.testing.assert_array_equal(merged[0], d)  # bit for bit
    np.testing.assert_array_equal(merged[1], i)


def test_an_empty_reference_gives_padding_not_an_error() -> None:
    d, i = flat_search(np.zeros((0, 3), dtype=np.float32), np.ones((2, 3), dtype=np.float32), 1)
    assert i.tolist() == [[-1], [-1]] and np.isinf(d).all()
