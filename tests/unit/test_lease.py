"""A claim's lease while its holder works: renewed only by a long action, and a holder that lost it stops before its
next effect and says so (real SQLite ledger; the adapters are dry-run)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.actions import ActionKind, ActionResult, PlannedAction
from shared.lease import Held
from shared.ledger.port import EventRecord
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import Outcome
from tests.conftest import FakeClock, Harness, ScriptedAdapter, delivery

Build = Callable[..., Harness]


class CountingLedger(SqliteLedger):
    renewals = 0

    def renew_event(self, *args: Any, **kwargs: Any) -> Any:
        self.renewals += 1
        return super().renew_event(*args, **kwargs)


class SlowAdapter(ScriptedAdapter):
    def __init__(self, kind: ActionKind, seconds: float) -> None:
        super().__init__(kind)
        self.seconds = seconds

    def execute(self, action: PlannedAction) -> ActionResult:
        time.sleep(self.seconds)
        return super().execute(action)


class GatedRenewals(SqliteLedger):
    """Holds its first renewal open until the test lets it through, and records every renewal's answer."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered, self.let_through = threading.Event(), threading.Event()
        self.answers: list[EventRecord | None] = []

    def renew_event(self, *args: Any, **kwargs: Any) -> Any:
        if not self.answers:
            self.entered.set()
            assert self.let_through.wait(10)
        renewed = super().renew_event(*args, **kwargs)
        self.answers.append(renewed)
        return renewed


def counting_harness(make_engine: Build, tmp_path: Path, **kwargs: Any) -> tuple[Harness, CountingLedger]:
    harness = make_engine(**kwargs)
    counting = CountingLedger(tmp_path / "ledger.sqlite3")
    harness.engine.ledger = counting
    return harness, counting


def test_a_fast_event_never_renews_its_lease(make_engine: Build, tmp_path: Path) -> None:
    h, ledger = counting_harness(make_engine, tmp_path)
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert outcome.outcome is Outcome.ACTED
    assert ledger.renewals == 0, "no round-trip is added to a fast event"


def test_a_long_action_renews_the_lease_while_it_runs(make_engine: Build, tmp_path: Path) -> None:
    h, ledger = counting_harness(make_engine, tmp_path, renew_every=timedelta(seconds=0.05))
    h.engine.adapters[ActionKind.TAG_MODEL] = SlowAdapter(ActionKind.TAG_MODEL, 0.4)
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert outcome.outcome is Outcome.ACTED
    assert ledger.renewals >= 3, "the heartbeat beat while the slow action ran"


class TakenOver(ScriptedAdapter):
    """Acts slowly: meanwhile the lease runs out and another instance takes the event over."""

    def __init__(self, kind: ActionKind, clock: FakeClock, other: SqliteLedger) -> None:
        super().__init__(kind)
        self.clock, self.other = clock, other

    def execute(self, action: PlannedAction) -> ActionResult:
        self.clock.advance(minutes=3)  # past the 2 min lease
        taken = self.other.claim_event(action.event.key, action.event.id, self.clock.now(), timedelta(minutes=2))
        assert taken.outcome.value == "resumed"
        return super().execute(action)


def test_a_holder_that_lost_its_claim_stops_before_its_next_effect_and_says_so_in_the_audit(
    make_engine: Build, tmp_path: Path, clock: FakeClock
) -> None:
    h = make_engine()
    other = SqliteLedger(tmp_path / "ledger.sqlite3")
    h.engine.adapters[ActionKind.TAG_MODEL] = TakenOver(ActionKind.TAG_MODEL, clock, other)
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))

    assert [(a.kind, a.status) for a in outcome.actions] == [("tag_model", "done"), ("run_pipeline", "retry")]
    assert h.executed(ActionKind.RUN_PIPELINE) == [], "the second effect did not start"
    assert outcome.outcome is Outcome.FAILED
    assert "lost the claim (another instance took the event over" in outcome.reason
    assert "stopped before the next effect" in outcome.reason
    (audited,) = h.ledger.audit(event_id=outcome.event_id)
    assert "lost the claim" in audited.reason
    other.close()


def test_leaving_kept_waits_for_a_renewal_in_flight_and_the_heartbeat_renews_no_more(
    tmp_path: Path, clock: FakeClock
) -> None:
    # The settle that follows is conditional on ``record``: a renewal landing after it was read (on Tables it changes
    # the ETag) would make the holder take its own renewal for a takeover and leave its outcome unstored.
    ledger = GatedRenewals(tmp_path / "ledger.sqlite3")
    claim = ledger.claim_event("event-1", "event-1", clock.now(), timedelta(minutes=2))
    held = Held(ledger, claim.record, timedelta(minutes=2), clock, every=timedelta(seconds=0.01))
    with held.kept():
        assert ledger.entered.wait(10), "the heartbeat did not beat"
        clock.advance(seconds=30)
        threading.Timer(0.2, ledger.let_through.set).start()
    assert len(ledger.answers) == 1, "kept returned while a renewal was still in flight"
    assert ledger.answers[0] is not None and held.record == ledger.answers[0]

    assert held.beat() is False, "a beat after kept ended renews nothing"
    time.sleep(0.1)
    assert len(ledger.answers) == 1
    assert ledger.settle_event(held.record, "acted", clock.now())
    ledger.close()
