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
