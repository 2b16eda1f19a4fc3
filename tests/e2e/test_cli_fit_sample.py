"""privsynth fit / sample through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from privsynth.cli.output import ExitCode

SMALL = Path(__file__).resolve().parents[2] / "configs" / "small.yaml"


def test_fit_then_sample(cli, demo_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "l.sqlite"
    model = tmp_path / "model"
    result = cli("fit", demo_dir, "-e", "2", "-o", model, "-c", SMALL, "--ledger-store", store, "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "left out of samples" not in result.stderr  # every modality of the demo corpus has a generator
    meta = json.loads((model / "model.json").read_text())
    assert meta["generators"] == ["tabular", "text:note", "image:scan"]
    assert 0.97 * 2 <= json.loads((model / "ledger.json").read_text())["epsilon"] <= 2
    synthetic = tmp_path / "synthetic"
    result = cli("sample", model, "--n", "50", "-o", synthetic, "--where", "sex=F", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert cli("validate", synthetic).exit_code == 0
    frame = pd.read_csv(synthetic / "records.csv")
    assert len(frame) == 50 and (frame["sex"] == "F").all()
    assert frame["scan"].dropna().str.startswith("images/scan/").all()  # PNG files, by relative path
    provenance = json.loads((synthetic / "synthetic.json").read_text())
    assert provenance["conditions"] == {"sex": "F"} and provenance["records"] == 50
    assert (synthetic / "internal" / "surrogates.parquet").stat().st_mode & 0o777 == 0o600


def test_fit_and_sample_errors_exit_2(cli, demo_dir: Path, tmp_path: Path) -> None:
    assert cli("fit", demo_dir, "-e", "0", "-o", tmp_path / "m").exit_code == ExitCode.BAD_INPUT
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("tabular: {hidden: -3}\n")
    result = cli("fit", demo_dir, "-e", "1", "-o", tmp_path / "m", "-c", bad_config)
    assert result.exit_code == ExitCode.BAD_INPUT and "tabular.hidden" in result.stderr
    assert not (tmp_path / "m").exists()
    assert cli("sample", tmp_path / "nope", "--n", "5", "-o", tmp_path / "s").exit_code == ExitCode.BAD_INPUT
    model = tmp_path / "model"
    assert cli("fit", demo_dir, "-e", "1", "-o", model, "-c", SMALL, "--ledger-store", tmp_path / "l").exit_code == 0
    result = cli("sample", model, "--n", "5", "-o", tmp_path / "s", "--where", "nope=1")
    assert result.exit_code == ExitCode.BAD_INPUT and "unknown column" in result.stderr
    result = cli("sample", model, "--n", "5", "-o", tmp_path / "s", "--where", "diagnosis")
    assert result.exit_code == ExitCode.BAD_INPUT and "COLUMN=VALUE" in result.stderr
    assert not (tmp_path / "s").exists()
