"""The SQLite ledger's file: its layout, what one transaction holds, what an event commits, and the checkpoints that
copy its WAL into it.

A SQLite ledger file written with an earlier layout (keyed tables with a rowid and audit/quarantine with
AUTOINCREMENT, up to 2026-12-01; every keyed table WITHOUT ROWID, 2026-12-02; results found by an event index beside
their key's, up to 2026-12-06) keeps working: ``CREATE TABLE IF NOT EXISTS`` leaves its tables as they are, and every
statement the ledger runs names its columns or reads them in the same order from any of the layouts."""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters import build_adapters
from shared.engine import Engine
from shared.ledger.port import ActionStatus, ClaimOutcome, QuarantineRecord
from shared.ledger.sqlite import _CHECKPOINT_EVERY, SqliteLedger
from shared.reactions import load_rules
from shared.settings import Settings
from tests.ledger.shipped import RULES, delivery, shipped_engine
from tests.ledger.test_conformance import LEASE, T0, entry, key, result

HOUR = timedelta(hours=1)


class Broken(Exception):
    pass


def broken_audit(*_: object) -> None:
    raise Broken


def commits(path: Path) -> int:
    """Transactions in the WAL so far: each ends with a commit frame (its "database size" field is set). Valid until
    the first checkpoint (the background one starts after ``_CHECKPOINT_EVERY`` commits)."""
    wal = Path(f"{path}-wal").read_bytes()
    page = int.from_bytes(wal[8:12], "big")
    frames = range(32, len(wal) - (24 + page) + 1, 24 + page)
    return sum(1 for at in frames if int.from_bytes(wal[at + 4:at + 8], "big"))

#: The tables as the ledger created them up to 2026-12-01.
BEFORE = """
CREATE TABLE events (
    key TEXT PRIMARY KEY, event_id TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT,
    lease_until TEXT, attempts INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE actions (
    key TEXT PRIMARY KEY, event_key TEXT NOT NULL, event_id TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, external_id TEXT, detail TEXT NOT NULL, url TEXT,
    updated_at TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}');
CREATE TABLE throttles (
    key TEXT PRIMARY KEY, holder TEXT NOT NULL, window_start TEXT NOT NULL, window_end TEXT NOT NULL,
    suppressed INTEGER NOT NULL);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event_key TEXT, event_id TEXT, event_type TEXT NOT NULL,
    subject TEXT NOT NULL, source TEXT NOT NULL, correlation_id TEXT NOT NULL, outcome TEXT NOT NULL,
    reason TEXT NOT NULL, reactions TEXT NOT NULL, actions TEXT NOT NULL);
CREATE TABLE quarantine (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event_key TEXT, event_id TEXT, reason TEXT NOT NULL,
    raw TEXT NOT NULL);
"""
#: 2026-12-02's: every keyed table WITHOUT ROWID, actions included (rows too large for that: see the schema).
ALL_WITHOUT_ROWID = re.sub(r"\);\n(?=CREATE TABLE (actions|throttles|audit))", ") WITHOUT ROWID;\n", BEFORE)
assert ALL_WITHOUT_ROWID.count("WITHOUT ROWID") == 3


#: Up to 2026-12-06: results keyed by their key, and found by event through an index of their own.
WITH_EVENT_INDEX = BEFORE + "CREATE INDEX actions_event ON actions(event_key);"


@pytest.mark.parametrize("layout", [BEFORE, ALL_WITHOUT_ROWID, WITH_EVENT_INDEX],
                         ids=["2026-12-01", "2026-12-02", "2026-12-06"])
def test_a_ledger_file_with_an_earlier_layout_claims_records_settles_and_audits(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(layout)
    ledger = SqliteLedger(path)

    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    ledger.record_action(result("a1", "e1"))
    assert ledger.acquire_throttle("w", key("e1"), timedelta(hours=1), T0).allowed
    assert ledger.settle_event(claim.record, "acted", T0, actions=[result("a2", "e1")], audit=entry("e1"))

    again = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    assert again.outcome is ClaimOutcome.DONE
    assert {k: a.status for k, a in again.actions.items()} == {"a1": ActionStatus.DONE, "a2": ActionStatus.DONE}
    assert [e.event_id for e in ledger.audit(event_id="e1")] == ["e1"]
    # The results keep their table's primary key; an event index beside it goes, the one on (event_id, key) serves.
    names = [name for name, _ in results_indexes(ledger)]
    assert "actions_event" not in names and "actions_key" in names
    ledger.close()


def test_a_new_ledger_file_keys_its_small_keyed_tables_without_a_rowid_and_its_actions_with_one(tmp_path: Path) -> None:
    """One b-tree per keyed table of small rows instead of two; action results, too large for that, are appended to
    a rowid table beside their key's index (fewer pages per commit both ways: benchmarks/throughput.py)."""
    SqliteLedger(tmp_path / "ledger.sqlite3").close()
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        sql = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())

    assert all("WITHOUT ROWID" in sql[name] for name in ("events", "throttles"))
    assert "WITHOUT ROWID" not in sql["actions"]
    assert "AUTOINCREMENT" not in sql["audit"] + sql["quarantine"]


