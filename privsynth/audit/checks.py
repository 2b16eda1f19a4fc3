"""Named checks over ``audit.json``: one definition of every number a policy can put a threshold on.

Each check extracts one value from an audit result (the worst case over columns and feature spaces) and
compares it with a threshold. The audit report shows them against reference thresholds (those of
``audits/default.yaml``); the release gate applies the privacy officer's own policy to the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    """Whether a value must stay below (``max``) or above (``min``) its threshold."""

    MAX = "max"
    MIN = "min"


@dataclass(frozen=True)
class Check:
    """A named value of an audit and the direction it must respect."""

    name: str
    category: str
    direction: Direction
    default: float
    description: str
    extract: Callable[[dict[str, Any]], float | None]


def _spaces(result: dict[str, Any]) -> Iterable[dict[str, Any]]:
    memo = result.get("memorization", {})
    if "tabular" in memo:
        yield memo["tabular"]
    if "record" in memo:
        yield memo["record"]
    for entry in memo.get("text", {}).values():
        yield entry["embedding"]
    for per in memo.get("image", {}).values():
        yield from per.values()


def _worst(values: Iterable[float | None], direction: Direction) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if direction is Direction.MAX else min(present)


def _get(result: dict[str, Any], *path: str) -> Any:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


CHECKS: tuple[Check, ...] = (
    Check(
        "dcr_share_high",
        "memorization",
        Direction.MAX,
        0.6,
        "Upper end of the 95 % CI of the largest DCR share over feature spaces (0.5: synthetic rows no closer "
        "to training than to unseen rows). The upper end puts the burden of proof on the release: an audit too "
        "small to show the share is low fails, it does not pass by its own noise",
        lambda r: _worst((s["dcr_high"] for s in _spaces(r)), Direction.MAX),
    ),
    Check(
        "identical_excess",
        "memorization",
        Direction.MAX,
        0.005,
        "Synthetic rows identical to a training row, beyond the rate of identity with unseen rows",
        lambda r: _worst((s["identical_excess"] for s in _spaces(r)), Direction.MAX),
    ),
    Check(
        "near_copy_excess",
        "memorization",
        Direction.MAX,
        0.005,
        "Near-copies of training rows (closer than 99.9 % of unseen rows are), beyond the unseen-row rate",
        lambda r: _worst((s["near_copy_excess"] for s in _spaces(r)), Direction.MAX),
    ),
    Check(
        "verbatim_excess",
        "memorization",
        Direction.MAX,
        0.005,
        "Synthetic texts copying a span from one training text (longest match far above unseen texts'), "
        "beyond the rate of real unseen texts",
        lambda r: (
            _worst((e["verbatim"]["excess"] for e in _get(r, "memorization", "text").values()), Direction.MAX)
            if _get(r, "memorization", "text")
            else None
        ),
    ),
    Check(
        "pii_replay",
        "pii",
        Direction.MAX,
        0.0,
        "Real identifier values found verbatim in the synthetic output and not explained by surrogates",
        lambda r: _get(r, "pii", "replay_unexplained"),
    ),
    Check(
        "pii_unexplained_rate",
        "pii",
        Direction.MAX,
        0.01,
        "Detected PII spans per scanned cell that no surrogate or synthetic field explains",
        lambda r: (r["pii"]["unexplained"] / max(r["pii"]["scanned_cells"], 1)) if "pii" in r else None,
    ),
    Check(
        "pii_scrubbed_rate",
        "pii",
        Direction.MAX,
        0.05,
        "Identifier-like spans per synthetic record that a text model wrote outside its placeholders and sampling "
        "replaced by the record's registered fakes (text.scrub; largest over text columns): the PII scan reads "
        "texts after this scrub",
        lambda r: _get(r, "pii", "scrubbed", "rate"),
    ),
    Check(
        "mia_auc",
        "attacks",
        Direction.MAX,
        0.55,
        "Distance-based membership inference AUC (0.5: no better than chance)",
        lambda r: _get(r, "attacks", "membership_inference", "auc"),
    ),
    Check(
        "mia_tpr_at_1pct_fpr",
        "attacks",
        Direction.MAX,
        0.03,
        "Membership inference true-positive rate at 1 % false-positive rate",
        lambda r: _get(r, "attacks", "membership_inference", "tpr_at_1pct"),
    ),
    Check(
        "singling_out_risk",
        "attacks",
        Direction.MAX,
        0.1,
        "Singling-out risk (attack on training records vs the same attack on unseen records)",
        lambda r: _get(r, "attacks", "singling_out", "risk"),
    ),
    Check(
        "linkability_risk",
        "attacks",
        Direction.MAX,
        0.1,
        "Linkability risk",
        lambda r: _get(r, "attacks", "linkability", "risk"),
    ),
    Check(
        "attribute_inference_risk",
        "attacks",
        Direction.MAX,
        0.1,
        "Largest attribute-inference risk over categorical columns",
        lambda r: _worst(
            (v["risk"] for v in (_get(r, "attacks", "attribute_inference") or {}).values()), Direction.MAX
        ),
    ),
    Check(
        "empirical_epsilon_excess",
        "attacks",
        Direction.MAX,
        0.0,
        "Canary audit's empirical epsilon lower bound (at the stage's delta) minus the epsilon of the stage the "
        "canaries were trained under (above 0 means a bug)",
        lambda r: (
            _get(r, "attacks", "one_run", "epsilon_lower_bound") - _get(r, "attacks", "one_run", "claimed_epsilon")
            if _get(r, "attacks", "one_run", "claimed_epsilon") is not None
            else None
        ),
    ),
    Check(
        "tvd2_over_floor",
        "fidelity",
        Direction.MAX,
        6.0,
        "Mean 2-way marginal TVD of synthetic vs train, as a multiple of the holdout's (sampling noise floor)",
        lambda r: (
            (_get(r, "fidelity", "tvd", "2", "synthetic") / max(_get(r, "fidelity", "tvd", "2", "holdout_floor"), 1e-9))
            if _get(r, "fidelity", "tvd", "2", "synthetic") is not None
            else None
        ),
    ),
    Check(
        "tstr_ratio",
        "fidelity",
        Direction.MIN,
        0.8,
        "Train-on-synthetic score on real holdout, relative to train-on-real",
        lambda r: _get(r, "fidelity", "tstr", "ratio"),
    ),
    Check(
        "discriminator_auc",
        "fidelity",
        Direction.MAX,
        0.9,
        "AUC of a classifier telling real from synthetic rows (0.5: indistinguishable)",
        lambda r: _get(r, "fidelity", "discriminator_auc"),
    ),
    Check(
        "cross_modal_ratio",
        "fidelity",
        Direction.MIN,
        0.8,
        "Lowest agreement of text/image with the record's own fields, relative to real records",
        lambda r: _worst((c["ratio"] for c in (_get(r, "fidelity", "cross_modal") or [])), Direction.MIN),
    ),
)
BY_NAME = {c.name: c for c in CHECKS}


#: Check categories that protect people (the rest measure utility): reports and datasheets keep the two apart.
PRIVACY_CATEGORIES = frozenset({"memorization", "pii", "attacks"})


def check_kind(name: str) -> str:
    """``privacy`` or ``utility``: what a named check protects or measures.

    >>> check_kind("dcr_share_high"), check_kind("tstr_ratio")
    ('privacy', 'utility')
    """
    return "privacy" if BY_NAME[name].category in PRIVACY_CATEGORIES else "utility"


def passes(value: float, direction: Direction, threshold: float) -> bool:
    """Whether ``value`` respects ``threshold`` (small float round-off tolerated)."""
    if direction is Direction.MAX:
        return value <= threshold + 1e-12
    return value >= threshold - 1e-12


def evaluate_checks(result: dict[str, Any], thresholds: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Every check's value against reference (or given) thresholds; ``status`` is ok, fail or n/a."""
    out = []
    for check in CHECKS:
        threshold = (thresholds or {}).get(check.name, check.default)
        value = check.extract(result)  # None when the audit has no value for it; a malformed audit raises
        status = "n/a" if value is None else ("ok" if passes(value, check.direction, threshold) else "fail")
        out.append(
            {
                "name": check.name,
                "category": check.category,
                "value": value,
                "threshold": threshold,
                "direction": check.direction.value,
                "status": status,
                "description": check.description,
            }
        )
    return out
