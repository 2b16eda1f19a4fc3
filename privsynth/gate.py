"""The release gate: a pure function of a policy, an audit result and a ledger.

Policies live in ``audits/*.yaml`` and belong to privacy officers. Each names a release class, limits on the
ledger (epsilon, delta) and thresholds per audit check, hard (refuses the release) or soft (warns). The gate does
no I/O: it reads values, compares, and returns a :class:`GateDecision` with every reason.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from privsynth.audit.checks import BY_NAME, passes
from privsynth.privacy.randomness import RngMode
from privsynth.release.disclosure import PUBLISHED_DECIMALS
from privsynth.settings import load_settings

#: Checks that changed meaning, so old policies cannot silently keep an old threshold on a new number.
RENAMED_CHECKS = {"dcr_share_low": "dcr_share_high"}
RENAMED_WHY = {
    "dcr_share_low": "the gate now reads the UPPER end of the DCR share's 95 % interval (a small, noisy audit must "
    "not pass by its own noise); set a threshold such as 0.60 for it (honest releases audited on 1,000 holdout "
    "records reach about 0.58)"
}


class Severity(StrEnum):
    """What a failed check does."""

    HARD = "hard"  # refuses the release
    SOFT = "soft"  # warns


class ReleaseClass(StrEnum):
    """Who may receive the release."""

    INTERNAL = "internal"
    CONTROLLED = "controlled"
    PUBLIC = "public"


class CheckRule(BaseModel):
    """A policy's threshold for one audit check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float
    severity: Severity = Severity.HARD
    required: bool = Field(default=False, description="Refuse when the audit has no value for this check.")


class Policy(BaseModel):
    """A release policy (one YAML file in ``audits/``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int = 1
    description: str = ""
    release_class: ReleaseClass
    max_epsilon: float | None = Field(default=None, ge=0, description="Largest claimed epsilon allowed.")
    max_delta: float | None = Field(default=None, gt=0, lt=1)
    require_dp: bool = Field(default=True, description="Refuse outputs without a privsynth ledger.")
    allow_internal_audit: bool = Field(default=False, description="Accept an audit holding real examples.")
    allow_reproducible_noise: bool = Field(
        default=False,
        description="Accept a ledger whose noise was not drawn from fresh OS entropy (test mode, or an older "
        "privsynth that seeded its noise). Such noise can be replayed: the DP guarantee does not hold.",
    )
    publish_audit_statistics: bool = Field(
        default=True,
        description="Put audit statistics computed on real records (outside the DP guarantee) in the release: "
        "audit-summary.json and the values of the datasheet's check table. False keeps only pass/fail.",
    )
    checks: dict[str, CheckRule]

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, value: dict[str, CheckRule]) -> dict[str, CheckRule]:
        for old, new in RENAMED_CHECKS.items():
            if old in value:
                raise ValueError(f"check '{old}' was replaced by '{new}': {RENAMED_WHY[old]}")
        unknown = sorted(set(value) - set(BY_NAME))
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(sorted(BY_NAME))}")
        return value


class Finding(BaseModel):
    """One gate finding, with the numbers behind it."""

    model_config = ConfigDict(frozen=True)

    check: str
    severity: Severity
    message: str
    value: float | None = None
    threshold: float | None = None


class GateDecision(BaseModel):
    """Pass or refuse, with every reason (hard) and warning (soft)."""

    model_config = ConfigDict(frozen=True)

    policy: str
    policy_version: int
    release_class: ReleaseClass
    passed: bool
    reasons: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    evaluated: tuple[Finding, ...]


def _shown(value: float, threshold: float) -> str:
    """A check's value as a message shows it: rounded as a release rounds it, the threshold's side kept.

    An exact fraction of real records names its denominator; rounding may land on the threshold, so the side shows.

    >>> _shown(1 / 522, 0.005), _shown(0.0052, 0.005), _shown(0.0048, 0.005)
    ('0.002', '0.005 (just above)', '0.005 (just below)')
    """
    text = f"{value:.{PUBLISHED_DECIMALS}f}"
    if text == f"{threshold:.{PUBLISHED_DECIMALS}f}" and value != threshold:
        text += " (just above)" if value > threshold else " (just below)"
    return text


def resolve_policy(value: str | Path) -> Path:
    """A policy file from a path, or a built-in policy's name (``default``, ``public``, ``internal``).

    An existing path wins; a built-in name, or a missing ``audits/NAME.yaml`` (the repository's layout, used
    outside the repository), gives the policy shipped in the package.
    """
    from privsynth.errors import ConfigError
    from privsynth.resources import BUILTIN_POLICIES, builtin_policy

    path = Path(value)
    if path.exists():
        return path
    stem = path.stem if path.suffix in (".yaml", ".yml") and path.parent.name in ("audits", "") else str(value)
    if stem in BUILTIN_POLICIES and (str(value) == stem or path.parent.name == "audits"):
        if str(value) != stem:
            logging.getLogger(__name__).info("%s not found here: using the built-in policy '%s'", value, stem)
        return builtin_policy(stem)
    raise ConfigError(
        f"policy {value} not found: give a policy file, or a built-in policy ({', '.join(BUILTIN_POLICIES)}; "
        "'privsynth policies list' shows them)"
    )


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file (or a built-in policy by name); errors name the entries to fix."""
    return load_settings(Policy, resolve_policy(path), what="the release policy")


