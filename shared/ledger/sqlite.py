"""The embedded ledger: one SQLite file in WAL mode, safe for several processes on one machine.

Every state change is a single ``BEGIN IMMEDIATE`` transaction (a write lock taken up front), so a claim is
read-then-write atomically across processes; ``busy_timeout`` makes a second writer wait instead of failing. A change
that is one statement (a fresh claim or window: insert-if-absent; one result; an audit entry) runs on its own, in
autocommit: as atomic, with a third of the statements (``benchmarks/throughput.py``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from shared.errors import TransientError
from shared.jsontext import dumps
from shared.ledger.port import (
    ActionRecord,
    ActionStatus,
    AuditEntry,
    ClaimOutcome,
    ClaimResult,
    EventRecord,
    EventStatus,
    PurgeProgress,
    QuarantineRecord,
    ReleaseRecord,
    ReleaseState,
    ThrottleDecision,
    release_lookup_key,
)

log = logging.getLogger("mlreactor.ledger")

#: Every commit writes each page it dirtied to the WAL, so the tables written per event dirty few pages: events and
#: throttles (small rows) are WITHOUT ROWID (the key is the table, not a second index beside it); actions are not —
#: a result (detail and data, ~0.5-1 KB) is too large to sit in a key's b-tree (SQLite's guidance: rows under ~1/20
#: of a page), where it split leaves and spilled into overflow pages: 6.7 WAL pages per result write, 5.5 appended
#: to a rowid table (benchmarks/throughput.py: ~13 % less time an event). Every lookup of a result knows its event
#: (a claim reads the event's results; a result is put, started or read beside its event, as the port asks), so one
#: unique index on (event_id, key) serves them all, where a key index and an event index beside it wrote one more
#: page of a randomly keyed b-tree per result. audit/quarantine number their rows without AUTOINCREMENT (no
#: sqlite_sequence page per insert; the purge deletes the oldest rows, so a number is not reused while a newer row
#: exists). The chain index holds only the entries of events that joined a chain: a chain's first event (most events)
#: has its own id as correlation id and is found by ``audit_event`` — one index page fewer per entry. A file made
#: with an earlier layout works unchanged (tests/ledger/test_sqlite_file.py): on open it loses its full correlation
#: index and its results' event index (the new unique index takes that role; its results keep their key index, the
#: primary key of their table then).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key TEXT PRIMARY KEY, event_id TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT,
    lease_until TEXT, attempts INTEGER NOT NULL, updated_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS actions (
    key TEXT NOT NULL, event_key TEXT NOT NULL, event_id TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, external_id TEXT, detail TEXT NOT NULL, url TEXT,
    updated_at TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}');
CREATE UNIQUE INDEX IF NOT EXISTS actions_key ON actions(event_id, key);
DROP INDEX IF EXISTS actions_event;
CREATE TABLE IF NOT EXISTS throttles (
    key TEXT PRIMARY KEY, holder TEXT NOT NULL, window_start TEXT NOT NULL, window_end TEXT NOT NULL,
    suppressed INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, event_key TEXT, event_id TEXT, event_type TEXT NOT NULL,
    subject TEXT NOT NULL, source TEXT NOT NULL, correlation_id TEXT NOT NULL, outcome TEXT NOT NULL,
    reason TEXT NOT NULL, reactions TEXT NOT NULL, actions TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_event ON audit(event_id);
DROP INDEX IF EXISTS audit_correlation;
CREATE INDEX IF NOT EXISTS audit_chained ON audit(correlation_id) WHERE correlation_id IS NOT event_id;
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, event_key TEXT, event_id TEXT, reason TEXT NOT NULL,
    raw TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS releases (
    key TEXT PRIMARY KEY, target TEXT NOT NULL, scope TEXT NOT NULL, release_id TEXT NOT NULL, model TEXT NOT NULL,
    version TEXT NOT NULL, correlation_id TEXT NOT NULL, workspace TEXT NOT NULL, queued_at TEXT NOT NULL,
    project TEXT NOT NULL, definition TEXT NOT NULL, environment TEXT NOT NULL, url TEXT NOT NULL,
    release_key TEXT NOT NULL, state TEXT NOT NULL, waiting_since TEXT, checked_at TEXT, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS releases_pending ON releases(state, checked_at);
"""


