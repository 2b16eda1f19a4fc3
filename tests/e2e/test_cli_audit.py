"""privsynth audit through the CLI, on a tiny fit of the demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privsynth.cli.output import ExitCode

SMALL = Path(__file__).resolve().parents[2] / "configs" / "small.yaml"


@pytest.fixture(scope="module")
def fitted(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from privsynth.cli import main

    root = tmp_path_factory.mktemp("audit")
    model, synthetic = root / "model", root / "synthetic"
    assert (
        main(
            [
                "fit",
                str(demo_dir),
                "-e",
                "3",
                "-o",
                str(model),
                "-c",
                str(SMALL),
                "--ledger-store",
                str(root / "l.sqlite"),
            ]
        )
        == 0
    )
    assert main(["sample", str(model), "--n", "120", "-o", str(synthetic)]) == 0
    return model, synthetic


def test_audit_from_the_model_split(cli, demo_dir: Path, fitted, tmp_path: Path) -> None:
    model, synthetic = fitted
    out = tmp_path / "audit"
    result = cli("audit", "--model", model, "--corpus", demo_dir, "--synthetic", synthetic, "-o", out, "--ocr", "off")
    assert result.exit_code == 0, result.output
    audit = json.loads((out / "audit.json").read_text())
    assert audit["version"] == 1 and audit["claimed"]["source"] == "synthetic.json"
    assert 0.97 * 3 <= audit["claimed"]["epsilon"] <= 3
    assert audit["inputs"]["holdout"] > 0
    # text and images generated; a column may be absent only where the fit left it out (a DP range never seen)
    omitted = json.loads((synthetic / "synthetic.json").read_text())["omitted_columns"]
    absent = [x for x in audit["limitations"] if "absent from the synthetic corpus" in x]
    assert sorted(absent) == sorted(f"column '{c}' is absent from the synthetic corpus: not audited" for c in omitted)
    assert not {"note", "scan"} & set(omitted)
    assert "note" in audit["memorization"]["text"] and "scan" in audit["memorization"]["image"]
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert "privsynth gate" in result.stdout


def test_audit_with_examples_is_internal(cli, demo_dir: Path, fitted, tmp_path: Path) -> None:
    model, synthetic = fitted
    out = tmp_path / "audit"
    result = cli(
        "audit",
        "--model",
        model,
        "--corpus",
        demo_dir,
        "--synthetic",
        synthetic,
        "-o",
        out,
        "--include-examples",
        "--ocr",
        "off",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checks"]
    assert (out / "report.html").stat().st_mode & 0o777 == 0o600
    assert json.loads((out / "audit.json").read_text())["internal"] is True


def test_audit_usage_errors(cli, demo_dir: Path, fitted, tmp_path: Path) -> None:
    model, synthetic = fitted
    assert cli("audit", "--synthetic", synthetic, "-o", tmp_path / "a").exit_code == ExitCode.BAD_INPUT
    assert cli("audit", "--model", model, "--synthetic", synthetic, "-o", tmp_path / "a").exit_code == 2
    result = cli("audit", "--train", demo_dir, "--holdout", demo_dir, "--synthetic", synthetic, "-o", tmp_path / "a")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "overlaps the training data" in result.stderr
    assert not (tmp_path / "a" / "audit.json").exists()


def test_audit_engine_options_are_checked_before_any_work(cli, demo_dir: Path, fitted, tmp_path: Path) -> None:
    model, synthetic = fitted
    base = ("audit", "--model", model, "--corpus", demo_dir, "--synthetic", synthetic, "-o", tmp_path / "a")
    result = cli(*base, "--engine", "spark")
    assert result.exit_code == ExitCode.BAD_INPUT and "not one of: local, ray" in result.stderr
    result = cli(*base, "--workers", "2")
    assert result.exit_code == ExitCode.BAD_INPUT and "need --engine ray" in result.stderr
    assert not (tmp_path / "a" / "audit.json").exists()
