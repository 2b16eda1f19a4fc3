"""Issue 17: every bad input is a clear exit 2 before any budget is spent; a changed model folder is exit 4."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from privsynth.cli.output import ExitCode
from privsynth.privacy.store import LedgerStore

SMALL = Path(__file__).resolve().parents[2] / "configs" / "small.yaml"


@pytest.fixture(scope="module")
def model(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from privsynth.cli import main

    folder = tmp_path_factory.mktemp("fitted")
    store = folder / "l.sqlite"
    assert (
        main(
            [
                "fit",
                str(demo_dir),
                "-e",
                "8",
                "-o",
                str(folder / "model"),
                "-c",
                str(SMALL),
                "--ledger-store",
                str(store),
            ]
        )
        == 0
    )
    return folder / "model"


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    path.write_bytes(bytes(data))


def _weights(folder: Path) -> Path:
    return folder / "tabular" / "tabular.safetensors"


TAMPERING: dict[str, Callable[[Path], None]] = {
    "a flipped bit in the weights": lambda m: _corrupt(_weights(m)),
    "missing weights": lambda m: _weights(m).unlink(),
    "truncated weights": lambda m: _weights(m).write_bytes(_weights(m).read_bytes()[:100]),
    "a tampered safetensors header": lambda m: _weights(m).write_bytes(b"\xff" * 8 + _weights(m).read_bytes()[8:]),
    "garbage model.json": lambda m: (m / "model.json").write_text("garbage"),
    "missing ledger.json": lambda m: (m / "ledger.json").unlink(),
    "a link to another folder": lambda m: (m / "images").symlink_to(m.parent),
    "an extra folder": lambda m: (m / "extra").mkdir(),
    "a missing manifest": lambda m: (m / "manifest.json").unlink(),
    "a changed holdout split": lambda m: (m / "internal" / "split.json").write_text('{"train": [], "holdout": []}'),
}


@pytest.mark.parametrize("change", sorted(TAMPERING))
def test_a_changed_model_folder_is_refused_with_exit_4(cli, model: Path, tmp_path: Path, change: str) -> None:
    # Before: a bit flip in the weights was accepted silently; missing, truncated or header-tampered weights,
    # garbage model.json and a missing ledger.json ended in "Internal error" (exit 1).
    copy = tmp_path / "model"
    shutil.copytree(model, copy, symlinks=True)
    TAMPERING[change](copy)
    result = cli("sample", copy, "--n", "5", "-o", tmp_path / "s")
    assert result.exit_code == ExitCode.INTEGRITY, (change, result.output)
    assert "manifest" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_nan_weights_are_refused_even_with_a_matching_manifest(cli, model: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from privsynth.data.integrity import write_folder_manifest

    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    tensors = load_file(str(_weights(copy)))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(_weights(copy)))
    write_folder_manifest(copy, "manifest.json", skip_folders={"internal"})  # as a fit that diverged would write
    result = cli("sample", copy, "--n", "5", "-o", tmp_path / "s")
    assert result.exit_code == ExitCode.INTEGRITY and "NaN" in result.stderr, result.output


def test_a_folder_that_is_not_a_model_is_exit_2(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "absent"):
        result = cli("sample", folder, "--n", "5", "-o", tmp_path / "s")
        assert result.exit_code == ExitCode.BAD_INPUT and "not a privsynth model folder" in result.stderr


def _non_utf8(tmp: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_bytes(b"holdout_fraction: 0.2\n# \xff\xfe\n")
    return path


BAD_FITS: dict[str, Callable[[Path], list[str]]] = {
    # before: each of these spent the whole epsilon (or part of it) and exited 1
    "--out under /proc": lambda t: ["-o", "/proc/privsynth-test/model"],
    "--out under a file": lambda t: ["-o", str(t / "file" / "model")],
    "an epsilon too small to calibrate": lambda t: ["-e", "1e-9"],
    "a delta above 1": lambda t: ["--delta", "2"],
    "a bogus ledger store URL": lambda t: ["--ledger-store", "bogus://x"],
    "a folder as ledger store": lambda t: ["--ledger-store", str(t)],
    "a non-UTF-8 config": lambda t: ["-c", str(_non_utf8(t))],
}


@pytest.mark.parametrize("case", sorted(BAD_FITS))
def test_a_bad_fit_input_exits_2_before_any_spend(cli, demo_dir: Path, tmp_path: Path, case: str) -> None:
    if case == "--out under /proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    (tmp_path / "file").write_text("x")
    store = tmp_path / "store" / "l.sqlite"
    args = ["-e", "2", "-o", str(tmp_path / "model"), "-c", str(SMALL), "--ledger-store", str(store)]
    args += BAD_FITS[case](tmp_path)  # later options win
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("fit", demo_dir, *args)
    assert result.exit_code == ExitCode.BAD_INPUT, (case, result.output)
    assert "Traceback" not in result.output and "Internal error" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "store") == [n for n in before if n != "store"]
    if store.exists():
        assert LedgerStore(store).rows() == []  # nothing spent


def test_policy_and_release_information_that_are_not_utf8_exit_2(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: x\n# \xff\xfe\n")
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "audit.json").write_text(json.dumps({"checks": {}}))
    result = cli("gate", audit, "--policy", bad)
    assert result.exit_code == ExitCode.BAD_INPUT and "UTF-8" in result.stderr, result.output


def test_where_values_outside_the_columns_range_exit_2(cli, model: Path, tmp_path: Path) -> None:
    # Before: --where age=200 (declared bounds [18, 95]) produced age 200, which 'privsynth validate' then refused.
    for where, fragment in [
        ("age=200", "outside the column's range [18, 95]"),
        ("visit_date=1900-01-01", "outside the column's range"),
        ("age=", "never missing"),
        ("sex>=F", "numerical and date columns only"),
        ("age>=abc", "expected a number"),
    ]:
        result = cli("sample", model, "--n", "5", "-o", tmp_path / "s", "--where", where)
        assert result.exit_code == ExitCode.BAD_INPUT and fragment in result.stderr, (where, result.output)
        assert not (tmp_path / "s").exists()


def test_range_conditions_hold_and_the_output_validates(cli, model: Path, tmp_path: Path) -> None:
    import pandas as pd

    assert cli("sample", model, "--n", "200", "-o", tmp_path / "free", "--seed", "3").exit_code == 0
    ages = pd.read_parquet(tmp_path / "free" / "records.parquet")["age"].dropna()
    low, high = int(ages.quantile(0.3)), int(ages.quantile(0.9))
    args = ["--n", "60", "--seed", "3", "-w", f"age>={low}", "-w", f"age<{high + 1}", "-w", "sex=F"]
    for name in ("a", "b"):
        result = cli("sample", model, "-o", tmp_path / name, *args)
        assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "a" / "records.parquet")
    assert len(frame) == 60 and frame["age"].between(low, high).all() and (frame["sex"] == "F").all()
    pd.testing.assert_frame_equal(frame, pd.read_parquet(tmp_path / "b" / "records.parquet"))  # same seed
    assert cli("validate", tmp_path / "a").exit_code == 0
    provenance = json.loads((tmp_path / "a" / "synthetic.json").read_text())
    assert provenance["conditions"]["age"] == f"age>={low} and age<{high + 1}"


def test_the_fit_summary_names_degraded_columns_from_the_dp_profile(model: Path) -> None:
    from privsynth.profile.findings import degraded_columns
    from privsynth.synthesizer import Synthesizer

    synth = Synthesizer.load(model)
    columns = dict(synth.profile_.columns)
    columns["insurance"] = columns["insurance"].model_copy(update={"categories": (), "counts": ()})
    columns["wbc"] = columns["wbc"].model_copy(update={"bounds": (1e-3, 1e11)})
    profile = synth.profile_.model_copy(update={"columns": columns})
    found = {f.column: str(f) for f in degraded_columns(profile, synth.schema_)}
    assert "declare its domain" in found["insurance"] and "declare bounds" in found["wbc"]
    assert "sex" not in found  # declared domains are exact


def test_warnings_are_held_back_for_the_summary() -> None:
    import logging

    from privsynth.cli.output import collected_warnings, setup_logging

    setup_logging(verbose=False, quiet=False)
    with collected_warnings() as held:
        logging.getLogger("privsynth.profile").warning("column '%s': noisy", "bmi")
        logging.getLogger("privsynth.profile").warning("column '%s': noisy", "bmi")
    assert held == ["column 'bmi': noisy"]