_INSERT_EVENT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING"
_PUT_ACTION = (
    "INSERT INTO actions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id, key) DO UPDATE SET "
    "status = excluded.status, external_id = excluded.external_id, detail = excluded.detail, "
    "url = excluded.url, updated_at = excluded.updated_at, data = excluded.data WHERE actions.status != ?"
)
_INSERT_AUDIT = (
    "INSERT INTO audit (at, event_key, event_id, event_type, subject, source, correlation_id, outcome,"
    " reason, reactions, actions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_INSERT_QUARANTINE = "INSERT INTO quarantine (at, event_key, event_id, reason, raw) VALUES (?, ?, ?, ?, ?)"


def _action_args(r: ActionRecord) -> tuple[Any, ...]:
    return (r.key, r.event_key, r.event_id, r.rule, r.kind, r.status, r.attempts, r.external_id, r.detail, r.url,
            _ts(r.updated_at), dumps(r.data), ActionStatus.DONE)


def _audit_args(entry: AuditEntry) -> tuple[Any, ...]:
    return (
        _ts(entry.at), entry.event_key, entry.event_id, entry.event_type, entry.subject, entry.source,
        entry.correlation_id, entry.outcome, entry.reason, dumps(entry.reactions),
        dumps(entry.actions),
    )


def _quarantine_args(record: QuarantineRecord) -> tuple[Any, ...]:
    return _ts(record.at), record.event_key, record.event_id, record.reason, record.raw


def _ts(value: datetime) -> str:
    return (value if value.tzinfo is UTC else value.astimezone(UTC)).isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class SqliteLedger:
    """``Ledger`` on SQLite. ``path`` is a file; its folder is created."""

    def __init__(self, path: Path, *, timeout: timedelta = timedelta(seconds=10)) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=timeout.total_seconds(), isolation_level=None, check_same_thread=False
            )
            self._setup(time.monotonic() + timeout.total_seconds())
        except (OSError, sqlite3.Error) as exc:
            raise OSError(f"cannot open the SQLite ledger at {path}: {exc}") from exc
        self._lock = threading.RLock()  # re-entered by the calls inside ``together``, on its thread
        self._joined = False  # inside ``together``: every write joins its transaction
        self._checkpointer = _Checkpointer(path, timeout)

    def _setup(self, deadline: float) -> None:
        """WAL mode and schema. Processes opening a new file at once may meet "database is locked" even within the
        busy timeout (switching to WAL takes an exclusive lock without waiting): try again until the deadline."""
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; fsync at checkpoints
                # Checkpoints run in the background (_Checkpointer); this one is the backstop should it fall behind.
                self._db.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def together(self) -> Iterator[None]:
        """The calls inside as one transaction, one commit (a claim and the windows its rules open). The lock is
        held throughout, so only this thread's calls join; a call that fails is undone alone (a savepoint), and
        what the caller does with its error decides the rest. Nested, it joins the outer one."""
        with self._lock:
            if self._joined:
                yield
                return
            with self._tx():
                self._joined = True
                try:
                    yield
                finally:
                    self._joined = False

    def _tx(self) -> _Write:
        return _Write(self)

    def _one(self, sql: str, args: tuple[Any, ...]) -> int:
        """One statement, its own transaction (or the one ``together`` holds); the number of rows it changed."""
        with self._lock:
            try:
                changed = self._db.execute(sql, args).rowcount
                if not self._joined:
                    self._checkpointer.committed()
                return changed
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise TransientError(f"the SQLite ledger is busy: {exc}") from exc
                raise

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # events ---------------------------------------------------------------------------------------------------
    def claim_event(self, key: str, event_id: str, now: datetime, lease: timedelta) -> ClaimResult:
        fresh = (key, event_id, EventStatus.IN_PROGRESS.value, None, _ts(now + lease), 1, _ts(now))
        if self._one(_INSERT_EVENT, fresh):
            return ClaimResult(ClaimOutcome.CLAIMED, _event_record(fresh))
        with self._lock:  # a finished event's redelivery: read, no write transaction
            row = self._db.execute("SELECT * FROM events WHERE key = ?", (key,)).fetchone()
            if row is not None and row[2] == EventStatus.DONE:
                return ClaimResult(ClaimOutcome.DONE, _event_record(row), self._actions(self._db, key, event_id))
        with self._tx() as db:
            row = db.execute("SELECT * FROM events WHERE key = ?", (key,)).fetchone()
            if row is None:  # purged since the insert met it
                db.execute(_INSERT_EVENT, fresh)
                return ClaimResult(ClaimOutcome.CLAIMED, _event_record(fresh))
            record = _event_record(row)
            if record.status is EventStatus.DONE:
                return ClaimResult(ClaimOutcome.DONE, record, self._actions(db, key, event_id))
            if record.status is EventStatus.IN_PROGRESS and record.lease_until and record.lease_until > now:
                return ClaimResult(ClaimOutcome.BUSY, record)
            db.execute(
                "UPDATE events SET status = ?, lease_until = ?, attempts = attempts + 1, updated_at = ? WHERE key = ?",
                (EventStatus.IN_PROGRESS, fresh[4], _ts(now), key),
            )
            return ClaimResult(ClaimOutcome.RESUMED, self._event(db, key), self._actions(db, key, event_id))

    @staticmethod
    def _event(db: sqlite3.Connection, key: str) -> EventRecord:
        return _event_record(db.execute("SELECT * FROM events WHERE key = ?", (key,)).fetchone())

    @staticmethod
    def _actions(db: sqlite3.Connection, event_key: str, event_id: str) -> dict[str, ActionRecord]:
        """The results stored beside the event (its id; the key tells apart events of two sources that share it)."""
        rows = db.execute("SELECT * FROM actions WHERE event_id = ? AND event_key = ?", (event_id, event_key))
        return {row[0]: _action_record(row) for row in rows}

    def settle_event(
        self,
        claim: EventRecord,
        outcome: str | None,
        now: datetime,
        *,
        actions: Sequence[ActionRecord] = (),
        audit: AuditEntry | None = None,
        quarantine: QuarantineRecord | None = None,
    ) -> bool:
        # ``attempts`` counts claims, so (key, attempts) is this claim's version: a takeover bumps it.
        status = EventStatus.RELEASED if outcome is None else EventStatus.DONE
        with self._tx() as db:
            if quarantine is not None:
                db.execute(_INSERT_QUARANTINE, _quarantine_args(quarantine))
            for record in actions:
                self._put_action(db, record)
            cursor = db.execute(
                "UPDATE events SET status = ?, outcome = COALESCE(?, outcome), lease_until = NULL, updated_at = ? "
                "WHERE key = ? AND attempts = ?",
                (status, outcome, _ts(now), claim.key, int(claim.version)),
            )
            if audit is not None:
                self._put_audit(db, audit)
            return cursor.rowcount == 1

    def renew_event(self, claim: EventRecord, now: datetime, lease: timedelta) -> EventRecord | None:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE events SET lease_until = ?, updated_at = ? WHERE key = ? AND attempts = ? AND status = ?",
                (_ts(now + lease), _ts(now), claim.key, int(claim.version), EventStatus.IN_PROGRESS),
            )
            return self._event(db, claim.key) if cursor.rowcount == 1 else None

    def reopen_event(self, key: str, event_id: str, now: datetime) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE events SET status = ?, lease_until = NULL, updated_at = ? WHERE key = ? AND status = ?",
                (EventStatus.RELEASED, _ts(now), key, EventStatus.DONE),
            )
            return cursor.rowcount == 1

    # actions --------------------------------------------------------------------------------------------------
    def record_action(self, *records: ActionRecord) -> None:
        if len(records) == 1:
            self._one(_PUT_ACTION, _action_args(records[0]))
            return
        with self._tx() as db:
            for record in records:
                self._put_action(db, record)

    def get_action(self, key: str, event_id: str) -> ActionRecord | None:
        rows = self._read("SELECT * FROM actions WHERE event_id = ? AND key = ?", (event_id, key))
        return _action_record(rows[0]) if rows else None

    def start_action(
        self, key: str, event_key: str, event_id: str, rule: str, kind: str, now: datetime
    ) -> ActionRecord:
        with self._tx() as db:
            db.execute(
                "INSERT INTO actions VALUES (?, ?, ?, ?, ?, ?, 0, NULL, '', NULL, ?, '{}') "
                "ON CONFLICT(event_id, key) DO NOTHING",
                (key, event_key, event_id, rule, kind, ActionStatus.STARTED, _ts(now)),
            )
            db.execute(
                "UPDATE actions SET attempts = attempts + 1, updated_at = ? "
                "WHERE event_id = ? AND key = ? AND status != ?",
                (_ts(now), event_id, key, ActionStatus.DONE),
            )
            found = db.execute("SELECT * FROM actions WHERE event_id = ? AND key = ?", (event_id, key)).fetchone()
            return _action_record(found)

    @staticmethod
    def _put_action(db: sqlite3.Connection, r: ActionRecord) -> None:
        db.execute(_PUT_ACTION, _action_args(r))

    # throttles ------------------------------------------------------------------------------------------------
    def acquire_throttle(self, key: str, holder: str, window: timedelta, now: datetime) -> ThrottleDecision:
        opened = (key, holder, _ts(now), _ts(now + window))
        if self._one("INSERT INTO throttles VALUES (?, ?, ?, ?, 0) ON CONFLICT(key) DO NOTHING", opened):
            return ThrottleDecision(True, 0, now)  # a new window: most are
        with self._tx() as db:
            row = db.execute(
                "SELECT holder, window_start, window_end, suppressed FROM throttles WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                current_holder, start, end, suppressed = row[0], _dt(row[1]), _dt(row[2]), row[3]
                assert start is not None and end is not None
                if current_holder == holder:
                    return ThrottleDecision(True, 0, start)
                if end > now:
                    db.execute("UPDATE throttles SET suppressed = suppressed + 1 WHERE key = ?", (key,))
                    return ThrottleDecision(False, suppressed + 1, start)
            previous = row[3] if row is not None else 0
            db.execute(
                "INSERT INTO throttles VALUES (?, ?, ?, ?, 0) ON CONFLICT(key) DO UPDATE SET holder = excluded.holder,"
                " window_start = excluded.window_start, window_end = excluded.window_end, suppressed = 0",
                opened,
            )
            return ThrottleDecision(True, previous, now)

    # quarantine and audit -------------------------------------------------------------------------------------
    def quarantine(self, record: QuarantineRecord) -> None:
        self._one(_INSERT_QUARANTINE, _quarantine_args(record))

    def quarantined(self, since: datetime | None = None) -> list[QuarantineRecord]:
        rows = self._read(
            "SELECT at, event_key, event_id, reason, raw FROM quarantine WHERE at >= ? ORDER BY at, seq",
            (_ts(since) if since else "",),
        )
        return [QuarantineRecord(at=_dt(r[0]) or datetime.min, event_key=r[1], event_id=r[2], reason=r[3], raw=r[4])
                for r in rows]

    def record_audit(self, entry: AuditEntry) -> None:
        self._one(_INSERT_AUDIT, _audit_args(entry))

    @staticmethod
    def _put_audit(db: sqlite3.Connection, entry: AuditEntry) -> None:
        db.execute(_INSERT_AUDIT, _audit_args(entry))

    def audit(
        self,
        *,
        event_id: str | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[AuditEntry]:
        clauses, args = [], []
        if event_id is not None:
            clauses.append("event_id = ?")
            args.append(event_id)
        if correlation_id is not None:  # the chain's first event by its id (it is the chain's), the rest: audit_chained
            clauses.append(
                "(event_id = ? AND correlation_id = ? OR correlation_id = ? AND correlation_id IS NOT event_id)"
            )
            args += [correlation_id] * 3
        if since is not None:
            clauses.append("at >= ?")
            args.append(_ts(since))
        # Only the constant clauses above are joined into the SQL; every value is a bound parameter.
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = "at, event_key, event_id, event_type, subject, source, correlation_id, outcome, reason, reactions, " \
            "actions"
        sql = f"SELECT {columns} FROM audit {where} ORDER BY at DESC, seq DESC LIMIT ?"  # noqa: S608
        rows = self._read(sql, (*args, limit))
        return [
            AuditEntry(
                at=_dt(r[0]) or datetime.min, event_key=r[1], event_id=r[2], event_type=r[3], subject=r[4],
                source=r[5], correlation_id=r[6], outcome=r[7], reason=r[8], reactions=json.loads(r[9]),
                actions=json.loads(r[10]),
            )
            for r in rows
        ]

    def purge(self, before: datetime, *, budget: timedelta | None = None) -> PurgeProgress:
        """One transaction on a local file, quick at any scale the embedded ledger serves: ``budget`` is not needed."""
        cutoff = _ts(before)
        statements = (
            "DELETE FROM events WHERE updated_at < ?",
            "DELETE FROM actions WHERE updated_at < ?",
            "DELETE FROM throttles WHERE window_end < ?",
            "DELETE FROM audit WHERE at < ?",
            "DELETE FROM quarantine WHERE at < ?",
            "DELETE FROM releases WHERE updated_at < ?",
        )
        with self._tx() as db:
            return PurgeProgress(sum(db.execute(sql, (cutoff,)).rowcount for sql in statements), True)

    # releases -------------------------------------------------------------------------------------------------
    def track_release(self, record: ReleaseRecord) -> bool:
        r = record
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO NOTHING",
                (r.key, r.target, r.scope.lower(), r.release_id, r.model, r.version, r.correlation_id, r.workspace,
                 _ts(r.queued_at), r.project, r.definition, r.environment, r.url, r.release_key, r.state.value,
                 _ts(r.waiting_since) if r.waiting_since else None, _ts(r.checked_at) if r.checked_at else None,
                 _ts(r.updated_at or r.queued_at)),
            )
            return cursor.rowcount == 1

    def find_release(self, target: str, scope: str, release_id: str) -> ReleaseRecord | None:
        key = release_lookup_key(target, scope, release_id)
        rows = self._read("SELECT * FROM releases WHERE key = ?", (key,))
        return _release_record(rows[0]) if rows else None

    def advance_release(
        self, key: str, state: ReleaseState, now: datetime, *, waiting_since: datetime | None = None
    ) -> bool:
        with self._tx() as db:
            row = db.execute("SELECT state FROM releases WHERE key = ?", (key,)).fetchone()
            if row is None:
                return False
            moved = ReleaseState(row[0]).may_become(state)
            if moved:
                db.execute(
                    "UPDATE releases SET state = ?, waiting_since = COALESCE(waiting_since, ?), checked_at = ?, "
                    "updated_at = ? WHERE key = ?",
                    (state.value, _ts(waiting_since) if waiting_since else None, _ts(now), _ts(now), key),
                )
            else:
                db.execute(
                    "UPDATE releases SET checked_at = ?, updated_at = ? WHERE key = ?", (_ts(now), _ts(now), key)
                )
            return moved

    def pending_releases(self, limit: int) -> list[ReleaseRecord]:
        rows = self._read(
            "SELECT * FROM releases WHERE state IN (?, ?, ?) ORDER BY COALESCE(checked_at, ''), queued_at LIMIT ?",
            (*(s.value for s in ReleaseState if not s.terminal), limit),
        )
        return [_release_record(row) for row in rows]

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()


class _Write:
    """One write under the ledger's lock: its own transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), or inside
    ``together`` a savepoint of the transaction held there, undone alone if it fails. A class rather than a
    ``@contextmanager`` generator: several are entered an event, and a generator's set-up and tear-down cost about
    as much as the statements some of them wrap."""

    __slots__ = ("_ledger", "_nested")

    def __init__(self, ledger: SqliteLedger) -> None:
        self._ledger = ledger
        self._nested = False

    def __enter__(self) -> sqlite3.Connection:
        ledger = self._ledger
        ledger._lock.acquire()
        try:
            self._nested = ledger._joined
            ledger._db.execute("SAVEPOINT joined" if self._nested else "BEGIN IMMEDIATE")
        except BaseException as exc:
            ledger._lock.release()
            if isinstance(exc, sqlite3.OperationalError):  # locked past busy_timeout
                raise TransientError(f"the SQLite ledger is busy: {exc}") from exc
            raise
        return ledger._db

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        ledger, db = self._ledger, self._ledger._db
        try:
            if self._nested:
                if exc_type is not None:
                    db.execute("ROLLBACK TO joined")
                db.execute("RELEASE joined")
            elif exc_type is not None:
                db.execute("ROLLBACK")
            else:
                try:
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # a failed commit leaves the transaction open: the next write would fail
                        db.execute("ROLLBACK")
                    raise
                ledger._checkpointer.committed()
        finally:
            ledger._lock.release()


#: Commits between background checkpoints (a few pages each: about SQLite's own 1,000-page threshold), and the WAL
#: size in pages at which a writer checkpoints itself if the background thread has fallen behind (~64 MB).
_CHECKPOINT_EVERY = 256
_BACKSTOP_PAGES = 16_000


class _Checkpointer:
    """Copies the WAL into the database file from a thread of its own, so no event waits for a checkpoint's writes
    and fsync (they were the engine's p99.9, tens of ms, on the event that crossed the threshold).

    PASSIVE: it takes no lock a writer needs and leaves frames a reader still uses for the next pass; a writer
    restarts the WAL from its beginning once all of it is copied, so the file stays small. Started by the
    ``_CHECKPOINT_EVERY``-th commit, so a short-lived ledger (a CLI query, a test) never starts it.
    """

    def __init__(self, path: Path, timeout: timedelta) -> None:
        self._path = path
        self._timeout = timeout.total_seconds()
        self._commits = 0
        self._due = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def committed(self) -> None:
        """Called under the ledger's lock after each commit."""
        self._commits += 1
        if self._commits % _CHECKPOINT_EVERY:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlreactor-sqlite-checkpoint", daemon=True)
            self._thread.start()
        self._due.set()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopped:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # the backstop checkpoints instead; the next pass tries again
                    log.warning("background checkpoint of %s failed: %s", self._path, exc)
        finally:
            db.close()

    def close(self) -> None:
        self._stopped = True
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout)