def query_plan(ledger: SqliteLedger, query: str) -> str:
    """How SQLite runs ``query`` (``EXPLAIN QUERY PLAN``), its steps on one line."""
    return " ".join(str(row[3]) for row in ledger._db.execute("EXPLAIN QUERY PLAN " + query))


def results_indexes(ledger: SqliteLedger) -> list[tuple[str, tuple[str, ...]]]:
    names = [row[1] for row in ledger._db.execute("PRAGMA index_list(actions)")]
    return sorted((n, tuple(r[2] for r in ledger._db.execute(f"PRAGMA index_info({n})"))) for n in names)


def test_results_are_found_by_one_index_on_event_id_and_key_in_every_lookup(tmp_path: Path) -> None:
    """Each lookup knows the event, so one index serves them all: a key index and an event index beside it wrote
    one page more of a randomly keyed b-tree per result stored."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    ledger.start_action("a0", key("e1"), "e1", "r", "notify:channel", T0)
    ledger.record_action(result("a1", "e1"), result("a2", "e1"))
    ledger.settle_event(claim.record, None, T0, actions=[result("a3", "e1")])
    queries: list[str] = []
    ledger._db.set_trace_callback(queries.append)
    ledger.claim_event(key("e1"), "e1", T0, LEASE)
    ledger.start_action("a0", key("e1"), "e1", "r", "notify:channel", T0)
    ledger.get_action("a1", "e1")
    ledger._db.set_trace_callback(None)
    plans = [query_plan(ledger, q) for q in queries if " actions " in q and not q.startswith("INSERT")]
    indexes = results_indexes(ledger)
    ledger.close()

    assert indexes == [("actions_key", ("event_id", "key"))]
    assert len(plans) == 4 and all("actions_key" in plan and "SCAN" not in plan for plan in plans), plans


def test_a_chain_is_read_by_index_and_only_the_events_that_joined_one_are_in_the_chain_index(tmp_path: Path) -> None:
    """Most events start their own chain (their id is its correlation id) and are found by the event-id index: a
    full correlation index cost every audit entry one page more (an earlier file's is dropped on open)."""
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(BEFORE + "CREATE INDEX audit_correlation ON audit(correlation_id);")
    ledger = SqliteLedger(path)
    ledger.record_audit(entry("chain-1", correlation="chain-1"))
    ledger.record_audit(entry("e2", correlation="chain-1"))
    plans: list[str] = []
    ledger._db.set_trace_callback(plans.append)
    ledger.audit(correlation_id="chain-1")
    ledger._db.set_trace_callback(None)
    (query,) = plans
    plan = query_plan(ledger, query)
    indexes = dict(ledger._db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
    in_chain_index = ledger._db.execute("SELECT event_id FROM audit INDEXED BY audit_chained WHERE "
                                        "correlation_id = 'chain-1' AND correlation_id IS NOT event_id").fetchall()
    ledger.close()

    assert "audit_correlation" not in indexes and "WHERE correlation_id IS NOT event_id" in indexes["audit_chained"]
    assert in_chain_index == [("e2",)]
    assert "SCAN audit" not in plan and "audit_event" in plan and "audit_chained" in plan, plan


def test_the_wal_is_copied_into_the_file_in_the_background_and_close_stops_that(tmp_path: Path) -> None:
    """Without the background pass the file would stay at its first pages until the backstop (16,000 WAL pages)."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    start = path.stat().st_size
    for n in range(2 * _CHECKPOINT_EVERY):
        ledger.claim_event(key(f"e{n}"), f"e{n}", T0, LEASE)

    deadline = time.monotonic() + 10
    while path.stat().st_size <= start and time.monotonic() < deadline:
        time.sleep(0.05)
    thread = ledger._checkpointer._thread
    ledger.close()

    assert path.stat().st_size > start
    assert thread is not None and not thread.is_alive()
    reopened = SqliteLedger(path)
    assert reopened.claim_event(key("e0"), "e0", T0, LEASE).outcome is ClaimOutcome.BUSY
    reopened.close()


def test_a_short_lived_ledger_starts_no_checkpoint_thread(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert ledger._checkpointer._thread is None
    ledger.close()


def test_a_quarantine_record_and_the_events_outcome_are_one_transaction(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SqliteLedger, "_put_audit", staticmethod(broken_audit))
        with pytest.raises(Broken):
            ledger.settle_event(claim.record, "quarantined", T0, audit=entry("e1"),
                                quarantine=QuarantineRecord(T0, key("e1"), "e1", "why", "{}"))

    assert ledger.quarantined() == []  # rolled back with the outcome: the redelivery quarantines it once
    assert ledger.claim_event(key("e1"), "e1", T0 + LEASE, LEASE).outcome is ClaimOutcome.RESUMED


def test_the_calls_inside_together_are_one_transaction_and_a_failed_one_is_undone_alone(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger, other = SqliteLedger(path), sqlite3.connect(path)
    before = commits(path)
    with ledger.together():
        claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)
        assert ledger.acquire_throttle("w", key("e1"), HOUR, T0).allowed
        with pytest.MonkeyPatch.context() as patch, pytest.raises(Broken):
            patch.setattr(SqliteLedger, "_put_audit", staticmethod(broken_audit))
            ledger.settle_event(claim.record, "acted", T0, actions=[result("a1", "e1")], audit=entry("e1"))
        assert other.execute("SELECT count(*) FROM events").fetchone() == (0,), "nothing is seen before the end"

    assert commits(path) == before + 1
    assert other.execute("SELECT key, status FROM events").fetchall() == [(key("e1"), "in_progress")]
    assert ledger.get_action("a1", "e1") is None, "the failed settle was undone, the claim and the window kept"
    assert not ledger.acquire_throttle("w", key("e2"), HOUR, T0).allowed
    other.close()
    ledger.close()


def test_an_error_out_of_together_undoes_all_of_it(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    with pytest.raises(Broken), ledger.together():
        ledger.claim_event(key("e1"), "e1", T0, LEASE)
        ledger.acquire_throttle("w", key("e1"), HOUR, T0)
        with ledger.together():  # nested: joins
            ledger.acquire_throttle("w2", key("e1"), HOUR, T0)
        raise Broken

    assert ledger.claim_event(key("e1"), "e1", T0, LEASE).outcome is ClaimOutcome.CLAIMED
    assert ledger.acquire_throttle("w", key("e2"), HOUR, T0).allowed
    assert ledger.acquire_throttle("w2", key("e2"), HOUR, T0).allowed
    ledger.close()


@pytest.mark.parametrize(("kind", "outcome", "expected"), [
    # the claim with its once_per window; tag_model's result before run_pipeline starts; the settle
    ("model_registered", "acted", 3),
    ("run_completed", "ignored", 1),  # no rule fires, nothing runs: the claim and the outcome in one commit
    ("unparseable", "quarantined", 1),  # claimed by its content and quarantined in one commit
])
def test_what_an_event_of_the_shipped_rules_commits(tmp_path: Path, kind: str, outcome: str, expected: int) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    engine = shipped_engine(ledger, tmp_path / "effects.log")
    before = commits(path)
    (first,) = engine.handle_delivery(delivery(kind, 1))
    after_first = commits(path)
    (again,) = engine.handle_delivery(delivery(kind, 1))

    assert (first.outcome.value, again.outcome.value) == (outcome, "duplicate")
    assert after_first - before == expected
    assert commits(path) == after_first, "a duplicate is answered from a read: it commits nothing"
    ledger.close()


def test_on_a_dry_run_an_events_results_are_stored_with_its_outcome(tmp_path: Path) -> None:
    """No dry-run result records an effect, so none is written before the next action starts: a ModelRegistered
    (tag_model, then run_pipeline) commits its claim with the once_per window, then both results with the outcome."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    rules = load_rules(RULES)
    engine = Engine(rules, ledger, build_adapters(Settings(dry_run=True), rules, ledger))
    before = commits(path)

    (outcome,) = engine.handle_delivery(delivery("model_registered", 1))

    assert [a.status for a in outcome.actions] == ["done", "done"]
    assert commits(path) - before == 2
    ledger.close()
    with sqlite3.connect(path) as db:
        stored = sorted(db.execute("SELECT kind, status FROM actions"))
    assert stored == [("run_pipeline", "done"), ("tag_model", "done")]
