"""The surrogate registry read batch by batch answers as the registry held whole, for distinctive fakes only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from privsynth.audit.registry import CROSS_RECORD_FIELDS, SurrogateRegistry, explains_other_records, read_registry
from privsynth.audit.replay import normalise
from privsynth.data.layout import REGISTRY


def _registry(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "address": [f"{i} Oak Street, Lopezfort, NH 0{i:04d}" for i in range(n)],
            "other_url": [f"https://example.org/u/{i:012x}" if i % 3 else None for i in range(n)],
            "person": [f"Maria Lopez{i}" for i in range(n)],
        }
    )


def test_a_registry_in_parts_read_in_batches_answers_as_the_whole(tmp_path: Path) -> None:
    whole = _registry(25)
    folder = tmp_path / "synthetic" / REGISTRY
    folder.mkdir(parents=True)
    for i, start in enumerate(range(0, 25, 10)):  # as sharded sampling writes it
        whole.iloc[start : start + 10].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    audited = ["s3", "s17", "s24"]
    read = read_registry(tmp_path / "synthetic", "id", audited, batch_rows=4)
    held = SurrogateRegistry.from_frame(whole, "id")
    assert read is not None and held is not None
    # only the audited records' rows are kept...
    pd.testing.assert_frame_equal(read.own, held.own.loc[audited])
    # ...but every record's distinctive fake explains a span, as with the registry whole
    for value in [*whole["address"], *whole["other_url"].dropna()]:
        assert normalise(value) in read and normalise(value) in held
    # a name never explains a span in another record: a real patient's name equals some fake by chance
    for other in [*map(normalise, whole["person"]), normalise("https://example.org/u/000000000000"), "", None]:
        assert other not in read and other not in held
    assert len(read.hashes) == whole[["address", "other_url"]].count().sum()  # 8 bytes a value


def test_no_registry_or_one_without_the_key_is_none(tmp_path: Path) -> None:
    assert read_registry(tmp_path, "id", ["s1"]) is None
    (tmp_path / REGISTRY).parent.mkdir(parents=True)
    _registry(3).rename(columns={"id": "other"}).to_parquet(tmp_path / REGISTRY, index=False)
    assert read_registry(tmp_path, "id", ["s1"]) is None
    assert SurrogateRegistry.from_frame(_registry(3), "record_id") is None


def test_absent_values_are_not_hashed_as_text_and_a_span_with_a_lone_surrogate_is_answered() -> None:
    frame = pd.DataFrame({"id": ["s0", "s1", "s2"], "address": ["1 Elm Road", pd.NA, float("nan")]})
    held = SurrogateRegistry.from_frame(frame.astype({"address": object}), "id")
    assert held is not None and len(held.hashes) == 1
    assert "nan" not in held and "<na>" not in held and normalise("1 Elm Road") in held
    # a synthetic corpus is read with surrogateescape: its spans can hold lone surrogates, which must not stop the audit
    assert "1 elm \udcff" not in held


def test_only_fakes_no_real_identifier_equals_by_chance_explain_other_records() -> None:
    """Names, dates of birth, SSNs, MRNs, phones, ZIPs: twenty million fakes cover the common ones, so never."""
    for field in (
        *("first_name", "last_name", "person", "sex", "date_of_birth", "zip", "ssn", "mrn", "phone", "email"),
        *("credit_card", "account", "license", "ip_address"),
    ):
        assert not explains_other_records(field) and not explains_other_records(f"other_{field}")
    for field in CROSS_RECORD_FIELDS:
        assert explains_other_records(field) and explains_other_records(f"other_{field}")
    assert not explains_other_records("a_column_of_another_tool")  # unknown: explains nothing
    # a TEST-NET address normalised is a date: "192.0.2.4" and "1/9/2024" are both 192024
    assert normalise("192.0.2.4") == normalise("1/9/2024")
