"""audit.json checks, report.html rendering, and the page in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
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
    # the figures people read (issue 20): per-column plots, association heatmaps, DCR/NNDR histograms, validity,
    # synthetic images per class and synthetic notes, all inline (no network)
    for marker in ('class="column-plot"', 'class="heatmap"', 'class="histogram"', 'class="validity"'):
        assert dom.stdout.count(marker) >= 1, marker
    assert dom.stdout.count('<img alt="synthetic scan') >= 2 and 'class="synthetic-text"' in dom.stdout
    assert "http://" not in dom.stdout.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from a network
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


LEDGER = {"epsilon": 8.0, "delta": 1e-5, "rng": "os-entropy", "unit_of_privacy": "record"}


def test_without_a_gate_decision_the_report_is_neutral_and_points_at_the_gate(audit_result) -> None:
    page = render_report(audit_result)
    assert 'class="verdict pending"' in page and "No release decision yet" in page
    assert "failed at the reference thresholds" not in page  # red 'failed' read as 'refused' (issue 20)
    assert "<h2>Privacy checks</h2>" in page and "<h2>Utility checks</h2>" in page


def test_the_report_shows_the_decision_and_thresholds_of_the_policy_actually_applied(audit_result) -> None:
    from privsynth.audit.checks import check_kind
    from privsynth.audit.report import check_rows
    from privsynth.gate import gate, load_policy

    for name in ("internal", "default", "public"):
        policy = load_policy(name)
        decision = gate(policy, audit_result, LEDGER).model_dump(mode="json")
        page = render_report(audit_result, decision)
        assert f"under policy <code>{policy.name}</code>" in page
        assert ("Release allowed" in page) == decision["passed"] and ("Release refused" in page) != decision["passed"]
        rows = {r["name"]: r for r in check_rows(audit_result, decision)}
        refusing = {f["check"] for f in decision["reasons"]} | {f["check"] for f in decision["warnings"]}
        for check, rule in policy.checks.items():
            assert rows[check]["threshold"] == rule.threshold  # the policy's, never the reference one
            assert rows[check]["severity"] == rule.severity.value
            assert rows[check]["kind"] == check_kind(check)
            if rows[check]["status"] == "fail":
                assert check in refusing  # a red row is a reason or a warning of this very decision
        for check, row in rows.items():
            if check not in policy.checks:
                assert row["status"] == "not in policy" and row["threshold"] is None


def test_no_placeholder_floors(audit_result) -> None:
    page = render_report(audit_result)
    section = page[page.index("<h2>Fidelity and utility</h2>") : page.index("<h2>Pre-flight</h2>")]
    fidelity = audit_result["fidelity"]
    assert fidelity.get("text") and fidelity.get("image")
    for name in fidelity["text"]:
        assert f"text {name}: length TVD" in section
    # SDMetrics' 1.0 and the text and image 0 'floors' were placeholders, not measurements
    assert "<td>1.0</td>" not in section and "<td>0</td>" not in section
    assert "not measured" in section


def test_figures_show_no_real_value_only_ranks_and_declared_categories(audit_result, splits) -> None:
    schema = splits.train.schema
    for figure in audit_result["figures"]["distributions"]:
        spec = schema.columns[figure["column"]]
        labels = set(figure["labels"])
        if spec.kind.value == "categorical":
            real = set(splits.train.records[figure["column"]].dropna().astype(str))
            assert labels & real <= set(spec.domain or ()), figure["column"]  # undeclared names never shown
        if spec.kind.value in ("numerical", "datetime"):
            assert all(label.startswith("quantile bin") or label == "missing" for label in labels)
    assert any(f["column"] == "insurance" for f in audit_result["figures"]["distributions"])  # an undeclared one


def test_the_report_shows_asked_against_achieved_for_controlled_variation(audit_result) -> None:
    from privsynth.variation import recount

    records = pd.DataFrame({"sex": ["F"] * 9 + ["M"] * 30})
    asked = {
        "rebalance": "sex",
        "shares": {"F": 0.25, "M": 0.75},
        "cells": [{"conditions": {"sex": "F"}, "asked": 10}, {"conditions": {"sex": "M"}, "asked": 30}],
    }
    counted = recount(records, asked)
    assert [(c["asked"], c["achieved"]) for c in counted["cells"]] == [(10, 9), (30, 30)]
    html = render_report({**audit_result, "variation": counted})
    assert "Controlled variation: asked vs achieved" in html and "<code>sex=F</code>" in html
    assert '<td class="status-fail">9</td>' in html  # a cell short of what was asked stands out
    assert "Controlled variation" not in render_report(audit_result)


def test_the_report_says_what_the_sampling_scrub_replaced_only_when_a_text_was_scrubbed(audit_result) -> None:
    from privsynth.audit.pii import scrubbed_at_sampling

    pii = audit_result["pii"]
    html = render_report({**audit_result, "pii": {**pii, "scrubbed": scrubbed_at_sampling({"note": 7}, 100)}})
    assert "Sampling scrub (text.scrub): 7 span(s) in &#39;note&#39;" in html or "7 span(s) in 'note'" in html
    # a sample drawn with the scrub off (or without text columns) records no column: no sentence about a scrub
    assert "Sampling scrub" not in render_report(
        {**audit_result, "pii": {**pii, "scrubbed": scrubbed_at_sampling({}, 100)}}
    )
    assert "Sampling scrub" not in render_report(audit_result)
