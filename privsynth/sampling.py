"""Writing sampled records as a synthetic corpus: same layout and schema as a real one, plus provenance.

A synthetic corpus folder holds ``schema.yaml`` and the table exactly like a real corpus, a ``synthetic.json``
provenance file (model run, seed, conditions, epsilon) and an owner-only ``internal/`` folder with the surrogate
registry (the fake identities given to each record), which audits use to tell generated PII from leaked PII.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from privsynth._version import __version__
from privsynth.conditions import describe
from privsynth.data.atomic import atomic_dir
from privsynth.data.corpus import image_files, image_shards, write_part, write_table
from privsynth.data.layout import MODEL_META, PROVENANCE, REGISTRY
from privsynth.data.schema import SCHEMA_FILE, TABLE_FORMATS, Schema, dump_schema
from privsynth.engine import Engine, LocalEngine
from privsynth.errors import ConfigError
from privsynth.generators.base import Progress
from privsynth.synthesizer import Synthesizer
from privsynth.text_sampling import apply as apply_text
from privsynth.text_sampling import text_sampling
from privsynth.variation import Variation, achieved, plan_cells

HEADER = "# synthetic corpus written by privsynth sample\n"
#: Records per shard when a sample is larger (a public constant: the records depend on it, never on how many
#: workers draw them). Each shard has its own sampling stream from the run's seed and writes its own part files.
SHARD_RECORDS = 100_000


@dataclass(frozen=True)
class Shard:
    """One shard of a large sample: records ``first .. first + count - 1`` drawn with ``seed``."""

    index: int
    first: int
    count: int
    seed: int


def plan_shards(n: int, seed: int, size: int = SHARD_RECORDS) -> list[Shard]:
    """Shards of ``size`` records (the last one shorter), each seeded from ``(seed, index)``.

    >>> [(s.first, s.count) for s in plan_shards(250, 0, 100)]
    [(0, 100), (100, 100), (200, 50)]
    """
    return [
        Shard(i, first, min(size, n - first), int(np.random.SeedSequence([int(seed), i + 1]).generate_state(1)[0]))
        for i, first in enumerate(range(0, n, size))
    ]


@functools.lru_cache(maxsize=2)
def _load(model: Path, stamp: int) -> Synthesizer:
    """The model, once per worker process (``stamp``: model.json's mtime, so a replaced model is read again).

    Never ``internal/``: a worker only samples, and the real keys of the holdout split stay with the owner.
    """
    del stamp
    return Synthesizer.load(model, internal=False)


@dataclass(frozen=True)
class _ShardWriter:
    """Samples one shard and writes its part files into the output's temporary folder (runs on a worker)."""

    model: Synthesizer | Path  # a path for workers in other processes: each loads the model once
    folder: Path
    schema: Schema
    conditions: Mapping[str, Any] | None
    digits: int
    text: Mapping[str, Mapping[str, Any]]  # every text column's sampling settings, all of them (none left stale)

    def __call__(self, shard: Shard) -> tuple[int, dict[str, int]]:
        """The records written, and the spans each text column's scrub replaced in them."""
        if isinstance(self.model, Synthesizer):
            synth = self.model
        else:
            synth = _load(self.model, (self.model / MODEL_META).stat().st_mtime_ns)
            apply_text(synth, self.text)  # the worker's cached model: this run's settings, whatever the last run's
        scrubbed: dict[str, int] = {}
        records, identities = synth.sample_with_identities(
            shard.count,
            conditions=self.conditions,
            seed=shard.seed,
            first_key=shard.first,
            key_digits=self.digits,
            scrubbed=scrubbed,
        )
        stem = f"part-{shard.index:05d}"
        name = f"{stem}.parquet"
        # images go into one tar shard per part and image column (millions of records: hundreds of files)
        write_part(
            image_shards(records, self.schema, self.folder, stem), self.schema, self.folder / self.schema.table / name
        )
        identities.to_parquet(self.folder / REGISTRY / name, index=False)
        (self.folder / REGISTRY / name).chmod(0o600)
        return len(records), scrubbed


def write_synthetic(
    synth: Synthesizer,
    out: Path,
    *,
    n: int | None,
    seed: int,
    conditions: Mapping[str, Any] | None = None,
    table_format: str = "parquet",
    force: bool = False,
    variation: Variation | None = None,
    engine: Engine | None = None,
    model: Path | None = None,
    shard_records: int = SHARD_RECORDS,
    text: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Sample ``n`` records and write them as a corpus folder, atomically.

    With ``variation`` (:mod:`privsynth.variation`) the records are drawn cell by cell (a grid sets its own
    ``n``: pass ``n=None``); the provenance records what was asked and what came out. More than
    ``shard_records`` records are drawn shard by shard on ``engine`` (:func:`plan_shards`) into a partitioned
    Parquet table, with the images packed into WebDataset-style tar shards (``images/<column>/part-NNNNN.tar``,
    one per part); the records are the same for any engine and number of workers. Workers in other processes
    load the model from ``model`` (its folder, on storage they share with this machine). ``text`` changes how
    every text column is sampled (:data:`privsynth.text_sampling.SAMPLING_SETTINGS`, e.g. ``{"candidates": 4}``)
    for this sample only; the provenance records the settings used. ``progress`` receives ``(stage, done,
    total)``: the text and image generators' records, or with shards on the local engine, the records written.
    """
    with text_sampling(synth, text) as drawn_with:
        return _write(
            synth,
            out,
            n=n,
            seed=seed,
            conditions=conditions,
            table_format=table_format,
            force=force,
            variation=variation,
            engine=engine,
            model=model,
            shard_records=shard_records,
            text=drawn_with,
            progress=progress,
        )


def _write(
    synth: Synthesizer,
    out: Path,
    *,
    n: int | None,
    seed: int,
    conditions: Mapping[str, Any] | None,
    table_format: str,
    force: bool,
    variation: Variation | None,
    engine: Engine | None,
    model: Path | None,
    shard_records: int,
    text: dict[str, dict[str, Any]],
    progress: Progress | None,
) -> Path:
    if f".{table_format}" not in TABLE_FORMATS:
        raise ConfigError(f"--format {table_format!r} is not one of parquet, csv, jsonl")
    local = engine is None or isinstance(engine, LocalEngine)
    # CSV and JSONL are one file: sharded only with a cluster engine, which then asks for Parquet
    sharded = table_format == "parquet" or not local
    if n is not None and n > shard_records and variation is None and sharded:
        return _write_sharded(
            synth,
            out,
            n=n,
            seed=seed,
            conditions=conditions,
            table_format=table_format,
            force=force,
            engine=engine if engine is not None else LocalEngine(),
            model=model,
            shard_records=shard_records,
            text=text,
            progress=progress,
        )
    varied: dict[str, Any] | None = None
    scrubbed: dict[str, int] = {}
    if variation is not None:
        cells = plan_cells(variation, synth.profile_, n)
        records, identities = synth.sample_cells(
            cells, conditions=conditions, seed=seed, progress=progress, scrubbed=scrubbed
        )
        varied = {**variation.describe(), "cells": achieved(records, cells)}
    elif n is None:
        raise ConfigError("--n is required (the number of synthetic records)")
    else:
        records, identities = synth.sample_with_identities(
            n, conditions=conditions, seed=seed, progress=progress, scrubbed=scrubbed
        )
    n = len(records)
    schema = synth.synthetic_schema.with_table(f"records.{table_format}")
    provenance = _provenance(synth, n=n, seed=seed, conditions=conditions, varied=varied, text=text)
    provenance["text_scrubbed"] = scrubbed
    with atomic_dir(out, force=force, private=False) as tmp:  # synthetic (DP); internal/ stays owner-only
        records = image_files(records, schema, tmp)  # PNG files referenced by relative path, as in a real corpus
        write_table(records, schema, tmp, header=HEADER)
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
        internal = tmp / REGISTRY.parent
        internal.mkdir(mode=0o700)
        identities.to_parquet(tmp / REGISTRY, index=False)
        (tmp / REGISTRY).chmod(0o600)
    return out


def _write_sharded(
    synth: Synthesizer,
    out: Path,
    *,
    n: int,
    seed: int,
    conditions: Mapping[str, Any] | None,
    table_format: str,
    force: bool,
    engine: Engine,
    model: Path | None,
    shard_records: int,
    text: dict[str, dict[str, Any]],
    progress: Progress | None,
) -> Path:
    if table_format != "parquet":
        raise ConfigError(
            f"a sample of more than {shard_records:,} records drawn on a cluster is written as a partitioned "
            "Parquet table; use --format parquet (or --engine local, which writes one file)"
        )
    local = isinstance(engine, LocalEngine)
    if not local and model is None:
        raise ConfigError("sampling on a cluster needs the model folder, which each worker loads")
    shards = plan_shards(n, seed, shard_records)
    schema = synth.synthetic_schema.with_table("records.parquet")
    provenance = _provenance(synth, n=n, seed=seed, conditions=conditions, varied=None, text=text)
    provenance["shards"] = {"records_per_shard": shard_records, "count": len(shards)}
    synth.check_conditions(conditions)  # a bad --where fails here, before any shard
    with atomic_dir(out, force=force, private=False) as tmp:
        (tmp / schema.table).mkdir()
        (tmp / REGISTRY.parent).mkdir(mode=0o700)
        (tmp / REGISTRY).mkdir(mode=0o700)
        # absolute paths: workers may run in another working directory (or on another machine, on shared storage)
        source: Synthesizer | Path = synth if local or model is None else model.resolve()
        writer = _ShardWriter(source, tmp.resolve(), schema, conditions, max(7, len(str(n))), text)
        if local and progress is not None:  # one shard after another in this process: records written so far
            parts = []
            for shard in shards:
                parts.append(writer(shard))
                progress("sampling shards", sum(count for count, _ in parts), n)
        else:
            parts = engine.map(writer, shards)
        written = sum(count for count, _ in parts)
        provenance["text_scrubbed"] = _summed(scrubbed for _, scrubbed in parts)
        if written != n:
            raise RuntimeError(f"the shards wrote {written} records where {n} were asked")
        (tmp / SCHEMA_FILE).write_text(dump_schema(schema, header=HEADER), encoding="utf-8")
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
    return out


def _summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Per-column counts of several shards, added up."""
    out: dict[str, int] = {}
    for part in counts:
        for column, count in part.items():
            out[column] = out.get(column, 0) + int(count)
    return out


def _provenance(
    synth: Synthesizer,
    *,
    n: int,
    seed: int,
    conditions: Mapping[str, Any] | None,
    varied: dict[str, Any] | None,
    text: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "privsynth_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "model_run_id": synth.run_id_,
        "records": n,
        "seed": seed,
        "conditions": describe(conditions or {}),
        "variation": varied,
        "epsilon": synth.ledger_.epsilon,
        "delta": synth.ledger_.target_delta,
        "unit_of_privacy": synth.schema_.unit_of_privacy,
        "omitted_columns": synth.skipped_,
        "schema_inferred": synth.schema_inferred_,
        "generators": synth.generator_names,
        "public_data": synth.public_data,
        "source": synth.source_,
        "ledger": synth.ledger_.state_dict(),
        "config": synth.config.model_dump(mode="json"),
        "text_sampling": text,  # what each text column was drawn with (the fit's config, or --text)
    }