def gate(policy: Policy, audit: dict[str, Any], ledger: dict[str, Any] | None) -> GateDecision:
    """Decide a release. Pure: no I/O, same inputs give the same decision."""
    reasons: list[Finding] = []
    warnings: list[Finding] = []
    evaluated: list[Finding] = []
    if ledger is None:
        if policy.require_dp:
            reasons.append(
                Finding(
                    check="ledger",
                    severity=Severity.HARD,
                    message="no privacy ledger: this policy releases DP outputs only",
                )
            )
    else:
        epsilon, delta = float(ledger.get("epsilon", float("inf"))), float(ledger.get("delta", 1.0))
        if policy.max_epsilon is not None and epsilon > policy.max_epsilon * (1 + 1e-9):
            reasons.append(
                Finding(
                    check="max_epsilon",
                    severity=Severity.HARD,
                    value=epsilon,
                    threshold=policy.max_epsilon,
                    message=f"epsilon {epsilon:.4g} is above the policy's {policy.max_epsilon:g}",
                )
            )
        if policy.max_delta is not None and delta > policy.max_delta * (1 + 1e-9):
            reasons.append(
                Finding(
                    check="max_delta",
                    severity=Severity.HARD,
                    value=delta,
                    threshold=policy.max_delta,
                    message=f"delta {delta:.3g} is above the policy's {policy.max_delta:.3g}",
                )
            )
        rng = ledger.get("rng", "seeded" if ledger.get("version") == 1 else "unknown")
        if rng != RngMode.OS_ENTROPY.value and not policy.allow_reproducible_noise:
            reasons.append(
                Finding(
                    check="rng",
                    severity=Severity.HARD,
                    message=f"the ledger's noise is '{rng}', not fresh OS entropy: it can be replayed, so the DP "
                    "guarantee does not hold (refit without PRIVSYNTH_UNSAFE_REPRODUCIBLE_NOISE)",
                )
            )
        if not ledger.get("unit_of_privacy"):
            reasons.append(
                Finding(
                    check="unit_of_privacy",
                    severity=Severity.HARD,
                    message="the ledger does not state its unit of privacy",
                )
            )
    if audit.get("internal") and not policy.allow_internal_audit:
        reasons.append(
            Finding(
                check="audit",
                severity=Severity.HARD,
                message="the audit holds real examples (INTERNAL); re-run it without --include-examples for a release",
            )
        )
    for name, rule in policy.checks.items():
        value = BY_NAME[name].extract(audit)  # None when the audit has no value for it
        target = reasons if rule.severity is Severity.HARD else warnings
        if value is None:
            finding = Finding(
                check=name,
                severity=rule.severity,
                threshold=rule.threshold,
                message=f"{name}: the audit has no value for this check",
            )
            evaluated.append(finding)
            if rule.required:
                target.append(finding)
            continue
        direction = BY_NAME[name].direction
        ok = passes(value, direction, rule.threshold)
        word = "at most" if direction.value == "max" else "at least"
        finding = Finding(
            check=name,
            severity=rule.severity,
            value=value,
            threshold=rule.threshold,
            message=f"{name} = {_shown(value, rule.threshold)}, policy requires {word} {rule.threshold:g}",
        )
        evaluated.append(finding)
        if not ok:
            target.append(finding)
    return GateDecision(
        policy=policy.name,
        policy_version=policy.version,
        release_class=policy.release_class,
        passed=not reasons,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        evaluated=tuple(evaluated),
    )
