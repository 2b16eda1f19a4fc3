"""A synthetic corpus that leaves out modelled columns (privsynth's ``omitted_columns``, or a hand-made corpus) is
audited over the columns both sides hold: the omission is reported, never compared against nothing."""

from __future__ import annotations

from privsynth.audit.checks import evaluate_checks
from privsynth.audit.run import AuditConfig, Collaborators, run_audit
from privsynth.data.corpus import Corpus

from .conftest import HashingTextEmbedder

LEFT_OUT = ["bmi", "insurance", "diagnosis"]  # a number, a category and the default TSTR target


def test_an_audit_of_a_corpus_without_some_real_columns_compares_the_rest(splits) -> None:
    oracle = splits.oracle
    kept = {n: c for n, c in oracle.schema.columns.items() if n not in LEFT_OUT}
    synthetic = Corpus(
        oracle.records.drop(columns=LEFT_OUT), oracle.schema.model_copy(update={"columns": kept}), oracle.root
    )
    result = run_audit(
        splits.train,
        splits.holdout,
        synthetic,
        config=AuditConfig(bootstrap=50, ocr="off", pii=False),
        collaborators=Collaborators(text=HashingTextEmbedder()),
    )
    for name in LEFT_OUT:
        assert f"column '{name}' is absent from the synthetic corpus: not audited" in result["limitations"]
    fidelity = result["fidelity"]
    assert fidelity["tstr"]["target"] not in LEFT_OUT  # another column is the target
    assert 0.5 <= fidelity["discriminator_auc"] <= 1.0
    assert 0.0 <= result["memorization"]["tabular"]["dcr_share"] <= 1.0
    assert set(result["attacks"]["attribute_inference"]).isdisjoint(LEFT_OUT)
    assert {c["name"] for c in evaluate_checks(result)} == {c["name"] for c in result["checks"]}