def _release_record(row: tuple[Any, ...]) -> ReleaseRecord:
    """A row of ``releases``, columns in schema order."""
    queued = _dt(row[8])
    assert queued is not None
    return ReleaseRecord(
        target=row[1], scope=row[2], release_id=row[3], model=row[4], version=row[5], correlation_id=row[6],
        workspace=row[7], queued_at=queued, project=row[9], definition=row[10], environment=row[11], url=row[12],
        release_key=row[13], state=ReleaseState(row[14]), waiting_since=_dt(row[15]), checked_at=_dt(row[16]),
        updated_at=_dt(row[17]),
    )


def _event_record(row: tuple[Any, ...]) -> EventRecord:
    return EventRecord(
        key=row[0], event_id=row[1], status=EventStatus(row[2]), outcome=row[3], lease_until=_dt(row[4]),
        attempts=row[5], updated_at=_dt(row[6]) or datetime.min, version=str(row[5]),
    )


def _action_record(row: tuple[Any, ...]) -> ActionRecord:
    return ActionRecord(
        key=row[0], event_key=row[1], event_id=row[2], rule=row[3], kind=row[4], status=ActionStatus(row[5]),
        attempts=row[6], external_id=row[7], detail=row[8], url=row[9], updated_at=_dt(row[10]) or datetime.min,
        data=json.loads(row[11]),
    )
