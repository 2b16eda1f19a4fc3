"""audit.json checks, report.html rendering, and the page in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from privsynth.audit.checks import CHECKS, evaluate_checks
from privsynth.audit.report import render_report, write_report
from privsynth.audit.run import run_audit, write_audit


@pytest.fixture(scope="module")
def audit_result(splits) -> dict:
    from privsynth.audit.run import AuditConfig, Collaborators

    from .conftest import HashingTextEmbedder

    config = AuditConfig(bootstrap=50, ocr="off")
    return run_audit(
        splits.train,
        splits.holdout,
        splits.oracle,
        config=config,
        collaborators=Collaborators(text=HashingTextEmbedder()),
    )


def test_every_check_has_a_value_or_is_not_applicable(audit_result) -> None:
    checks = {c["name"]: c for c in audit_result["checks"]}
    assert set(checks) == {c.name for c in CHECKS}
    for name in (
        "dcr_share_high",
        "identical_excess",
        "pii_replay",
        "mia_auc",
        "tvd2_over_floor",
        "tstr_ratio",
        "cross_modal_ratio",
        "verbatim_excess",
    ):
        assert checks[name]["value"] is not None, name
    assert checks["empirical_epsilon_excess"]["status"] == "n/a"  # no canaries


def test_policy_thresholds_change_the_status(audit_result) -> None:
    strict = evaluate_checks(audit_result, {"mia_auc": 0.0})
    assert next(c for c in strict if c["name"] == "mia_auc")["status"] == "fail"


def test_audit_json_and_report_hold_no_record_values(audit_result, splits, tmp_path: Path) -> None:
    write_audit(audit_result, tmp_path)
    report = write_report(audit_result, tmp_path)
    text = (tmp_path / "audit.json").read_text() + report.read_text()
    for column in ("name", "ssn", "email", "mrn", "note"):
        for value in splits.train.records[column].astype(str).head(50):
            assert value not in text, column
    assert 'class="internal"' not in report.read_text()


def test_examples_mark_the_report_internal(audit_result, tmp_path: Path) -> None:
    internal = dict(audit_result) | {
        "internal": True,
        "examples": [{"check": "replay", "column": "note", "kind": "person", "text": "Ann Lee"}],
    }
    write_audit(internal, tmp_path)
    page = write_report(internal, tmp_path)
    assert 'class="internal"' in page.read_text() and "Ann Lee" in page.read_text()
    assert page.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "audit.json").stat().st_mode & 0o777 == 0o600


def test_report_renders_in_headless_chromium(audit_result, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (make test installs Debian's chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_report(audit_result), encoding="utf-8")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    assert "privsynth audit report" in dom.stdout
    assert "Membership inference" in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=False,
    )
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert int(pixels.max()) - int(pixels.min()) > 100  # not a blank page
    assert len(np.unique(pixels)) > 10
