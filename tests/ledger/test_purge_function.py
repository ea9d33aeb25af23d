"""The retention timer: what the host indexes, and that it purges what the retention says on the chosen ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.functions.timer import TimerRequest

from functions.ops import purge_expired, purge_ledger
from shared.clock import SystemClock
from shared.ledger import open_ledger
from shared.ledger.port import Ledger, QuarantineRecord
from shared.settings import Settings, get_settings
from tests.ledger.test_conformance import LEASE, entry, key

ROOT = Path(__file__).resolve().parent.parent.parent


def seed(ledger: Ledger, name: str, age: timedelta) -> None:
    """One settled event with its audit entry and a quarantine record, last touched ``age`` ago."""
    when = SystemClock().now() - age
    claim = ledger.claim_event(key(name), name, when, LEASE)
    ledger.settle_event(claim.record, "quarantined", when, audit=entry(name, "quarantined", when, f"chain-{name}"))
    ledger.quarantine(QuarantineRecord(when, key(name), name, "bad", "{}"))


def in_fresh_interpreter(code: str) -> str:
    """Run ``code`` as the worker would, in an interpreter of its own (an app is indexed once per process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_given_the_app_when_indexed_then_purge_ledger_is_an_hourly_timer() -> None:
    out = in_fresh_interpreter(
        "import function_app; functions = {f.get_function_name(): f for f in function_app.app.get_functions()}; "
        "print(functions['purge_ledger'].get_function_json())"
    )
    bindings = json.loads(out)["bindings"]

    assert bindings == [{
        "name": "timer", "type": "timerTrigger", "direction": "IN", "schedule": "0 30 * * * *",
        "runOnStartup": False, "useMonitor": True,
    }]


@pytest.mark.azurite
def test_given_records_older_than_the_retention_on_tables_when_purged_then_only_they_go(azurite: object) -> None:
    from tests.ledger.conftest import tables_settings

    settings = tables_settings(azurite, retention_days=30)  # type: ignore[arg-type]
    ledger = open_ledger(settings)
    seed(ledger, "old", timedelta(days=31))
    seed(ledger, "new", timedelta(days=29))

    purged = purge_expired(settings, SystemClock())

    assert purged.deleted == 3 and purged.finished  # the old event, its audit entry, its quarantine record
    assert [e.event_id for e in ledger.audit()] == ["new"]
    assert [q.event_id for q in ledger.quarantined()] == ["new"]


@pytest.fixture
def sqlite_app_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """App settings as the host would give them: the embedded ledger in a temp folder, 90 days' retention."""
    monkeypatch.setenv("MLREACTOR_LEDGER", "sqlite")
    monkeypatch.setenv("MLREACTOR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MLREACTOR_RETENTION_DAYS", "90")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_given_the_timer_fires_when_the_function_runs_then_it_purges_past_the_retention(
    sqlite_app_settings: Settings,
) -> None:
    ledger = open_ledger(sqlite_app_settings)
    seed(ledger, "old", timedelta(days=91))
    seed(ledger, "new", timedelta(days=1))

    purge_ledger(TimerRequest(past_due=False))

    assert [e.event_id for e in ledger.audit()] == ["new"]
    ledger.close()


def test_given_the_function_app_when_imported_then_no_storage_sdk_is_loaded() -> None:
    """Cold start: the Tables ledger's SDKs load on first use, not when the worker imports the app."""
    out = in_fresh_interpreter(
        "import os, sys; os.environ['MLREACTOR_LEDGER'] = 'tables'; import function_app; "
        "print([m for m in ('azure.data.tables', 'azure.storage.blob') if m in sys.modules])"
    )

    assert out == "[]"


@pytest.mark.azurite
def test_given_a_purge_out_of_budget_when_run_again_then_a_new_instance_continues_the_pass(azurite: object) -> None:
    """Each run reads a page, deletes what expired in it, and stops once its budget is spent; the continuation is
    in the ledger, so the next run (another instance) resumes with the same cutoff; a finished pass is not
    repeated within a day."""
    from shared.ledger.tables import TablesLedger
    from tests.ledger.conftest import tables_settings

    settings = tables_settings(azurite, retention_days=30)  # type: ignore[arg-type]
    ledger = open_ledger(settings)
    for n in range(12):
        seed(ledger, f"old-{n}", timedelta(days=31))
    seed(ledger, "new", timedelta(days=1))
    cutoff = SystemClock().now() - timedelta(days=30)

    runs = []
    while not runs or not runs[-1].finished:
        run = TablesLedger.from_settings(settings)
        run.purge_page = 10
        runs.append(run.purge(cutoff, budget=timedelta(0)))
        run.close()
        assert len(runs) < 20, "the pass makes progress"
    again = ledger.purge(cutoff + timedelta(hours=1), budget=timedelta(0))

    assert len(runs) > 3 and not any(r.finished for r in runs[:-1])
    assert sum(r.deleted for r in runs) == 36  # 12 x (event, audit entry, quarantine record)
    assert [e.event_id for e in ledger.audit()] == ["new"]
    assert [q.event_id for q in ledger.quarantined()] == ["new"]
    assert again.deleted == 0 and again.finished
