"""Exactly-once effects with the real engine, several processes on one ledger, injected faults and kill -9.

Effects are counted by the recording adapters (one line per execution in a shared O_APPEND file), never by the
ledger under test.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind, idempotency_key
from shared.clock import SystemClock
from shared.engine import Engine
from shared.events import parse_delivery
from shared.ledger.port import ClaimOutcome, Ledger
from shared.outcomes import Outcome
from shared.reactions import load_rules
from tests.fakes.recording import RecordingAdapter, effects
from tests.ledger.conftest import tables_settings
from tests.ledger.worker import RULES, deliveries

ROOT = Path(__file__).resolve().parent.parent.parent
EVENTS, PROCESSES, DELIVERIES, FAIL_RATE = 50, 4, 250, 0.2


def worker_config(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Where every worker of one test finds the shared ledger and the shared effect log."""
    config: dict[str, Any] = {"backend": backend, "events": EVENTS, "log": str(tmp_path / "effects.log")}
    if backend == "sqlite":
        config["sqlite_path"] = str(tmp_path / "ledger.sqlite3")
    else:
        settings = tables_settings(request.getfixturevalue("azurite"))
        assert settings.storage_connection_string is not None
        config["tables"] = {
            "storage_connection_string": settings.storage_connection_string.get_secret_value(),
            "table_prefix": settings.table_prefix, "quarantine_container": settings.quarantine_container,
        }
    return config


def spawn(config: dict[str, Any], path: Path) -> subprocess.Popen[bytes]:
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.ledger.worker", str(path)], cwd=ROOT, env=env)


def action_keys(event_index: int) -> list[str]:
    event = parse_delivery(deliveries(EVENTS)[event_index])[0]
    assert not isinstance(event, Exception)
    return [idempotency_key("tag-and-notify", i, kind, event)  # type: ignore[arg-type]
            for i, kind in enumerate((ActionKind.TAG_MODEL, ActionKind.NOTIFY))]


def open_same(config: dict[str, Any]) -> Ledger:
    from tests.ledger.worker import open_ledger

    return open_ledger(config)


def test_given_4_processes_replaying_50_events_in_random_orders_with_20pc_faults_then_each_action_runs_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """4 processes x 250 deliveries (the same 50 events, 5 times each, shuffled per process); 20 % of action calls
    fail transiently — half before their effect, half after it (a lost response). Failed deliveries come back, as
    Event Grid would redeliver them."""
    config = worker_config(backend, request, tmp_path)
    workers = []
    for n in range(PROCESSES):
        order = [i for i in range(EVENTS) for _ in range(DELIVERIES // EVENTS)]
        random.Random(n).shuffle(order)
        mine = {**config, "order": order, "seed": n, "fail_rate": FAIL_RATE, "result": str(tmp_path / f"r{n}.json")}
        workers.append(spawn(mine, tmp_path / f"w{n}.json"))
    assert [w.wait(timeout=240) for w in workers] == [0] * PROCESSES

    results = [json.loads((tmp_path / f"r{n}.json").read_text()) for n in range(PROCESSES)]
    outcomes = sum((Counter(r["outcomes"]) for r in results), Counter())
    every_action = {k for i in range(EVENTS) for k in action_keys(i)}
    done = effects(Path(config["log"]))
    ledger = open_same(config)
    try:
        acted = {i: [e.outcome for e in ledger.audit(event_id=deliveries(EVENTS)[i][0]["id"])].count("acted")
                 for i in range(EVENTS)}
        final = {ledger.claim_event(*_key(i), SystemClock().now(), timedelta(minutes=1)).outcome
                 for i in range(EVENTS)}
    finally:
        ledger.close()

    assert all(r["left"] == 0 for r in results), "a delivery was never completed"
    assert set(done) == every_action, "an action never ran, or something else ran"
    assert max(done.values()) == 1, f"actions ran twice: {[k[:12] for k, n in done.items() if n > 1]}"
    assert set(acted.values()) == {1}, "every event is acted exactly once, and that is in its audit trail"
    assert final == {ClaimOutcome.DONE}
    assert outcomes["acted"] == EVENTS
    assert outcomes["failed"] > 0, "the injected faults did happen"
    assert outcomes["acted"] + outcomes["duplicate"] == PROCESSES * DELIVERIES


def _key(index: int) -> tuple[str, str]:
    event = parse_delivery(deliveries(EVENTS)[index])[0]
    return event.key, event.id  # type: ignore[union-attr]


class OffsetClock:
    """Another instance's clock, ``offset`` ahead of this one (e.g. past a lease's end)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return SystemClock().now() + self.offset


@pytest.mark.parametrize("after_effect", [False, True], ids=["killed-before-effect", "killed-after-effect"])
def test_given_a_worker_killed_mid_event_when_redelivered_then_before_the_lease_nothing_and_after_it_the_rest_once(
    backend: str, after_effect: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The worker records the first action (tag_model), then is killed -9 inside the second (notify): before its
    effect, or after its effect but before it could record it."""
    lease = timedelta(seconds=30)
    marker = tmp_path / "inside-notify"
    config = {
        **worker_config(backend, request, tmp_path), "order": [0], "lease_seconds": lease.total_seconds(),
        "result": str(tmp_path / "r.json"), "hang": {"kind": "notify", "after_effect": after_effect,
                                                     "marker": str(marker)},
    }
    worker = spawn(config, tmp_path / "w.json")
    deadline = time.monotonic() + 60
    while not marker.exists() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "the worker never reached the second action"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    tag, notify = action_keys(0)
    log = Path(config["log"])
    assert effects(log) == Counter({tag: 1, notify: 1 if after_effect else 0})

    ledger = open_same(config)
    try:
        rules = load_rules(RULES)
        adapters = {kind: RecordingAdapter(kind, log) for kind in ActionKind}
        before = Engine(rules, ledger, adapters, lease=lease).handle_delivery(deliveries(EVENTS)[0])
        after = Engine(rules, ledger, adapters, lease=lease, clock=OffsetClock(lease)).handle_delivery(
            deliveries(EVENTS)[0]
        )
        audit = [e.outcome for e in ledger.audit(event_id=deliveries(EVENTS)[0][0]["id"])]
    finally:
        ledger.close()

    assert before[0].outcome is Outcome.FAILED
    assert "lease" in before[0].reason
    assert after[0].outcome is Outcome.ACTED
    assert [(a.kind, a.status) for a in after[0].actions] == [("tag_model", "skipped"), ("notify", "done")]
    assert effects(log) == Counter({tag: 1, notify: 1})
    assert audit == ["acted", "failed"]
