from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from privsynth.errors import BudgetExceededError, ConfigError, IntegrityError
from privsynth.privacy.accounting import AccountantKind, Mechanism
from privsynth.privacy.ledger import PrivacyLedger, Stage
from privsynth.privacy.store import LedgerStore, new_run_id

SMALL = Mechanism(noise_multiplier=20.0, sample_rate=1.0, steps=2)
BIG = Mechanism(noise_multiplier=1.0, sample_rate=0.05, steps=400)


def ledger(epsilon: float = 20.0) -> PrivacyLedger:
    return PrivacyLedger(epsilon=epsilon, delta=1e-5, accountant=AccountantKind.RDP)


def test_spends_are_stored_as_they_happen(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.sqlite")
    book = ledger()
    run = new_run_id()
    book.attach(store.sink(source="s1", run_id=run, operator="alice"))
    book.spend(Stage.PROFILE, SMALL)
    assert len(store.rows("s1")) == 1
    book.spend(Stage.TABULAR, BIG)
    rows = store.rows("s1")
    assert [r["stage"] for r in rows] == ["profile", "tabular"]
    assert rows[-1]["run_epsilon"] == pytest.approx(book.epsilon)
    assert {r["operator"] for r in rows} == {"alice"}
    total = store.total("s1")
    assert total.runs == 1 and total.epsilon == pytest.approx(book.epsilon) and total.delta == 1e-5


def test_recording_again_never_counts_twice(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.sqlite")
    book = ledger()
    book.spend(Stage.PROFILE, SMALL)
    store.record(source="s", run_id="run-1", ledger=book)
    store.record(source="s", run_id="run-1", ledger=book)  # e.g. a resumed run re-syncing its ledger
    book.spend(Stage.TABULAR, BIG)
    store.record(source="s", run_id="run-1", ledger=book)
    assert len(store.rows("s")) == 2
    assert store.total("s").epsilon == pytest.approx(book.epsilon)


def test_runs_add_up_and_caps_refuse_up_front(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.sqlite")
    for run in ("a", "b"):
        book = ledger()
        book.spend(Stage.TABULAR, BIG)
        store.record(source="s", run_id=run, ledger=book)
    per_run = store.rows("s")[0]["run_epsilon"]
    assert store.total("s").epsilon == pytest.approx(2 * per_run)
    store.set_cap(None, 2.5 * per_run)
    assert store.cap("other") == pytest.approx(2.5 * per_run)
    with pytest.raises(BudgetExceededError, match="past the cap"):
        store.check_cap("s", per_run)
    store.check_cap("s", 0.4 * per_run)
    store.set_cap("s", 10 * per_run)  # a source's own cap beats the default
    store.check_cap("s", per_run)
    with pytest.raises(ConfigError):
        store.set_cap("s", -1.0)


def test_cap_is_enforced_at_spend_time_before_noise(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.sqlite")
    store.set_cap("s", 1.0)
    book = ledger()
    book.attach(store.sink(source="s", run_id="r"))
    book.spend(Stage.PROFILE, SMALL)
    with pytest.raises(BudgetExceededError, match="past the cap"):
        book.spend(Stage.TABULAR, BIG)
    assert [e.stage for e in book.entries] == [Stage.PROFILE]
    assert len(store.rows("s")) == 1


def _writer(url: str, worker: int, runs: int) -> None:
    store = LedgerStore(url)
    for i in range(runs):
        book = ledger()
        book.attach(store.sink(source="shared", run_id=f"w{worker}-r{i}", operator=f"w{worker}"))
        book.spend(Stage.PROFILE, SMALL)
        book.spend(Stage.TABULAR, SMALL)


def test_two_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    url = str(tmp_path / "shared.sqlite")
    LedgerStore(url).total("warm-up")  # create tables once
    ctx = multiprocessing.get_context("fork")
    runs = 25
    workers = [ctx.Process(target=_writer, args=(url, w, runs)) for w in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
        assert p.exitcode == 0
    rows = LedgerStore(url).rows("shared")
    assert len(rows) == 2 * 2 * runs
    assert len({(r["run_id"], r["seq"]) for r in rows}) == len(rows)
    assert LedgerStore(url).total("shared").runs == 2 * runs


def _capped_writer(url: str, worker: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = LedgerStore(url)
    book = ledger()
    book.attach(store.sink(source="capped", run_id=f"w{worker}"))
    try:
        book.spend(Stage.TABULAR, BIG)
        results.put("ok")
    except BudgetExceededError:
        results.put("refused")


def test_concurrent_runs_cannot_jointly_pass_a_cap(tmp_path: Path) -> None:
    url = str(tmp_path / "capped.sqlite")
    probe = ledger()
    probe.spend(Stage.TABULAR, BIG)
    store = LedgerStore(url)
    store.set_cap("capped", 1.5 * probe.epsilon)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    workers = [ctx.Process(target=_capped_writer, args=(url, w, results)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert outcomes == ["ok", "refused", "refused", "refused"]
    assert store.total("capped").runs == 1


def test_a_run_id_reused_by_another_source_or_mechanism_is_refused_not_skipped(tmp_path: Path) -> None:
    # Before: (run_id, seq) already stored was skipped whatever the source, so a second source recorded nothing.
    store = LedgerStore(tmp_path / "l.sqlite")
    first = ledger()
    first.spend(Stage.TABULAR, BIG)
    store.record(source="icu", run_id="run-demo", ledger=first)
    other = ledger()
    other.spend(Stage.TABULAR, BIG)
    with pytest.raises(IntegrityError, match="never be reused"):
        store.record(source="oncology", run_id="run-demo", ledger=other)
    different = ledger()
    different.spend(Stage.TABULAR, SMALL)
    with pytest.raises(IntegrityError):
        store.record(source="icu", run_id="run-demo", ledger=different)
    assert len(store.rows()) == 1
    store.record(source="icu", run_id="run-demo", ledger=first)  # the same spends again: a resume, no-op
    assert len(store.rows()) == 1


def test_a_shorter_ledger_under_a_stored_run_id_is_refused(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.sqlite")
    book = ledger()
    book.spend(Stage.PROFILE, SMALL)
    book.spend(Stage.TABULAR, BIG)
    store.record(source="s", run_id="r", ledger=book)
    fresh = ledger()
    fresh.spend(Stage.PROFILE, SMALL)
    with pytest.raises(IntegrityError, match="more spend"):
        store.record(source="s", run_id="r", ledger=fresh)


def test_renaming_a_source_does_not_escape_its_cap(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "l.sqlite")
    fingerprint = store.keyed("sha256:corpus-a")
    book = ledger()
    book.spend(Stage.TABULAR, BIG)
    per_run = book.epsilon
    store.set_cap("icu-2024", 1.5 * per_run)
    store.record(source="icu-2024", run_id=new_run_id(), ledger=book, fingerprint=fingerprint)
    with pytest.raises(BudgetExceededError, match="past the cap"):
        store.check_cap("icu-2024-renamed", per_run, fingerprint=fingerprint)
    renamed = ledger()
    renamed.attach(store.sink(source="icu-2024-renamed", run_id=new_run_id(), fingerprint=fingerprint))
    with pytest.raises(BudgetExceededError):
        renamed.spend(Stage.TABULAR, BIG)
    # another corpus under the new name is not held back by the first corpus' spend
    store.check_cap("icu-2024-renamed", per_run, fingerprint=store.keyed("sha256:corpus-b"))


def test_keyed_fingerprints_are_stable_per_store_and_unlinkable_across_stores(tmp_path: Path) -> None:
    one, two = LedgerStore(tmp_path / "a.sqlite"), LedgerStore(tmp_path / "b.sqlite")
    assert one.keyed("sha256:x") == LedgerStore(tmp_path / "a.sqlite").keyed("sha256:x")
    assert one.keyed("sha256:x") != two.keyed("sha256:x")  # a secret key per store
    assert one.keyed("sha256:x").startswith("hmac-sha256:") and "sha256:x" not in one.keyed("sha256:x")


def test_a_new_sqlite_store_is_owner_only(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "new" / "ledger.sqlite")
    store.total("x")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "ledger.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_store_written_by_an_older_version_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    LedgerStore(path).total("x")
    con = sqlite3.connect(path)
    con.execute("DROP TABLE privsynth_spends")
    con.execute(
        "CREATE TABLE privsynth_spends (id INTEGER PRIMARY KEY, source VARCHAR(128) NOT NULL, run_id VARCHAR(64) "
        "NOT NULL, seq INTEGER NOT NULL, stage VARCHAR(32) NOT NULL, noise_multiplier FLOAT NOT NULL, sample_rate "
        "FLOAT NOT NULL, steps INTEGER NOT NULL, extra_delta FLOAT NOT NULL, run_epsilon FLOAT NOT NULL, run_delta "
        "FLOAT NOT NULL, accountant VARCHAR(8) NOT NULL, unit_of_privacy TEXT NOT NULL, operator VARCHAR(128) NOT "
        "NULL, created_at DATETIME NOT NULL, note TEXT NOT NULL, CONSTRAINT uq_run_seq UNIQUE (run_id, seq))"
    )
    con.commit()
    con.close()
    store = LedgerStore(path)
    book = ledger()
    book.spend(Stage.TABULAR, BIG)
    store.record(source="s", run_id="r", ledger=book, fingerprint="hmac-sha256:f")
    assert store.rows("s")[0]["fingerprint"] == "hmac-sha256:f"


def test_the_default_store_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVSYNTH_LEDGER_STORE", str(tmp_path / "team.sqlite"))
    assert LedgerStore().url == f"sqlite:///{tmp_path / 'team.sqlite'}"


@pytest.mark.parametrize(
    ("location", "fragment"),
    [
        ("bogus://x", "not a URL privsynth can open"),
        ("postgresql://user:hunter2@127.0.0.1:1/db", "not a URL privsynth can open|cannot open the ledger store"),
        ("{tmp}", "is a folder"),
        ("{tmp}/file/ledger.sqlite", "is not a folder"),
    ],
)
def test_an_unusable_store_is_a_clear_config_error(tmp_path: Path, location: str, fragment: str) -> None:
    # Before: a bogus URL or a folder ended in "Internal error" (exit 1).
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=fragment) as info:
        LedgerStore(location.format(tmp=tmp_path)).rows()
    assert "hunter2" not in str(info.value)  # a password in the URL is never printed
