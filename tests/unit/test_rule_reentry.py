"""An event that started a rule finishes it: throttle and once_per decide only when an event first fires a rule."""

from __future__ import annotations

import json
from collections.abc import Callable

from shared.actions import ActionKind
from shared.errors import PermanentError, TransientError
from shared.outcomes import Outcome
from tests.conftest import Harness, delivery, rules_from

Build = Callable[..., Harness]


def drift(event_id: str) -> str:
    payload = delivery("dataset_drift_detected")
    payload[0]["id"] = event_id
    return json.dumps(payload)


def test_given_e1_launched_and_its_notify_failed_when_e2_took_the_window_then_e1_redelivered_sends_its_notify_once(
    make_engine: Build,
) -> None:
    h = make_engine()  # the shipped retrain-on-drift rule: once within 6 h per monitor
    h.adapters[ActionKind.NOTIFY].fail_next(TransientError("Teams answered 503"))
    (e1,) = h.engine.handle_delivery(drift("e1"))
    h.clock.advance(hours=7)
    (e2,) = h.engine.handle_delivery(drift("e2"))
    (e1_again,) = h.engine.handle_delivery(drift("e1"))
    (e1_later,) = h.engine.handle_delivery(drift("e1"))

    assert e1.outcome is Outcome.FAILED
    assert e2.outcome is Outcome.ACTED, "seven hours later the window is E2's"
    assert e1_again.outcome is Outcome.ACTED, e1_again.reason
    assert [(a.kind, a.status) for a in e1_again.actions] == [
        ("run_pipeline", "skipped"), ("notify", "done"), ("publish_event", "done")]
    assert e1_later.outcome is Outcome.DUPLICATE
    notified = [a.event.id for a in h.executed(ActionKind.NOTIFY)]
    assert notified.count("e1") == 1 and notified.count("e2") == 1
    launched = [a.event.id for a in h.executed(ActionKind.RUN_PIPELINE)]
    assert launched == ["e1", "e2"], "one retrain per window, each event's own"


def test_an_event_that_never_fired_the_rule_is_still_throttled(make_engine: Build) -> None:
    h = make_engine()
    h.engine.handle_delivery(drift("e1"))
    (e2,) = h.engine.handle_delivery(drift("e2"))
    assert e2.outcome is Outcome.IGNORED and "throttled: retrain-on-drift (once within 6h)" in e2.reason


def test_once_per_is_decided_at_first_fire_too(make_engine: Build) -> None:
    rules = rules_from("""
rules:
  - name: once-per-model
    on: ModelRegistered
    once_per: [model.id]
    do:
      - tag_model: {set: {seen: "yes"}}
      - run_pipeline: {component: "offline-test:1"}
""")
    h = make_engine(rules)
    h.adapters[ActionKind.RUN_PIPELINE].fail_next(TransientError("Azure ML answered 503"))
    (first,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    (again,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert first.outcome is Outcome.FAILED
    assert again.outcome is Outcome.ACTED
    assert [(a.kind, a.status) for a in again.actions] == [("tag_model", "skipped"), ("run_pipeline", "done")]


def test_a_redrive_after_the_window_moved_on_finishes_the_rule(make_engine: Build) -> None:
    h = make_engine()
    h.adapters[ActionKind.NOTIFY].fail_next(PermanentError("Teams answered 404: the workflow was deleted"))
    (e1,) = h.engine.handle_delivery(drift("e1"))
    h.clock.advance(hours=7)
    h.engine.handle_delivery(drift("e2"))
    (quarantined,) = h.ledger.quarantined()
    assert e1.outcome is Outcome.QUARANTINED
    assert h.ledger.reopen_event(quarantined.event_key or "", "e1", h.clock.now())  # what `deadletter redrive` does
    (redriven,) = h.engine.handle_delivery(drift("e1"))

    assert redriven.outcome is Outcome.ACTED, redriven.reason
    sent = [a.event.id for a in h.executed(ActionKind.NOTIFY) if a.rule == "retrain-on-drift"]
    assert sent == ["e2", "e1"], "E1's notify is sent by the redrive, once (on_quarantine told Ops meanwhile)"
