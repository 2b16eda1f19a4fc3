"""The corpus verbs through the real CLI entry function (and once through the installed console script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from privsynth.cli.output import ExitCode


def test_help_teaches_and_lists_exit_codes(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for text in ("demo-corpus", "validate", "init", "Exit codes", "docs/data-teams.md"):
        assert text in result.stdout


def test_version(cli) -> None:
    from privsynth import __version__

    result = cli("--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_python_m_runs_the_same_tool() -> None:
    from privsynth import __version__

    done = subprocess.run(
        [sys.executable, "-m", "privsynth", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout


def test_demo_then_validate(cli, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert cli("demo-corpus", out, "--n", "30", "--seed", "1").exit_code == 0
    result = cli("validate", out)
    assert result.exit_code == 0, result.output
    assert "Valid" in result.stdout and "30 records" in result.stdout
    as_json = cli("validate", out, "--json")
    payload = json.loads(as_json.stdout)
    assert payload["valid"] is True
    assert payload["summary"]["records"] == 30
    assert payload["summary"]["kinds"]["identifier"] == 7


def test_demo_refuses_to_overwrite(cli, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert cli("demo-corpus", out, "--n", "5").exit_code == 0
    result = cli("demo-corpus", out, "--n", "5")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--force" in result.stderr
    assert cli("demo-corpus", out, "--n", "6", "--force").exit_code == 0


def test_init_writes_a_schema_and_never_overwrites(cli, demo_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    assert cli("convert", demo_dir, folder, "--format", "jsonl").exit_code == 0
    (folder / "schema.yaml").unlink()
    result = cli("init", folder)
    assert result.exit_code == 0, result.output
    text = (folder / "schema.yaml").read_text()
    assert "Review every column" in text and "pii: ssn" in text
    # it teaches the codebook: what is undeclared, why it matters at small n, and the plan to check first
    assert "Declare from a public codebook" in result.stdout and "insurance (domain)" in result.stdout
    assert "--plan --people" in result.stdout
    again = cli("init", folder)
    assert again.exit_code == ExitCode.BAD_INPUT and "--force" in again.stderr
    assert cli("init", folder, "--force").exit_code == 0
    assert cli("validate", folder).exit_code == 0


def test_bad_corpus_exits_2_names_problem_and_hides_values(cli, demo_copy: Path, tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(demo_copy / "records.parquet")
    secret_name = frame.loc[3, "name"]
    frame.loc[3, "age"] = 400
    frame.loc[4, "scan"] = "../../etc/passwd"
    frame.to_parquet(demo_copy / "records.parquet")
    out = tmp_path / "converted"
    for args in (("validate", demo_copy), ("convert", demo_copy, out)):
        result = cli(*args)
        assert result.exit_code == ExitCode.BAD_INPUT
        assert "Traceback" not in result.output
        assert "column 'age'" in result.stderr and "'R000004'" in result.stderr
        assert "column 'scan'" in result.stderr and "leaves the corpus root" in result.stderr
        assert secret_name not in result.output and "400" not in result.output
    assert not out.exists()


def test_usage_errors_exit_2(cli, tmp_path: Path) -> None:
    assert cli("validate").exit_code == ExitCode.BAD_INPUT
    assert cli("no-such-verb").exit_code == ExitCode.BAD_INPUT
    assert cli("demo-corpus", tmp_path / "x", "--n", "0").exit_code == ExitCode.BAD_INPUT
    assert cli("validate", tmp_path / "missing").exit_code == ExitCode.BAD_INPUT
    assert cli("-v", "-q", "validate", tmp_path).exit_code == ExitCode.BAD_INPUT


def test_internal_errors_exit_1_without_leaking(cli, demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import privsynth.cli.corpus_cmds as cmds

    def boom(_: object) -> None:
        raise RuntimeError("secret value 123-45-6789")

    monkeypatch.setattr(cmds, "validate_streaming", boom)
    result = cli("validate", demo_dir)
    assert result.exit_code == ExitCode.INTERNAL
    assert "--verbose" in result.stderr
    assert "123-45-6789" not in result.output


def test_console_script_entry_point(demo_dir: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("privsynth")
    if not exe.exists():
        pytest.skip("console script not installed (run through make test)")
    ok = subprocess.run([exe, "validate", demo_dir], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "broken"
    shutil.copytree(demo_dir, broken)
    (broken / "records.parquet").write_bytes(b"")
    bad = subprocess.run([exe, "validate", broken], capture_output=True, text=True, check=False)
    assert bad.returncode == ExitCode.BAD_INPUT
    assert "empty" in bad.stderr and "Traceback" not in bad.stderr


def test_no_help_text_loses_words_to_rich_markup() -> None:
    # The help is rendered as rich markup: an unescaped "[ray]" in "pip install 'privsynth[ray]'" is read as a
    # style tag and vanishes from --help. Every help text must render to what it says, less its deliberate style
    # tags ([bold]...[/bold]); a literal bracket is written \[.
    import re
    from typing import Any

    import typer
    from rich.text import Text

    from privsynth.cli.app import app

    def texts(command: Any, path: str) -> list[tuple[str, str]]:  # typer's own click: no isinstance on click's
        found = [(path, command.help or "")]
        found += [(f"{path} {p.name}", getattr(p, "help", None) or "") for p in command.params]
        for name, sub in getattr(command, "commands", {}).items():
            found += texts(sub, f"{path} {name}")
        return found

    checked = texts(typer.main.get_command(app), "privsynth")
    assert len(checked) > 50  # every command and option, not the top level alone
    lost = [
        (where, text)
        for where, text in checked
        if Text.from_markup(text).plain != re.sub(r"\[/?(bold|dim|italic)\]", "", text).replace("\\[", "[")
    ]
    assert not lost, lost
