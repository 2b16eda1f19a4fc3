"""Writing sampled records as a synthetic corpus: same layout and schema as a real one, plus provenance.

A synthetic corpus folder holds ``schema.yaml`` and the table exactly like a real corpus, a ``synthetic.json``
provenance file (model run, seed, conditions, epsilon) and an owner-only ``internal/`` folder with the surrogate
registry (the fake identities given to each record), which audits use to tell generated PII from leaked PII.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from privsynth._version import __version__
from privsynth.conditions import describe
from privsynth.data.atomic import atomic_dir
from privsynth.data.corpus import image_files, write_table
from privsynth.data.layout import PROVENANCE, REGISTRY
from privsynth.data.schema import TABLE_FORMATS
from privsynth.errors import ConfigError
from privsynth.synthesizer import Synthesizer
from privsynth.variation import Variation, achieved, plan_cells


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
) -> Path:
    """Sample ``n`` records and write them as a corpus folder, atomically.

    With ``variation`` (:mod:`privsynth.variation`) the records are drawn cell by cell (a grid sets its own
    ``n``: pass ``n=None``); the provenance records what was asked and what came out.
    """
    if f".{table_format}" not in TABLE_FORMATS:
        raise ConfigError(f"--format {table_format!r} is not one of parquet, csv, jsonl")
    varied: dict[str, Any] | None = None
    if variation is not None:
        cells = plan_cells(variation, synth.profile_, n)
        records, identities = synth.sample_cells(cells, conditions=conditions, seed=seed)
        varied = {**variation.describe(), "cells": achieved(records, cells)}
    elif n is None:
        raise ConfigError("--n is required (the number of synthetic records)")
    else:
        records, identities = synth.sample_with_identities(n, conditions=conditions, seed=seed)
    n = len(records)
    schema = synth.synthetic_schema.with_table(f"records.{table_format}")
    provenance = {
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
    }
    with atomic_dir(out, force=force, private=False) as tmp:  # synthetic (DP); internal/ stays owner-only
        records = image_files(records, schema, tmp)  # PNG files referenced by relative path, as in a real corpus
        write_table(records, schema, tmp, header="# synthetic corpus written by privsynth sample\n")
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
        internal = tmp / REGISTRY.parent
        internal.mkdir(mode=0o700)
        identities.to_parquet(tmp / REGISTRY, index=False)
        (tmp / REGISTRY).chmod(0o600)
    return out
