"""fit --plan (issue 18): a forecast from the schema alone, which predicts what collapses at small n."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privsynth.config import FitConfig
from privsynth.data.schema import load_schema
from privsynth.errors import ConfigError
from privsynth.synthesizer import Synthesizer


def verdicts(schema_dir: Path, people: int, epsilon: float = 8.0, *, adaptive: bool = True) -> dict[str, str]:
    config = FitConfig(accountant="rdp")
    config = config.model_copy(update={"profile": config.profile.model_copy(update={"adaptive_share": adaptive})})
    result = Synthesizer(config).plan(load_schema(schema_dir / "schema.yaml"), epsilon=epsilon, people=people)
    shares = {s.stage: s.share for s in result.stages}
    return (
        {c.column: c.verdict for c in result.columns}
        | {s.stage: s.verdict for s in result.stages}
        | {"profile share": f"{shares['profile']:.2f}"}
    )


def test_small_cohorts_are_told_what_collapses_and_the_profile_share_adapts(demo_dir: Path) -> None:
    # At 300 people and epsilon 8 the demo's undeclared 'insurance' came out 100 % __other__ and 'wbc' exploded:
    # with the fixed split the plan says so; the adaptive split gives the profile enough budget to keep them.
    fixed = verdicts(demo_dir, 300, adaptive=False)
    assert fixed["insurance"] == "collapses" and fixed["wbc"] == "collapses"
    adapted = verdicts(demo_dir, 300)
    assert adapted["insurance"] != "collapses" and adapted["wbc"] != "collapses"
    assert float(adapted["profile share"]) > 3 * float(fixed["profile share"])
    large = verdicts(demo_dir, 200_000)
    assert large["insurance"] == "ok" and large["diagnosis"] == "ok" and large["tabular"] == "ok"
    assert large["profile share"] == verdicts(demo_dir, 200_000, adaptive=False)["profile share"]  # unchanged


def test_the_plan_reads_no_record_and_spends_nothing(cli, demo_copy: Path, tmp_path: Path) -> None:
    (demo_copy / "records.parquet").unlink()  # only schema.yaml is read
    store = tmp_path / "l.sqlite"
    result = cli(
        "fit", demo_copy, "-e", "8", "-o", tmp_path / "m", "--plan", "--people", "300", "--ledger-store", store
    )
    assert result.exit_code == 0, result.output
    assert "insurance (degraded): declare its domain" in result.stdout  # the adaptive share saves it
    assert not (tmp_path / "m").exists() and not store.exists()
    as_json = cli("fit", demo_copy, "-e", "8", "-o", tmp_path / "m", "--plan", "--people", "300", "--json")
    plan = json.loads(as_json.stdout)
    assert plan["people"] == 300 and {c["column"]: c["verdict"] for c in plan["columns"]}["sex"] == "ok"
    assert not store.exists()
    refused = cli("fit", demo_copy, "-e", "8", "-o", tmp_path / "m", "--plan")
    assert refused.exit_code == 2 and "--people" in refused.stderr


def test_a_plan_needs_a_positive_estimate(demo_dir: Path) -> None:
    with pytest.raises(ConfigError):
        Synthesizer(FitConfig()).plan(load_schema(demo_dir / "schema.yaml"), epsilon=8, people=0)


def test_a_plan_whose_epsilon_jumps_across_the_window_spends_a_little_less_instead_of_failing() -> None:
    # Found by the validity property test: at epsilon 30 and ~100 people the composed epsilon jumped from 26.6
    # to 30.6 with no plan in [0.97, 1.0] x 30, and the fit died with "please report this".
    from privsynth.config import load_config

    schema = {
        "key": "id",
        "entity": "person",
        "max_records_per_entity": 2,
        "columns": {
            "id": {"kind": "key"},
            "person": {"kind": "key"},
            "amount": {"kind": "numerical", "bounds": [0, 1e9]},
            "delta": {"kind": "numerical", "nullable": False},
            "count": {"kind": "numerical", "integer": True, "nullable": False, "bounds": [0, 40]},
            "group": {"kind": "categorical", "nullable": False, "domain": ["c0"]},
            "flag": {"kind": "boolean", "nullable": False},
            "seen": {"kind": "datetime", "nullable": False, "date_range": ["2020-06-01", "2023-12-31"]},
        },
    }
    small = Path(__file__).resolve().parents[2] / "configs" / "small.yaml"
    result = Synthesizer(load_config(small)).plan(schema, epsilon=30, people=107)
    assert {s.stage for s in result.stages} == {"profile", "tabular"}


def test_a_stage_with_every_person_in_every_step_is_not_told_to_raise_its_batch(demo_dir: Path) -> None:
    result = Synthesizer(FitConfig(accountant="rdp")).plan(load_schema(demo_dir / "schema.yaml"), epsilon=8, people=300)
    tabular = next(s for s in result.stages if s.stage == "tabular")
    assert tabular.sample_rate == 1.0  # the small-cohort rule: full-batch DP gradient descent
    assert tabular.verdict == "ok" or "batch_size" not in tabular.fix
    image = next(s for s in result.stages if s.stage == "image")
    assert image.sample_rate < 1.0 and (image.verdict == "ok" or "max_sample_rate" in image.fix)
