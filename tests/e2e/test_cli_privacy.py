"""privsynth profile and privsynth ledger through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privsynth.cli.output import ExitCode


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.sqlite")


def test_profile_writes_dp_profile_and_records_the_spend(cli, demo_dir: Path, tmp_path: Path, store: str) -> None:
    out = tmp_path / "profile.json"
    result = cli("profile", demo_dir, "-e", "1.5", "-o", out, "--ledger-store", store, "--source", "demo")
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["internal"] is False
    assert 0.97 * 1.5 <= payload["ledger"]["epsilon"] <= 1.5
    shown = cli("ledger", "show", "--json", "--ledger-store", store)
    data = json.loads(shown.stdout)
    assert data["sources"][0]["source"] == "demo"
    assert data["sources"][0]["epsilon"] == pytest.approx(payload["ledger"]["epsilon"])
    assert [s["stage"] for s in data["spends"]] == ["profile", "profile"]  # the DP count, then the histograms
    human = cli("ledger", "show", "--ledger-store", store)
    assert human.exit_code == 0 and "demo" in human.stdout


def test_cap_refuses_before_anything_is_written(cli, demo_dir: Path, tmp_path: Path, store: str) -> None:
    assert cli("ledger", "cap", "--max-epsilon", "1.0", "--ledger-store", store).exit_code == 0
    assert cli("profile", demo_dir, "-e", "0.8", "-o", tmp_path / "a.json", "--ledger-store", store).exit_code == 0
    refused = cli("profile", demo_dir, "-e", "0.8", "-o", tmp_path / "b.json", "--ledger-store", store)
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert "past the cap" in refused.stderr
    assert not (tmp_path / "b.json").exists()


def test_internal_profile_is_owner_only_and_spends_nothing(cli, demo_dir: Path, tmp_path: Path, store: str) -> None:
    out = tmp_path / "internal.json"
    result = cli("profile", demo_dir, "--internal", "-o", out, "--ledger-store", store)
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert "INTERNAL" in result.stderr
    assert json.loads(out.read_text())["internal"] is True
    assert "No spends" in cli("ledger", "show", "--ledger-store", store).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--delta", "0.5"), "1/n"),
        ((), "--epsilon"),
        (("-e", "1", "--accountant", "zcdp"), "--accountant"),
        (("-e", "1", "--internal"), "drop --epsilon"),
    ],
)
def test_bad_privacy_options_exit_2(
    cli, demo_dir: Path, tmp_path: Path, store: str, args: tuple[str, ...], message: str
) -> None:
    extra = () if "-e" in args or "--internal" in args else ("-e", "1") if args else ()
    result = cli("profile", demo_dir, "-o", tmp_path / "p.json", "--ledger-store", store, *extra, *args)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert message in result.stderr
    assert not (tmp_path / "p.json").exists()
