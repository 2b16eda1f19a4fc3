"""What a release says outside epsilon: every non-DP statistic of the private corpus it carries, listed plainly.

The (epsilon, delta) guarantee covers what the DP generators produce. A release also carries a few things derived
from the real records by other means; each is made DP, keyed, dropped, or named here. The same list is printed in
the datasheet, and docs/privacy-officers.md explains each item. ``Policy.publish_audit_statistics`` drops the
audit's numbers from the bundle (keeping only the pass/fail of the gate).
"""

from __future__ import annotations

import math
from typing import Any

#: Things a release never carries, however it is configured (enforced by code and tests).
NEVER_RELEASED = (
    "exact counts of the private corpus: the number of synthetic records defaults to the DP profile's estimate, "
    "the DP-SGD sample rates and the default delta come from a DP count of people",
    "a plain content hash of the private corpus: the source is named by a keyed HMAC (or the name the data team "
    "gave), meaningless without the ledger store's secret key",
    "any value of a real record, and the randomness (seeds, noise) of the fit",
)


#: How many decimals a release gives an audit number. An exact fraction of real records names its denominator
#: (1/522 is a holdout of 522); three decimals leave a fraction of a few hundred records ambiguous by several.
PUBLISHED_DECIMALS = 3

#: Audit keys a release never carries: counts of real records (an attack's trials are ``min(500, len(table))``,
#: so a small train or holdout's exact size), the nearest-neighbour threshold (in effect one real person's
#: distance to their nearest other record), and how many synthetic surrogates equal a real identifier value
#: (``pii.replay``: whether a known person's birth date or name is in the corpus; the gate reads only
#: ``replay_unexplained``), the number of distinct real identifier values and PII spans (``replay_needles``: nearly
#: a count of real people), and examples (real values, in an INTERNAL audit).
UNPUBLISHED_AUDIT_KEYS = frozenset(
    {"trials", "members", "non_members", "near_copy_threshold", "replay", "replay_needles", "examples", "histograms"}
)


def published(node: Any) -> Any:
    """Audit numbers as a release carries them: :data:`UNPUBLISHED_AUDIT_KEYS` dropped, floats rounded.

    A policy's thresholds are public and keep their value.

    >>> published({"value": 1 / 522, "threshold": 0.0002, "trials": 500, "ok": True, "rate": [0.12345]})
    {'value': 0.002, 'threshold': 0.0002, 'ok': True, 'rate': [0.123]}
    """
    if isinstance(node, dict):
        return {k: v if k == "threshold" else published(v) for k, v in node.items() if k not in UNPUBLISHED_AUDIT_KEYS}
    if isinstance(node, list | tuple):
        return [published(v) for v in node]
    if isinstance(node, float):
        return round(node, PUBLISHED_DECIMALS) if math.isfinite(node) else node
    return node


def attack_points(node: Any) -> Any:
    """The attacks' results without the Wilson intervals of their rates and risks (``low``, ``high``).

    A Wilson interval is a function of the successes and the trials alone, and the trials are ``min(500, n)`` of a
    real split: even rounded, one rate's interval leaves a few candidates for a small split's size. The points
    stay (the gate reads them); the membership attack's AUC interval is a bootstrap and stays too.

    >>> attack_points({"risk": 0.1, "low": 0.0, "attack": {"value": 0.5, "high": 0.6}})
    {'risk': 0.1, 'attack': {'value': 0.5}}
    """
    if isinstance(node, dict):
        return {k: attack_points(v) for k, v in node.items() if k not in ("low", "high")}
    return node


#: The audit's fidelity scores a release may carry (``audit-summary.json``), each with the words that name it in
#: :func:`outside_guarantee`. ``bundle.audit_summary`` keeps only these keys, so a new score reaches a release only
#: once it is named here.
FIDELITY_DISCLOSED = {
    "tvd": "marginal distances",
    "tstr": "train-on-synthetic scores on real holdout records",
    "sdmetrics": "SDMetrics' column-shape and column-pair scores (their bins are cut on the real columns' range)",
    "discriminator_auc": "a real-vs-synthetic discriminator's AUC",
    "text": "text length, vocabulary and embedding (Frechet) distances",
    "image": "image Frechet distances",
    "cross_modal": "cross-modal agreement (a classifier trained on real notes or images, scored on synthetic ones)",
}


def outside_guarantee(
    *,
    publish_audit_statistics: bool,
    declared_public: list[str],
    public_data: list[dict[str, Any]],
    canary_audit: bool = False,
    schema_inferred: bool = False,
) -> list[str]:
    """The non-DP statements about the private corpus in this release, one sentence each."""
    items = [
        "The gate's decision (passed, and which soft checks warned) was computed on real records: it is one "
        "outcome of an audit outside the guarantee.",
    ]
    if publish_audit_statistics:
        items.append(
            "Audit statistics computed on real records (audit-summary.json, the values in the check table "
            "below, and the dataset card's key audit numbers): shares of synthetic rows closer to training than to "
            "holdout records and of near copies (judged against real-to-real distances), membership, "
            "singling-out, linkability and attribute-inference rates, counts of PII found in the synthetic cells, "
            "and fidelity scores: "
            + "; ".join(FIDELITY_DISCLOSED.values())
            + f" (counts of real records are left out, numbers rounded to {PUBLISHED_DECIMALS} decimals; several "
            "shares of the same real holdout or training split, taken together, can still narrow down a small "
            "split's size). The release policy can drop them (publish_audit_statistics: false)."
        )
        if canary_audit:
            items.append(
                "The canary audit's result (its empirical epsilon bound), from a shadow copy of the tabular stage "
                "trained on the real records plus planted canaries: that run is in no ledger, since nothing of it "
                "is released but this audit statistic."
            )
    if declared_public:
        items.append(
            "Metadata the data team declared public in schema.yaml (not learned from the records): "
            + ", ".join(f"`{c}`" for c in declared_public)
            + "."
        )
    if public_data:
        items.append("Public data the generators learned without noise (listed under Preprocessing).")
    if schema_inferred:
        items.append(
            "The schema itself was inferred from the real records when the model was fitted from a DataFrame "
            "without one: column kinds, `integer`/`date_only` flags and the key and entity columns were read "
            "without noise."
        )
    items.append(
        "Column names and kinds come from schema.yaml; flags that `privsynth init` inferred from the data "
        "(a column's kind, `integer`, `date_only`) are not DP unless the data team reviewed or declared them."
    )
    return items


__all__ = [
    "NEVER_RELEASED",
    "PUBLISHED_DECIMALS",
    "UNPUBLISHED_AUDIT_KEYS",
    "attack_points",
    "outside_guarantee",
    "published",
]
