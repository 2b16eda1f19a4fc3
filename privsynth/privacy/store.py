"""The persistent ledger store: every spend on every source corpus, across runs, in one database.

SQLite by default (``.privsynth/ledger.sqlite``, or ``PRIVSYNTH_LEDGER_STORE``); any SQLAlchemy URL for a team's
shared database. One row per spend: the source (a name, or the corpus' keyed fingerprint), the keyed fingerprint,
the run, the stage, the mechanism, the run's composed (epsilon, delta) after it, the time and the operator. A cap
on cumulative epsilon (set by a privacy officer, stored in the same database) refuses spends that would pass it.

Cumulative spend of a source is the sum over runs of each run's composed epsilon and delta (basic composition
across runs: always valid, whatever each run's accountant was). A corpus is also capped by its fingerprint, under
the strictest cap of every name it was ever recorded under: renaming a source does not reset its spend.

Fingerprints are keyed (HMAC-SHA256) with a random secret kept in the store itself, created on first use: a plain
content hash of a private corpus would answer membership questions for anyone who knows all records but one, so
none is ever stored or released. Whoever can read the store can compute keyed fingerprints: keep it owner-only
(the SQLite file is created so) or behind the team database's access control.

Writers serialise on the database: SQLite transactions start with ``BEGIN IMMEDIATE`` (the write lock is taken
before the cap is read), other databases run at SERIALIZABLE isolation and retry conflicts. Re-recording an
entry already stored (same run, sequence number, source and mechanism) is a no-op, so a resumed run never counts
twice; a stored row that disagrees with the ledger is refused loudly (:class:`~privsynth.errors.IntegrityError`).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import IntegrityError as RowConflict

from privsynth.errors import BudgetExceededError, ConfigError, IntegrityError
from privsynth.privacy.ledger import LedgerEntry, PrivacyLedger

DEFAULT_STORE = Path(".privsynth") / "ledger.sqlite"
STORE_ENV = "PRIVSYNTH_LEDGER_STORE"
DEFAULT_CAP_KEY = "*"
KEYED_PREFIX = "hmac-sha256:"

_metadata = MetaData()
spends = Table(
    "privsynth_spends",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False, index=True),
    Column("fingerprint", String(128), nullable=True, index=True),
    Column("run_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("stage", String(32), nullable=False),
    Column("noise_multiplier", Float, nullable=False),
    Column("sample_rate", Float, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("extra_delta", Float, nullable=False),
    Column("run_epsilon", Float, nullable=False),
    Column("run_delta", Float, nullable=False),
    Column("accountant", String(8), nullable=False),
    Column("unit_of_privacy", Text, nullable=False),
    Column("operator", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False),
    UniqueConstraint("run_id", "seq", name="uq_run_seq"),
)
secrets_table = Table(
    "privsynth_secrets",
    _metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
caps = Table(
    "privsynth_caps",
    _metadata,
    Column("source", String(128), primary_key=True),
    Column("max_epsilon", Float, nullable=False),
    Column("set_by", String(128), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class SourceTotal:
    """Cumulative spend of one source across runs."""

    source: str
    epsilon: float
    delta: float
    runs: int
    cap: float | None


def default_operator() -> str:
    """Who is spending: ``PRIVSYNTH_OPERATOR`` if set, else the login name."""
    return os.environ.get("PRIVSYNTH_OPERATOR") or getpass.getuser()


def store_url(location: str | Path | None) -> str:
    """An SQLAlchemy URL from a URL or a file path.

    ``None`` means ``PRIVSYNTH_LEDGER_STORE`` when set (read now, not at import), else ``.privsynth/ledger.sqlite``.
    A new SQLite store's folder is created owner-only (0700).
    """
    if location is None:
        location = os.environ.get(STORE_ENV) or DEFAULT_STORE
    value = str(location)
    if "://" in value:
        return value
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"ledger store {path} is a folder; give a file path (e.g. {path / 'ledger.sqlite'}) or a URL")
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"ledger store {path}: cannot create its folder ({exc.strerror or type(exc).__name__}); "
            "choose a path you can write to"
        ) from None
    if not path.parent.is_dir():
        raise ConfigError(f"ledger store {path}: {path.parent} is not a folder")
    return f"sqlite:///{path}"


def hide_password(url: str) -> str:
    """The store URL without its password, for messages and run folders.

    The store holds the key of the release's keyed source fingerprint: whoever reads it can test candidate corpora
    against a release.

    >>> hide_password("postgresql://team:s3cret@db.example/ledger"), hide_password("runs/ledger.sqlite")
    ('postgresql://team:***@db.example/ledger', 'runs/ledger.sqlite')
    >>> hide_password("postgresql://db.example/ledger?user=team&password=s3cret&sslmode=require")
    'postgresql://db.example/ledger?password=***&sslmode=require&user=team'
    """
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not even a URL: hide anything between '://' and the last '@'
        shown = re.sub(r"://.*@", "://***@", url)
    # a driver's password given as a query parameter ('?password=...'), which SQLAlchemy leaves as it is
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&]*", r"\1***", shown)


class LedgerStore:
    """Persistent, concurrency-safe record of spends per source.

    Args:
        url: SQLAlchemy URL or SQLite file path; ``None`` means ``.privsynth/ledger.sqlite``.
    """

    def __init__(self, url: str | Path | None = None) -> None:
        self.url = store_url(url)
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created (and the tables with it, owner-only for SQLite) on first use."""
        if self._engine is None:
            try:
                engine = self._create_engine()
                if self.url.startswith("sqlite:///") and not Path(self.url.removeprefix("sqlite:///")).exists():
                    path = Path(self.url.removeprefix("sqlite:///"))
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                _metadata.create_all(engine)
                _upgrade(engine)
            except (ArgumentError, NoSuchModuleError, ImportError) as exc:
                raise ConfigError(
                    f"ledger store '{hide_password(self.url)}' is not a URL privsynth can open ({type(exc).__name__}); "
                    "give a file path, sqlite:///PATH or a server URL such as postgresql://HOST/DB"
                ) from None
            except (DBAPIError, OSError) as exc:
                reason = getattr(getattr(exc, "orig", None), "args", None) or (type(exc).__name__,)
                raise ConfigError(
                    f"cannot open the ledger store '{hide_password(self.url)}' ({str(reason[0])[:120]}); nothing was "
                    "spent. Check the path or server, and that you may write to it"
                ) from None
            self._engine = engine
        return self._engine

    @property
    def shown(self) -> str:
        """The store's URL as messages show it (no password)."""
        return hide_password(self.url)

    def _create_engine(self) -> Engine:
        if self.url.startswith("sqlite"):
            engine = create_engine(self.url, connect_args={"timeout": 120})

            @event.listens_for(engine, "connect")
            def _no_pysqlite_transactions(dbapi_connection: Any, _: Any) -> None:
                dbapi_connection.isolation_level = None  # we emit BEGIN ourselves

            @event.listens_for(engine, "begin")
            def _begin_immediate(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        return create_engine(self.url, isolation_level="SERIALIZABLE", pool_pre_ping=True)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _retry(self, action: Any) -> Any:
        delay = 0.05
        for attempt in range(8):
            try:
                return action()
            except OperationalError:
                if attempt == 7:
                    raise
            except DBAPIError as exc:  # serialization failures on server databases
                if attempt == 7 or "serializ" not in str(exc).lower():
                    raise
            time.sleep(delay)
            delay *= 2
        raise RuntimeError("unreachable")

    # ----- keyed fingerprints -------------------------------------------------------------------------------------

    def _secret(self) -> bytes:
        """The store's HMAC key (32 random bytes, created once; concurrent creators agree on the first)."""

        def read_or_create() -> str:
            with self._transaction() as conn:
                row = conn.execute(select(secrets_table.c.value).where(secrets_table.c.name == "source-key")).first()
                if row is not None:
                    return str(row[0])
                value = secrets.token_hex(32)
                conn.execute(secrets_table.insert().values(name="source-key", value=value, created_at=_now()))
                return value

        try:
            return bytes.fromhex(self._retry(read_or_create))
        except RowConflict:  # another writer created it between our read and insert: read theirs
            return bytes.fromhex(self._retry(read_or_create))

    def keyed(self, digest: str) -> str:
        """``hmac-sha256:<hex>`` of a plain content digest under this store's secret key.

        The same corpus gets the same keyed fingerprint in every run that uses this store, so caps and resume
        checks work; without the key it says nothing about the corpus.
        """
        mac = hmac.new(self._secret(), digest.encode(), hashlib.sha256).hexdigest()
        return f"{KEYED_PREFIX}{mac}"

    # ----- caps -------------------------------------------------------------------------------------------------

    def set_cap(self, source: str | None, max_epsilon: float, *, operator: str | None = None) -> None:
        """Cap cumulative epsilon for ``source`` (``None``: the default for every source without its own cap)."""
        if not max_epsilon >= 0:
            raise ConfigError(f"a cap must be >= 0, got {max_epsilon}")
        key = source if source is not None else DEFAULT_CAP_KEY
        row = {"max_epsilon": float(max_epsilon), "set_by": operator or default_operator(), "set_at": _now()}

        def write() -> None:
            with self._transaction() as conn:
                if conn.execute(select(caps.c.source).where(caps.c.source == key)).first() is None:
                    conn.execute(caps.insert().values(source=key, **row))
                else:
                    conn.execute(caps.update().where(caps.c.source == key).values(**row))

        self._retry(write)

    def cap(self, source: str) -> float | None:
        """The cap that applies to ``source`` (its own, else the default), or ``None``."""
        with self.engine.connect() as conn:
            return _cap(conn, source)

    # ----- totals -----------------------------------------------------------------------------------------------

    def total(self, source: str) -> SourceTotal:
        """Cumulative spend of one source."""
        with self.engine.connect() as conn:
            return _total(conn, source)

    def sources(self) -> list[SourceTotal]:
        """Cumulative spend of every source in the store."""
        with self.engine.connect() as conn:
            names = [r[0] for r in conn.execute(select(spends.c.source).distinct().order_by(spends.c.source))]
            return [_total(conn, name) for name in names]

    def rows(self, source: str | None = None) -> list[dict[str, Any]]:
        """Every stored spend (optionally of one source), oldest first."""
        query = select(spends).order_by(spends.c.id)
        if source is not None:
            query = query.where(spends.c.source == source)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def check_cap(self, source: str, additional_epsilon: float, *, fingerprint: str | None = None) -> None:
        """Refuse (before anything runs) a run planned to spend ``additional_epsilon`` past a cap.

        The source's own (or default) cap applies to its runs; with ``fingerprint``, the strictest cap of every
        name that corpus was recorded under also applies to all its runs, whatever they were called.
        """
        with self.engine.connect() as conn:
            _check(conn, source, fingerprint, additional_epsilon)

    # ----- recording --------------------------------------------------------------------------------------------

    def record(
        self,
        *,
        source: str,
        run_id: str,
        ledger: PrivacyLedger,
        fingerprint: str | None = None,
        operator: str | None = None,
    ) -> None:
        """Store every ledger entry not stored yet, refusing atomically if a cap would be passed.

        Entries already stored under ``run_id`` must be the same spends (source, stage, mechanism): a run id
        reused by another run or another source is refused with :class:`~privsynth.errors.IntegrityError`
        rather than silently skipped, so the store can never under-count.
        """
        who = operator or default_operator()

        def write() -> None:
            with self._transaction() as conn:
                stored = {int(r.seq): r for r in conn.execute(select(spends).where(spends.c.run_id == run_id)).all()}
                new = []
                for seq, entry in enumerate(ledger.entries):
                    if seq in stored:
                        _same_spend(stored[seq], source, run_id, seq, entry)
                    else:
                        new.append((seq, entry))
                extra = sorted(set(stored) - set(range(len(ledger.entries))))
                if extra:
                    raise IntegrityError(
                        f"the ledger store holds {len(extra)} more spend(s) under run '{run_id}' than this run's "
                        "ledger: the run id was used by another run. Use a new run id (each fit makes its own)."
                    )
                if not new:
                    return
                _check(conn, source, fingerprint, ledger.epsilon, exclude_run=run_id)
                conn.execute(
                    spends.insert(), [_row(source, fingerprint, run_id, seq, e, ledger, who) for seq, e in new]
                )

        try:
            self._retry(write)
        except RowConflict:  # a concurrent writer stored the same rows: check them against this ledger
            self._retry(write)

    def sink(self, *, source: str, run_id: str, fingerprint: str | None = None, operator: str | None = None) -> Any:
        """A ledger sink (see :meth:`PrivacyLedger.attach`) that stores each spend as it is made."""

        def _sink(ledger: PrivacyLedger, _: LedgerEntry) -> None:
            self.record(source=source, run_id=run_id, ledger=ledger, fingerprint=fingerprint, operator=operator)

        return _sink


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _upgrade(engine: Engine) -> None:
    """Add columns newer versions need to a store written by an older one (nothing is ever removed)."""
    columns = {c["name"] for c in inspect(engine).get_columns(spends.name)}
    if "fingerprint" not in columns:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {spends.name} ADD COLUMN fingerprint VARCHAR(128)"))


def _same_spend(row: Any, source: str, run_id: str, seq: int, entry: LedgerEntry) -> None:
    """Refuse when the stored row for (run, seq) is not this ledger entry."""
    mechanism = entry.mechanism
    same = (
        row.source == source
        and row.stage == entry.stage
        and abs(row.noise_multiplier - mechanism.noise_multiplier) <= 1e-12 * max(1.0, mechanism.noise_multiplier)
        and abs(row.sample_rate - mechanism.sample_rate) <= 1e-12
        and row.steps == mechanism.steps
    )
    if not same:
        raise IntegrityError(
            f"the ledger store already holds another spend as run '{run_id}' #{seq} (source '{row.source[:24]}', "
            f"stage {row.stage}); this ledger says source '{source[:24]}', stage {entry.stage}. A run id must "
            "never be reused: refusing rather than under-counting."
        )


def _check(
    conn: Connection, source: str, fingerprint: str | None, additional: float, *, exclude_run: str | None = None
) -> None:
    """Raise :class:`BudgetExceededError` when ``additional`` epsilon would pass the source's or corpus' cap."""
    total = _total(conn, source, exclude_run=exclude_run)
    if total.cap is not None and total.epsilon + additional > total.cap * (1 + 1e-9):
        raise BudgetExceededError(_cap_message(source, total, additional))
    if fingerprint is None:
        return
    names = {r[0] for r in conn.execute(select(spends.c.source).where(spends.c.fingerprint == fingerprint).distinct())}
    own = [c for c in (_own_cap(conn, name) for name in names | {source}) if c is not None]
    cap = min(own) if own else _cap(conn, fingerprint)
    corpus = _total(conn, fingerprint, exclude_run=exclude_run, column=spends.c.fingerprint)
    if cap is not None and corpus.epsilon + additional > cap * (1 + 1e-9):
        label = f"this corpus (recorded as {', '.join(sorted(n[:24] for n in names)) or source[:24]})"
        summary = SourceTotal(source, corpus.epsilon, corpus.delta, corpus.runs, cap)
        raise BudgetExceededError(_cap_message(label, summary, additional))


def _row(
    source: str,
    fingerprint: str | None,
    run_id: str,
    seq: int,
    entry: LedgerEntry,
    ledger: PrivacyLedger,
    who: str,
) -> dict[str, Any]:
    return {
        "source": source,
        "fingerprint": fingerprint,
        "run_id": run_id,
        "seq": seq,
        "stage": entry.stage,
        "noise_multiplier": entry.mechanism.noise_multiplier,
        "sample_rate": entry.mechanism.sample_rate,
        "steps": entry.mechanism.steps,
        "extra_delta": entry.extra_delta,
        "run_epsilon": entry.epsilon_after,
        "run_delta": ledger.target_delta,
        "accountant": ledger.accountant.value,
        "unit_of_privacy": ledger.unit_of_privacy,
        "operator": who,
        "created_at": entry.at,
        "note": entry.note,
    }


def _own_cap(conn: Connection, source: str) -> float | None:
    row = conn.execute(select(caps.c.max_epsilon).where(caps.c.source == source)).first()
    return float(row[0]) if row is not None else None


def _cap(conn: Connection, source: str) -> float | None:
    query = select(caps.c.source, caps.c.max_epsilon).where(caps.c.source.in_([source, DEFAULT_CAP_KEY]))
    rows = {str(r[0]): float(r[1]) for r in conn.execute(query)}
    if source in rows:
        return float(rows[source])
    return float(rows[DEFAULT_CAP_KEY]) if DEFAULT_CAP_KEY in rows else None


def _total(conn: Connection, source: str, *, exclude_run: str | None = None, column: Any = None) -> SourceTotal:
    key = spends.c.source if column is None else column
    per_run = (
        select(
            spends.c.run_id,
            func.max(spends.c.run_epsilon).label("eps"),
            func.max(spends.c.run_delta).label("delta"),
        )
        .where(key == source)
        .group_by(spends.c.run_id)
    )
    if exclude_run is not None:
        per_run = per_run.where(spends.c.run_id != exclude_run)
    runs = conn.execute(per_run).all()
    return SourceTotal(
        source=source,
        epsilon=float(sum(r.eps for r in runs)),
        delta=float(sum(r.delta for r in runs)),
        runs=len(runs),
        cap=_cap(conn, source),
    )


def _cap_message(source: str, total: SourceTotal, additional: float) -> str:
    what = source if source.startswith("this corpus") else f"source '{source[:24]}'"
    return (
        f"{what} has spent epsilon {total.epsilon:.3f} over {total.runs} run(s); this run needs "
        f"{additional:.3f} more, past the cap of {total.cap:.3f}. Ask your privacy officer "
        "('privsynth ledger cap') or lower --epsilon."
    )


def new_run_id() -> str:
    """A unique, sortable run id: UTC time plus 64 random bits (every fit gets its own; resumes keep theirs)."""
    return f"{_now().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(8)}"
