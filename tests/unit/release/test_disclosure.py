"""Every audit score a release carries is named in what the release says outside the guarantee."""

from __future__ import annotations

from privsynth.release.bundle import audit_summary
from privsynth.release.disclosure import FIDELITY_DISCLOSED, outside_guarantee


def test_a_fidelity_score_reaches_a_release_only_when_the_datasheet_names_it() -> None:
    fidelity = {key: {"score": 0.5} for key in FIDELITY_DISCLOSED} | {"new_score_on_real_rows": 0.9}
    summary = audit_summary({"checks": [], "fidelity": fidelity})
    assert set(summary["fidelity"]) == set(FIDELITY_DISCLOSED)  # the unnamed score is left out
    said = " ".join(outside_guarantee(publish_audit_statistics=True, declared_public=[], public_data=[]))
    for words in FIDELITY_DISCLOSED.values():
        assert words in said
    unpublished = " ".join(outside_guarantee(publish_audit_statistics=False, declared_public=[], public_data=[]))
    assert "SDMetrics" not in unpublished


def test_a_summary_carries_no_count_of_real_records_and_no_exact_fraction_of_them() -> None:
    # Before: attacks' trials were min(500, len(table)), so a small holdout's exact size; shares like 1/34 named it
    # at full precision; pii.replay said whether a known person's identifier value is in the corpus.
    rate = {"value": 1 / 34, "low": 0.01, "high": 0.2, "trials": 34}
    audit = {
        "checks": [{"name": "near_copy_excess", "value": -1 / 522, "threshold": 0.005}],
        "memorization": {"tabular": {"dcr_share": 0.5076666, "near_copy_threshold": 0.0553, "histograms": {}}},
        "attacks": {
            "membership_inference": {"auc": 585 / 1156, "members": 34, "non_members": 34},
            "linkability": {"attack": rate, "control": rate, "risk": 0.0},
        },
        "pii": {"replay": {"date_of_birth": {"generated": 1}}, "replay_unexplained": 0, "replay_needles": 12},
    }
    summary = audit_summary(audit)

    def walk(node: object) -> list[tuple[str, object]]:
        if isinstance(node, dict):
            return [(k, v) for k, v in node.items()] + [x for v in node.values() for x in walk(v)]
        if isinstance(node, list):
            return [x for v in node for x in walk(v)]
        return []

    pairs = walk(summary)
    keys = {k for k, _ in pairs}
    assert not keys & {"trials", "members", "non_members", "near_copy_threshold", "replay", "replay_needles"}
    assert summary["pii"]["replay_unexplained"] == 0  # what the gate reads stays
    for _, value in pairs:
        if isinstance(value, float):
            assert value == round(value, 3)
    assert summary["checks"][0]["value"] == -0.002 and summary["attacks"]["membership_inference"]["auc"] == 0.506
    # a Wilson interval is a function of successes and trials: even rounded it names a small split's size
    assert summary["attacks"]["linkability"]["attack"] == {"value": 0.029}
    assert summary["checks"][0]["threshold"] == 0.005  # the policy's own numbers are public and stay as they are
