"""The gate is pure: tables of (policy, audit, ledger) cases and the decision each must give."""

from __future__ import annotations

from pathlib import Path

import pytest

from privsynth.errors import ConfigError
from privsynth.gate import CheckRule, Policy, ReleaseClass, Severity, gate, load_policy

LEDGER = {"version": 2, "epsilon": 4.0, "delta": 1e-5, "unit_of_privacy": "record", "rng": "os-entropy"}


def audit(**values: float | None) -> dict:
    """A minimal audit whose checks yield the given values."""
    memo = {
        "tabular": {
            "dcr_share": 0.5,
            "dcr_low": 0.49,
            "dcr_high": values.get("dcr_high", 0.51),
            "identical_excess": values.get("identical_excess", 0.0),
            "near_copy_excess": 0.0,
        }
    }
    result: dict = {"memorization": memo, "claimed": {"epsilon": 4.0}}
    if "mia_auc" in values:
        result["attacks"] = {"membership_inference": {"auc": values["mia_auc"], "tpr_at_1pct": 0.01}}
    if "replay" in values:
        result["pii"] = {"replay_unexplained": values["replay"], "unexplained": 0, "scanned_cells": 10}
    return result


def policy(**checks: CheckRule) -> Policy:
    return Policy(name="t", release_class=ReleaseClass.CONTROLLED, max_epsilon=5, max_delta=1e-5, checks=checks)


HARD = CheckRule(threshold=0.005, severity=Severity.HARD)


@pytest.mark.parametrize(
    ("rules", "result", "ledger", "passed", "reason"),
    [
        ({"identical_excess": HARD}, audit(), LEDGER, True, None),
        ({"identical_excess": HARD}, audit(identical_excess=0.02), LEDGER, False, "identical_excess"),
        (
            {"identical_excess": CheckRule(threshold=0.005, severity=Severity.SOFT)},
            audit(identical_excess=0.02),
            LEDGER,
            True,
            None,
        ),
        ({"mia_auc": CheckRule(threshold=0.55)}, audit(mia_auc=0.6), LEDGER, False, "mia_auc"),
        ({"mia_auc": CheckRule(threshold=0.55)}, audit(), LEDGER, True, None),  # n/a, not required
        ({"mia_auc": CheckRule(threshold=0.55, required=True)}, audit(), LEDGER, False, "mia_auc"),
        ({"pii_replay": CheckRule(threshold=0)}, audit(replay=1), LEDGER, False, "pii_replay"),
        ({"pii_replay": CheckRule(threshold=0)}, audit(replay=0), LEDGER, True, None),
        ({}, audit(), {**LEDGER, "epsilon": 8.0}, False, "max_epsilon"),
        ({}, audit(), {**LEDGER, "delta": 1e-3}, False, "max_delta"),
        ({}, audit(), None, False, "ledger"),
        ({}, audit(), {**LEDGER, "unit_of_privacy": ""}, False, "unit_of_privacy"),
        ({}, audit() | {"internal": True}, LEDGER, False, "audit"),
        ({"tstr_ratio": CheckRule(threshold=0.8, severity=Severity.SOFT)}, audit(), LEDGER, True, None),
        # the upper end of the DCR interval decides: a noisy audit whose interval reaches past the limit fails
        ({"dcr_share_high": CheckRule(threshold=0.55)}, audit(dcr_high=0.54), LEDGER, True, None),
        ({"dcr_share_high": CheckRule(threshold=0.55)}, audit(dcr_high=0.58), LEDGER, False, "dcr_share_high"),
        # noise that can be replayed gives no guarantee: refused unless a (test) policy says otherwise
        ({}, audit(), {**LEDGER, "rng": "unsafe-reproducible"}, False, "rng"),
        ({}, audit(), {**LEDGER, "rng": "seeded"}, False, "rng"),
        ({}, audit(), {k: v for k, v in LEDGER.items() if k != "rng"} | {"version": 1}, False, "rng"),
    ],
)
def test_gate_table(rules, result, ledger, passed, reason) -> None:
    decision = gate(policy(**rules), result, ledger)
    assert decision.passed is passed
    if reason is not None:
        assert reason in [r.check for r in decision.reasons]
    assert gate(policy(**rules), result, ledger) == decision  # pure: same inputs, same decision


def test_soft_failures_are_warnings() -> None:
    soft = {"identical_excess": CheckRule(threshold=0.005, severity=Severity.SOFT)}
    decision = gate(policy(**soft), audit(identical_excess=0.02), LEDGER)
    assert decision.passed and [w.check for w in decision.warnings] == ["identical_excess"]


@pytest.mark.parametrize("name", ["default", "public", "internal"])
def test_shipped_policies_are_valid(name: str) -> None:
    rules = load_policy(Path(__file__).resolve().parents[2] / "audits" / f"{name}.yaml")
    assert rules.name == name and rules.checks


def test_unknown_checks_and_bad_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: x\nrelease_class: public\nchecks: {nonsense: {threshold: 1}}\n")
    with pytest.raises(ConfigError, match="unknown check"):
        load_policy(bad)
    bad.write_text("name: x\nrelease_class: everyone\nchecks: {}\n")
    with pytest.raises(ConfigError, match="release_class"):
        load_policy(bad)


@pytest.mark.parametrize("name", ["default", "public"])
def test_shipped_release_policies_refuse_reproducible_noise(name: str) -> None:
    rules = load_policy(Path(__file__).resolve().parents[2] / "audits" / f"{name}.yaml")
    assert not rules.allow_reproducible_noise
    decision = gate(rules, audit(), {**LEDGER, "rng": "unsafe-reproducible"})
    assert "rng" in [r.check for r in decision.reasons]
    allowed = rules.model_copy(update={"allow_reproducible_noise": True})
    assert "rng" not in [r.check for r in gate(allowed, audit(), {**LEDGER, "rng": "unsafe-reproducible"}).reasons]


def test_the_public_policy_keeps_audit_numbers_out_of_the_release() -> None:
    root = Path(__file__).resolve().parents[2] / "audits"
    assert load_policy(root / "public.yaml").publish_audit_statistics is False
    assert load_policy(root / "default.yaml").publish_audit_statistics is True


def test_a_policy_with_the_old_dcr_check_is_told_what_replaced_it(tmp_path: Path) -> None:
    old = tmp_path / "p.yaml"
    old.write_text("name: x\nrelease_class: public\nchecks: {dcr_share_low: {threshold: 0.52}}\n")
    with pytest.raises(ConfigError, match="replaced by 'dcr_share_high'"):
        load_policy(old)
