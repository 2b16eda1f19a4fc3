"""The persistent ledger store: every spend on every source corpus, across runs, in one database.

SQLite by default (a file under the working directory); any SQLAlchemy URL for a team's shared database. One row
per spend: the source's fingerprint, the run, the stage, the mechanism, the run's composed (epsilon, delta) after
it, the time and the operator. A per-source cap on cumulative epsilon (set by a privacy officer, stored in the
same database) refuses spends that would pass it.

Cumulative spend of a source is the sum over runs of each run's composed epsilon and delta (basic composition
across runs: always valid, whatever each run's accountant was).

Writers serialise on the database: SQLite transactions start with ``BEGIN IMMEDIATE`` (the write lock is taken
before the cap is read), other databases run at SERIALIZABLE isolation and retry conflicts. Re-recording an
entry already stored (same run and sequence number) is a no-op, so a resumed run never counts twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
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
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from privsynth.errors import BudgetExceededError, ConfigError
from privsynth.privacy.ledger import LedgerEntry, PrivacyLedger

DEFAULT_STORE = Path(".privsynth") / "ledger.sqlite"
DEFAULT_CAP_KEY = "*"

_metadata = MetaData()
spends = Table(
    "privsynth_spends",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False, index=True),
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
    """An SQLAlchemy URL from a URL or a file path (default: ``.privsynth/ledger.sqlite``)."""
    if location is None:
        location = DEFAULT_STORE
    text = str(location)
    if "://" in text:
        return text
    path = Path(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


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
        """The SQLAlchemy engine, created (and the tables with it) on first use."""
        if self._engine is None:
            self._engine = self._create_engine()
            _metadata.create_all(self._engine)
        return self._engine

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

    def check_cap(self, source: str, additional_epsilon: float) -> None:
        """Refuse (before anything runs) a run planned to spend ``additional_epsilon`` past the source's cap."""
        total = self.total(source)
        if total.cap is not None and total.epsilon + additional_epsilon > total.cap * (1 + 1e-9):
            raise BudgetExceededError(_cap_message(source, total, additional_epsilon))

    # ----- recording --------------------------------------------------------------------------------------------

    def record(self, *, source: str, run_id: str, ledger: PrivacyLedger, operator: str | None = None) -> None:
        """Store every ledger entry not stored yet, refusing atomically if the source's cap would be passed."""
        who = operator or default_operator()

        def write() -> None:
            with self._transaction() as conn:
                stored = {r[0] for r in conn.execute(select(spends.c.seq).where(spends.c.run_id == run_id))}
                new = [(seq, e) for seq, e in enumerate(ledger.entries) if seq not in stored]
                if not new:
                    return
                total = _total(conn, source, exclude_run=run_id)
                if total.cap is not None and total.epsilon + ledger.epsilon > total.cap * (1 + 1e-9):
                    raise BudgetExceededError(_cap_message(source, total, ledger.epsilon))
                conn.execute(spends.insert(), [_row(source, run_id, seq, e, ledger, who) for seq, e in new])

        # IntegrityError: a concurrent writer stored the same (run, seq); nothing is lost or doubled.
        with contextlib.suppress(IntegrityError):
            self._retry(write)

    def sink(self, *, source: str, run_id: str, operator: str | None = None) -> Any:
        """A ledger sink (see :meth:`PrivacyLedger.attach`) that stores each spend as it is made."""

        def _sink(ledger: PrivacyLedger, _: LedgerEntry) -> None:
            self.record(source=source, run_id=run_id, ledger=ledger, operator=operator)

        return _sink


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _row(source: str, run_id: str, seq: int, entry: LedgerEntry, ledger: PrivacyLedger, who: str) -> dict[str, Any]:
    return {
        "source": source,
        "run_id": run_id,
        "seq": seq,
        "stage": entry.stage.value,
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


def _cap(conn: Connection, source: str) -> float | None:
    query = select(caps.c.source, caps.c.max_epsilon).where(caps.c.source.in_([source, DEFAULT_CAP_KEY]))
    rows = {str(r[0]): float(r[1]) for r in conn.execute(query)}
    if source in rows:
        return float(rows[source])
    return float(rows[DEFAULT_CAP_KEY]) if DEFAULT_CAP_KEY in rows else None


def _total(conn: Connection, source: str, *, exclude_run: str | None = None) -> SourceTotal:
    per_run = (
        select(
            spends.c.run_id,
            func.max(spends.c.run_epsilon).label("eps"),
            func.max(spends.c.run_delta).label("delta"),
        )
        .where(spends.c.source == source)
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
    return (
        f"source '{source[:16]}' has spent epsilon {total.epsilon:.3f} over {total.runs} run(s); this run needs "
        f"{additional:.3f} more, past the cap of {total.cap:.3f}. Ask your privacy officer "
        "('privsynth ledger cap') or lower --epsilon."
    )


def new_run_id() -> str:
    """A unique, sortable run id: UTC time plus random hex."""
    import uuid

    return f"{_now().strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
