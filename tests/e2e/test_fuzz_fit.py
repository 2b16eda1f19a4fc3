"""Fuzz (issue 17): malformed corpora, schemas, configs and arguments given to ``privsynth fit``.

Every example must end in exit 2, with a message naming the problem and never a private value, no traceback
without --verbose, nothing written, and no spend in the ledger store. ``make test`` runs a few dozen examples;
the ``slow`` variant runs hundreds.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privsynth.cli import main
from privsynth.data.schema import dump_schema
from privsynth.privacy.store import LedgerStore
from tests.unit.data.test_malformed_property import MUTATIONS, SCHEMA, SENTINEL, base_rows, write

# One case: given a temporary folder, write what it needs and return fit's arguments after the corpus.
Case = Callable[[Path], list[str]]


def _valid_corpus(root: Path) -> None:
    write(root, base_rows())


def _schema_case(entry: dict[str, object]) -> Case:
    def apply(tmp: Path) -> list[str]:
        _valid_corpus(tmp / "corpus")
        text = dump_schema(SCHEMA)
        data = yaml.safe_load(text)
        data["columns"]["age"] = {**data["columns"]["age"], **entry}
        (tmp / "corpus" / "schema.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        return []

    return apply


def _corpus_case(index: int, row: int) -> Case:
    def apply(tmp: Path) -> list[str]:
        (tmp / "corpus").mkdir()
        MUTATIONS[index](tmp / "corpus", base_rows(), row)
        return []

    return apply


def _config_case(raw: bytes) -> Case:
    def apply(tmp: Path) -> list[str]:
        _valid_corpus(tmp / "corpus")
        (tmp / "config.yaml").write_bytes(raw)
        return ["-c", str(tmp / "config.yaml")]

    return apply


def _args_case(args: list[str]) -> Case:
    def apply(tmp: Path) -> list[str]:
        _valid_corpus(tmp / "corpus")
        (tmp / "a-file").write_text("x")
        return [a.replace("{tmp}", str(tmp)) for a in args]

    return apply


bad_numbers = st.one_of(
    st.sampled_from([math.inf, -math.inf, math.nan]),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
)
schema_cases = st.one_of(
    st.tuples(bad_numbers, st.floats(allow_nan=False, allow_infinity=False)).map(
        lambda b: _schema_case({"bounds": [b[1], b[0]] if not math.isfinite(b[0]) else [b[1] + 1, b[1] - 1e9]})
    ),
    st.sampled_from(
        [
            {"kind": "colour"},
            {"bounds": [1, 2, 3]},
            {"domain": ["a"]},
            {"nullable": "perhaps"},
            {"date_range": ["2020-01-01", "2021-01-01"]},
            {"max_length": 5},
            {"pii": "email"},
        ]
    ).map(_schema_case),
)
corpus_cases = st.builds(
    _corpus_case, st.integers(min_value=0, max_value=len(MUTATIONS) - 1), st.integers(min_value=1, max_value=3)
)
config_cases = st.one_of(
    st.binary(min_size=1, max_size=40).map(lambda b: b"\xff" + b),  # never UTF-8
    st.sampled_from(
        [
            b"tabular: {hidden: -3}\n",
            b"tabular: {optim: {lr: -1}}\n",
            b"holdout_fraction: 2\n",
            b"[1, 2, 3]\n",
            b"text: {dim: abc}\n",
            b"surprise: 1\n",
            b"accountant: guess\n",
            b"seed: 0\n",
            b"tabular: {hidden: .nan}\n",
        ]
    ),
).map(_config_case)
epsilons = st.one_of(
    st.sampled_from(["0", "-1", "nan", "inf", "1e-12", "1e-9", "1001", "1e300", "abc", ""]),
    st.floats(min_value=1001, max_value=1e12).map(repr),
    st.floats(max_value=0).map(repr),
)
args_cases = st.one_of(
    epsilons.map(lambda e: _args_case(["-e", e])),
    st.sampled_from(["0", "1", "2", "-1e-5", "nan", "x"]).map(lambda d: _args_case(["--delta", d])),
    st.sampled_from(["-0.1", "0.99", "7"]).map(lambda h: _args_case(["--holdout-fraction", h])),
    st.sampled_from(["{tmp}/a-file/model", "/proc/privsynth-fuzz/model"]).map(lambda o: _args_case(["-o", o])),
    st.sampled_from(["bogus://x", "{tmp}", "{tmp}/a-file/l.sqlite"]).map(lambda s: _args_case(["--ledger-store", s])),
    st.sampled_from([["--canaries", "-1"], ["--seed", "0"], ["--workdir", "{tmp}/a-file"]]).map(_args_case),
)
cases = st.one_of(schema_cases, corpus_cases, config_cases, args_cases)


def _check(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        extra = case(tmp)
        store = tmp / "store" / "ledger.sqlite"
        out = tmp / "model"
        before = sorted(p.name for p in tmp.iterdir())
        capsys.readouterr()
        args = [
            "fit",
            str(tmp / "corpus"),
            "-e",
            "4",
            "-o",
            str(out),
            "-c",
            str(Path(__file__).parents[2] / "configs" / "small.yaml"),
        ]
        code = main([*args, "--ledger-store", str(store), *extra])  # later options win
        captured = capsys.readouterr()
        shown = captured.out + captured.err
        assert code == 2, (extra, shown)
        assert "Traceback" not in shown and "Internal error" not in shown, shown
        assert SENTINEL not in shown
        assert "Error" in shown  # a message, not silence
        assert not out.exists()
        assert sorted(p.name for p in tmp.iterdir() if p.name != "store") == [n for n in before if n != "store"]
        if store.exists():
            assert LedgerStore(store).rows() == []


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples in every CI run; the slow variant explores
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=cases)
def test_malformed_fit_inputs_exit_2_spend_nothing_and_write_nothing(case: Case, capsys) -> None:
    _check(case, capsys)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases)
def test_malformed_fit_inputs_many_examples(case: Case, capsys) -> None:
    _check(case, capsys)
