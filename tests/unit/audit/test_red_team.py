"""Red-team: planted defects are flagged; an i.i.d. real sample never used in training passes memorization."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from privsynth.audit.checks import evaluate_checks
from privsynth.audit.run import run_audit
from privsynth.data.corpus import Corpus
from privsynth.data.demo import build_demo_records, demo_schema
from privsynth.data.images import encode_png

from .conftest import replace_rows

MEMORIZATION = ("dcr_share_high", "identical_excess", "near_copy_excess", "verbatim_excess")


def statuses(result: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in evaluate_checks(result)}


def test_an_audit_too_small_to_show_safety_fails_the_dcr_check_instead_of_passing(splits, fast_config, tools) -> None:
    # ~300 records a side: an unseen real sample's DCR share is near 0.5, but its interval is too wide to show that
    # it is below 0.6. Before, the gate read the interval's LOWER end, so small noisy audits passed by construction.
    result = run_audit(splits.train, splits.holdout, splits.oracle, config=fast_config, collaborators=tools)
    status = statuses(result)
    for check in ("identical_excess", "near_copy_excess", "verbatim_excess"):
        assert status[check] == "ok", (check, [c for c in result["checks"] if c["name"] == check])
    assert status["dcr_share_high"] == "fail"
    assert result["memorization"]["tabular"]["dcr_share"] < 0.6


def test_unseen_real_sample_large_enough_to_judge_passes_memorization(fast_config, tools) -> None:
    frame, images = build_demo_records(3000, seed=21)
    frame = frame.assign(scan=[images[rel] for rel in frame["scan"]])
    people = frame["patient_id"].unique()
    thirds = np.array_split(np.random.default_rng(0).permutation(people), 3)
    train, holdout, unseen = (
        Corpus(
            records=frame[frame["patient_id"].isin(set(t))].reset_index(drop=True), schema=demo_schema(), root=Path(".")
        )
        for t in thirds
    )
    result = run_audit(train, holdout, unseen, config=fast_config, collaborators=tools)  # ~1,000 records a side
    status = statuses(result)
    for check in ("dcr_share_high", "identical_excess", "verbatim_excess"):
        assert status[check] == "ok", (check, [c for c in result["checks"] if c["name"] == check])


def test_one_percent_copied_training_rows_are_flagged(splits, fast_config, tools) -> None:
    n = max(1, round(0.02 * len(splits.oracle)))
    synthetic = splits.oracle.with_records(replace_rows(splits.oracle.records, splits.train.records, list(range(n))))
    result = run_audit(splits.train, splits.holdout, synthetic, config=fast_config, collaborators=tools)
    assert statuses(result)["identical_excess"] == "fail"
    assert result["memorization"]["tabular"]["identical_train"] > result["memorization"]["tabular"]["identical_holdout"]


def test_near_copies_with_one_field_nudged_are_flagged(splits, fast_config, tools) -> None:
    rows = list(range(0, 60, 3))  # 20 training rows, each with one number nudged
    copies = splits.train.records.iloc[rows].copy()
    copies["bmi"] = copies["bmi"] + 0.7
    synthetic = splits.oracle.with_records(replace_rows(splits.oracle.records, copies, list(range(len(rows)))))
    result = run_audit(splits.train, splits.holdout, synthetic, config=fast_config, collaborators=tools)
    tabular = result["memorization"]["tabular"]
    assert tabular["identical_train"] <= tabular["identical_holdout"] + 0.005  # not exact copies...
    assert tabular["near_copy_excess"] > 0.03  # ...but caught as near copies
    assert statuses(result)["near_copy_excess"] == "fail"


def test_a_verbatim_sentence_from_a_training_note_is_flagged(splits, fast_config, tools) -> None:
    records = splits.oracle.records.copy()
    for i in range(6):  # the first sentence of a training note (its patient's name, age and MRN)
        sentence = splits.train.records["note"].iloc[i].split("), ")[0] + ")."
        records.loc[i, "note"] = records.loc[i, "note"] + " " + sentence
    result = run_audit(
        splits.train, splits.holdout, splits.oracle.with_records(records), config=fast_config, collaborators=tools
    )
    verbatim = result["memorization"]["text"]["note"]["verbatim"]
    assert verbatim["copying"] >= 5
    assert statuses(result)["verbatim_excess"] == "fail"


def test_a_real_name_inside_a_note_is_flagged(splits, tools) -> None:
    from privsynth.audit.run import AuditConfig

    config = AuditConfig(attacks=False, fidelity=False, bootstrap=50, ocr="off")
    records = splits.oracle.records.copy()
    real_name = splits.train.records["name"].iloc[3]
    records.loc[0, "note"] = f"Follow-up arranged with {real_name} next week. " + records.loc[0, "note"]
    result = run_audit(
        splits.train, splits.holdout, splits.oracle.with_records(records), config=config, collaborators=tools
    )
    assert result["pii"]["replay"]["person"]["unexplained"] >= 1
    assert statuses(result)["pii_replay"] == "fail"
    assert real_name not in str(result)  # the audit result holds counts, never the value


def test_a_copied_image_with_mild_noise_is_flagged(splits, fast_config, tools) -> None:
    rng = np.random.default_rng(0)
    records = splits.oracle.records.copy()
    for i in range(8):
        pixels = np.asarray(Image.open(io.BytesIO(splits.train.records["scan"].iloc[i])), dtype=np.float64)
        noisy = np.clip(pixels + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)
        records.at[i, "scan"] = encode_png(Image.fromarray(noisy, mode="L"))
    result = run_audit(
        splits.train, splits.holdout, splits.oracle.with_records(records), config=fast_config, collaborators=tools
    )
    spaces = result["memorization"]["image"]["scan"]
    assert max(s["near_copy_excess"] + s["identical_excess"] for s in spaces.values()) > 0.005
    assert statuses(result)["near_copy_excess"] == "fail"


def test_clean_images_are_not_flagged(splits, fast_config, tools) -> None:
    result = run_audit(splits.train, splits.holdout, splits.oracle, config=fast_config, collaborators=tools)
    for space in result["memorization"]["image"]["scan"].values():
        assert space["near_copy_excess"] <= 0.005
        assert space["dcr_share"] < 0.56


@pytest.mark.parametrize("fraction", [1.0])
def test_copying_the_whole_training_set_fails_everything_memorization(splits, fast_config, tools, fraction) -> None:
    n = int(fraction * min(len(splits.train), len(splits.oracle)))
    synthetic = splits.oracle.with_records(splits.train.records.iloc[:n])
    result = run_audit(splits.train, splits.holdout, synthetic, config=fast_config, collaborators=tools)
    status = statuses(result)
    assert status["dcr_share_high"] == "fail" and status["identical_excess"] == "fail"
