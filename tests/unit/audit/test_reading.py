"""The audit streams a synthetic corpus: only the records it compares are held, and nothing else changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privsynth.audit.reading import read_for_audit
from privsynth.audit.run import SYNTHETIC_SEED_OFFSET, AuditConfig, Collaborators, _subsample, run_audit
from privsynth.data.corpus import Corpus, read_corpus, write_corpus, write_part
from privsynth.data.fingerprint import corpus_fingerprint
from privsynth.data.schema import SCHEMA_FILE, dump_schema, schema_from_dict
from privsynth.errors import CorpusValidationError
from privsynth.variation import recount

from .conftest import HashingTextEmbedder


def _partitioned(corpus: Corpus, folder: Path, parts: int) -> Path:
    """``corpus`` as a folder of Parquet parts (as ``privsynth sample`` writes a large sample)."""
    schema = corpus.schema.with_table("records.parquet")
    (folder / "records.parquet").mkdir(parents=True)
    for i, piece in enumerate(np.array_split(np.arange(len(corpus)), parts)):
        write_part(corpus.records.iloc[piece], schema, folder / "records.parquet" / f"part-{i:05d}.parquet")
    (folder / SCHEMA_FILE).write_text(dump_schema(schema), encoding="utf-8")
    return folder


ASKED = {
    "rebalance": "diagnosis",
    "cells": [
        {"conditions": {"diagnosis": "pneumonia"}, "asked": 10},
        {"conditions": {"sex": "F", "smoker": "True"}, "asked": 5},
    ],
}


@pytest.mark.parametrize("layout", ["parts", "csv"])
def test_a_streamed_read_keeps_the_audits_pick_and_the_whole_corpus_fingerprint(splits, tmp_path, layout) -> None:
    oracle = splits.oracle
    if layout == "parts":
        folder = _partitioned(oracle, tmp_path / "synthetic", parts=4)
    else:
        folder = write_corpus(oracle, tmp_path / "synthetic", table_format="csv")
    whole = read_corpus(folder)
    streamed = read_for_audit(folder, rows=120, seed=7, asked=ASKED, batch_rows=50)
    assert streamed.total == len(whole) > 120
    assert len(streamed.corpus) == 120  # only the pick is held
    expected = _subsample(whole.records, 120, 7)
    pd.testing.assert_frame_equal(streamed.corpus.records.reset_index(drop=True), expected, check_dtype=False)
    assert streamed.fingerprint == corpus_fingerprint(whole)
    assert streamed.variation == recount(whole.records, ASKED)
    everything = read_for_audit(folder, rows=10_000, seed=7, batch_rows=50)
    assert len(everything.corpus) == len(whole) and everything.variation is None


def test_the_fingerprint_orders_records_by_key_as_the_whole_table_does_for_any_text(tmp_path) -> None:
    schema = schema_from_dict({"key": "id", "columns": {"id": {"kind": "key"}, "x": {"kind": "numerical"}}}, source="t")
    keys = ["b", "a", "Z", "é1", "日本", "e", "ß", "😀", "a0", "A"]
    frame = pd.DataFrame({"id": keys, "x": np.arange(len(keys), dtype=float)})
    corpus = Corpus(records=frame, schema=schema, root=Path())
    folder = Path(write_corpus(corpus, tmp_path / "c"))
    assert read_for_audit(folder, rows=100, seed=0, batch_rows=3).fingerprint == corpus_fingerprint(corpus)
    shuffled = corpus.with_records(frame.iloc[::-1])  # the order of the rows plays no part
    assert corpus_fingerprint(shuffled) == corpus_fingerprint(corpus)
    changed = corpus.with_records(frame.assign(x=frame.x.where(frame.id != "ß", 99.0)))
    assert corpus_fingerprint(changed) != corpus_fingerprint(corpus)  # positive control


def test_a_streamed_read_refuses_an_invalid_record_in_any_batch(splits, tmp_path) -> None:
    records = splits.oracle.records.copy()
    records.loc[len(records) - 1, "record_id"] = records.loc[0, "record_id"]  # a repeated key in the last batch
    folder = _partitioned(splits.oracle.with_records(records), tmp_path / "synthetic", parts=3)
    with pytest.raises(CorpusValidationError, match=r"duplicate-key|keys must be unique"):
        read_for_audit(folder, rows=50, seed=0, batch_rows=40)


def test_an_audit_of_a_streamed_corpus_equals_the_audit_of_the_whole_one(splits, tmp_path) -> None:
    config = AuditConfig(bootstrap=30, ocr="off", pii=False, max_rows=150)
    tools = Collaborators(text=HashingTextEmbedder())
    folder = _partitioned(splits.oracle, tmp_path / "synthetic", parts=3)
    whole = run_audit(splits.train, splits.holdout, read_corpus(folder), config=config, collaborators=tools)
    streamed = read_for_audit(folder, rows=config.max_rows, seed=config.seed + SYNTHETIC_SEED_OFFSET, batch_rows=64)
    result = run_audit(splits.train, splits.holdout, streamed, config=config, collaborators=tools)
    for document in (whole, result):
        document.pop("created")
    assert result == whole
    assert result["inputs"]["rows_audited"]["synthetic"] == 150 < result["inputs"]["synthetic"]


def _pii_tools() -> Collaborators:
    from privsynth.pii.engine import PiiScanner

    return Collaborators(text=HashingTextEmbedder(), pii=PiiScanner())


def _scan(tools: Collaborators):  # type: ignore[no-untyped-def]
    from privsynth.audit.pii import find_needles

    return lambda records, schema: find_needles(records, schema, tools.pii, tools.engine)


def test_a_streamed_real_train_and_holdout_give_the_audit_of_the_whole_tables(splits, tmp_path) -> None:
    # The real side read batch by batch keeps only the picks, yet the pre-flight (over every record's hashes) and
    # the replay scan (every real identifier and every PII span of every real note) are the whole tables' own.
    from privsynth.audit.reading import read_real_for_audit
    from privsynth.audit.run import audit_read

    config = AuditConfig(bootstrap=30, ocr="off", max_rows=120, attacks=False, fidelity=False)
    tools = _pii_tools()
    train = _partitioned(splits.train, tmp_path / "train", parts=3)
    holdout = write_corpus(splits.holdout, tmp_path / "holdout", table_format="csv")
    whole = run_audit(read_corpus(train), read_corpus(holdout), splits.oracle, config=config, collaborators=tools)
    real = read_real_for_audit(
        train=train, holdout=holdout, rows=config.max_rows, seed=config.seed, scan=_scan(tools), batch_rows=70
    )
    assert len(real.train) == len(real.holdout) == 120 < real.train_total
    streamed = audit_read(real, splits.oracle, config=config, collaborators=tools)
    assert streamed["pii"]["replay_needles"] > 0  # the replay scan was built and used
    for document in (whole, streamed):
        document.pop("created")
    assert streamed == whole


def test_a_streamed_split_of_the_fitted_corpus_gives_the_audit_of_the_whole_corpus(splits, tmp_path) -> None:
    import json

    from privsynth.audit.inputs import split_from_model
    from privsynth.audit.reading import read_split_for_audit
    from privsynth.audit.run import audit_read
    from privsynth.data.layout import SPLIT
    from privsynth.errors import ConfigError

    config = AuditConfig(bootstrap=30, ocr="off", max_rows=100, attacks=False, fidelity=False)
    tools = _pii_tools()
    mixed = pd.concat([splits.train.records, splits.holdout.records], ignore_index=True)
    mixed = mixed.sample(frac=1.0, random_state=3).reset_index(drop=True)  # train and holdout interleaved
    folder = _partitioned(splits.train.with_records(mixed), tmp_path / "corpus", parts=4)
    model = tmp_path / "model"
    (model / SPLIT).parent.mkdir(parents=True)
    keys = {
        side: corpus.records["record_id"].tolist()
        for side, corpus in (("train", splits.train), ("holdout", splits.holdout))
    }
    (model / SPLIT).write_text(json.dumps(keys))
    train, holdout = split_from_model(read_corpus(folder), model)
    whole = run_audit(train, holdout, splits.oracle, config=config, collaborators=tools)
    real = read_split_for_audit(
        folder,
        train_keys=keys["train"],
        holdout_keys=keys["holdout"],
        rows=config.max_rows,
        seed=config.seed,
        scan=_scan(tools),
        batch_rows=64,
    )
    streamed = audit_read(real, splits.oracle, config=config, collaborators=tools)
    for document in (whole, streamed):
        document.pop("created")
    assert streamed == whole
    with pytest.raises(ConfigError, match="does not hold every record"):
        read_split_for_audit(
            folder, train_keys=[*keys["train"], "R-absent"], holdout_keys=keys["holdout"], rows=100, seed=0
        )


def test_an_empty_part_file_is_read_past_as_a_whole_table_reads_it(splits, tmp_path) -> None:
    from privsynth.data.stream import validate_streaming

    folder = _partitioned(splits.oracle, tmp_path / "synthetic", parts=3)
    schema = splits.oracle.schema.with_table("records.parquet")
    write_part(splits.oracle.records.iloc[:0], schema, folder / "records.parquet" / "part-00001a.parquet")
    whole = read_corpus(folder)
    assert validate_streaming(folder, batch_rows=40).records == len(whole)
    streamed = read_for_audit(folder, rows=50, seed=1, batch_rows=40)
    assert streamed.total == len(whole) and streamed.fingerprint == corpus_fingerprint(whole)


def test_an_audit_refuses_records_read_with_other_settings_than_its_own(splits, tmp_path) -> None:
    config = AuditConfig(bootstrap=30, ocr="off", pii=False, max_rows=150)
    folder = _partitioned(splits.oracle, tmp_path / "synthetic", parts=2)
    other_seed = read_for_audit(folder, rows=150, seed=config.seed)  # not the synthetic side's seed
    with pytest.raises(ValueError, match="max_rows and seed"):
        run_audit(splits.train, splits.holdout, other_seed, config=config)
    fewer = read_for_audit(folder, rows=100, seed=config.seed + SYNTHETIC_SEED_OFFSET)
    with pytest.raises(ValueError, match="max_rows and seed"):
        run_audit(splits.train, splits.holdout, fewer, config=config)
    right = read_for_audit(folder, rows=150, seed=config.seed + SYNTHETIC_SEED_OFFSET)
    result = run_audit(
        splits.train, splits.holdout, right, config=config, collaborators=Collaborators(text=HashingTextEmbedder())
    )
    total = result["inputs"]["synthetic"]
    assert total > 150 and any(f"uniform subsample of 150 of the {total:,}" in line for line in result["limitations"])


def test_a_split_that_names_a_record_twice_is_refused_and_keys_are_read_as_text(tmp_path) -> None:
    import json

    from privsynth.audit.inputs import split_keys
    from privsynth.data.layout import SPLIT
    from privsynth.errors import ConfigError

    model = tmp_path / "model"
    (model / SPLIT).parent.mkdir(parents=True)
    (model / SPLIT).write_text(json.dumps({"train": [1, 2, 3], "holdout": [4]}))
    assert split_keys(model) == {"train": ["1", "2", "3"], "holdout": ["4"]}
    (model / SPLIT).write_text(json.dumps({"train": [1, 2, 3], "holdout": [3]}))
    with pytest.raises(ConfigError, match="names a record twice"):
        split_keys(model)


def test_without_columns_to_compare_the_preflight_counts_every_record_distinct() -> None:
    from privsynth.audit.preflight import preflight

    schema = schema_from_dict({"key": "id", "columns": {"id": {"kind": "key"}}}, source="t")
    train = pd.DataFrame({"id": [f"t{i}" for i in range(600)]})
    holdout = pd.DataFrame({"id": [f"h{i}" for i in range(200)]})
    checked = preflight(train, holdout, schema)  # refused as a 100 % overlap before
    assert checked.overlap_rate == 0.0
