"""The engine under at-least-once delivery: every delivery, replayed any number of times, has the effects of one."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from shared.actions import ActionKind
from shared.errors import PermanentError, TransientError
from shared.events import parse_event
from shared.outcomes import Outcome
from tests.conftest import Harness, ProcessDied, delivery, event, rules_from

Build = Callable[..., Harness]


def test_an_event_the_rules_react_to_is_acted_on_with_every_action(make_engine: Build) -> None:
    h = make_engine()
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert outcome.outcome is Outcome.ACTED
    assert outcome.reactions == ["test-new-model"]
    assert [a.kind for a in outcome.actions] == ["tag_model", "run_pipeline"]
    assert all(a.status == "done" for a in outcome.actions)
    (tag,) = h.executed(ActionKind.TAG_MODEL)
    assert tag.params.model_dump()["set"]["mlreactor.stage"] == "candidate"


def test_a_duplicate_across_deliveries_is_recognised_and_does_nothing(make_engine: Build) -> None:
    h = make_engine()
    h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    (again,) = h.engine.handle_delivery(json.dumps(delivery("model_registered", "cloudevents")))
    assert again.outcome is Outcome.DUPLICATE
    assert len(h.executed()) == 2


def test_a_duplicate_within_one_delivery_acts_once(make_engine: Build) -> None:
    h = make_engine()
    raw = event("run_status_changed_failed")
    outcomes = h.engine.handle_delivery(json.dumps([raw, raw, raw]))
    assert [o.outcome for o in outcomes] == [Outcome.ACTED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert len(h.executed(ActionKind.NOTIFY)) == 1


def test_events_from_workspaces_not_allowed_are_rejected_and_never_acted_on(make_engine: Build) -> None:
    h = make_engine()
    foreign = event("model_registered", topic="/subscriptions/1/resourceGroups/x/providers/"
                    "Microsoft.MachineLearningServices/workspaces/other")
    (outcome,) = h.engine.handle_delivery(json.dumps([foreign]))
    assert outcome.outcome is Outcome.REJECTED and "not in allowed_workspaces" in outcome.reason
    assert h.executed() == []


def test_unknown_event_types_and_unmatched_events_are_ignored_with_the_reason(make_engine: Build) -> None:
    h = make_engine()
    unknown = event("run_completed", eventType="Microsoft.MachineLearningServices.DatasetRegistered")
    (o1,) = h.engine.handle_delivery(json.dumps([unknown]))
    assert o1.outcome is Outcome.IGNORED
    assert o1.reason == "unknown event type 'Microsoft.MachineLearningServices.DatasetRegistered'"
    (o2,) = h.engine.handle_delivery(json.dumps(delivery("run_completed")))
    assert (o2.outcome, o2.reason) == (Outcome.IGNORED, "no rule matched")


def test_unparseable_events_are_quarantined_with_the_reason_and_the_raw_payload(make_engine: Build) -> None:
    h = make_engine()
    bad = event("model_registered")
    bad["data"]["ModelVersion"] = {"major": 1}
    good = event("run_status_changed_failed")
    outcomes = h.engine.handle_delivery(json.dumps([bad, good]))
    assert [o.outcome for o in outcomes] == [Outcome.QUARANTINED, Outcome.ACTED]
    (stored,) = h.ledger.quarantined()
    assert "data.ModelVersion" in stored.reason and '"major": 1' in stored.raw
    assert stored.event_id == bad["id"]


def test_a_poison_payload_redelivered_with_its_batch_is_quarantined_once(make_engine: Build) -> None:
    h = make_engine()
    bad = event("model_registered")
    bad["data"]["ModelVersion"] = None
    batch = json.dumps([bad, event("run_status_changed_failed")])
    first = h.engine.handle_delivery(batch)
    again = h.engine.handle_delivery(batch)
    assert [o.outcome for o in first] == [Outcome.QUARANTINED, Outcome.ACTED]
    assert [o.outcome for o in again] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert again[0].reason == "already quarantined"
    assert len(h.ledger.quarantined()) == 1


def test_a_delivery_that_is_not_json_is_quarantined_as_one_outcome(make_engine: Build) -> None:
    h = make_engine()
    (outcome,) = h.engine.handle_delivery("{not json")
    assert outcome.outcome is Outcome.QUARANTINED and outcome.event_id is None
    assert h.ledger.quarantined()[0].raw == "{not json"


def test_transient_failure_fails_the_event_and_redelivery_skips_the_actions_already_done(make_engine: Build) -> None:
    h = make_engine()
    h.adapters[ActionKind.RUN_PIPELINE].fail_next(TransientError("503 from Azure ML"))
    (first,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert first.outcome is Outcome.FAILED and first.should_raise
    assert [a.status for a in first.actions] == ["done", "retry"]

    (second,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert second.outcome is Outcome.ACTED
    assert [a.status for a in second.actions] == ["skipped", "done"]
    assert len(h.executed(ActionKind.TAG_MODEL)) == 1
    assert len(h.executed(ActionKind.RUN_PIPELINE)) == 1
    assert h.executed(ActionKind.RUN_PIPELINE)[0].resumed is True, "the adapter must look before re-creating"


def test_a_whole_batch_redelivered_after_one_failure_has_the_effects_of_one(make_engine: Build) -> None:
    h = make_engine()
    batch = json.dumps([event(n) for n in ("model_registered", "run_status_changed_failed", "model_deployed")])
    h.adapters[ActionKind.NOTIFY].fail_next(TransientError("Teams 503"))
    outcomes = h.engine.handle_delivery(batch)
    assert Outcome.FAILED in [o.outcome for o in outcomes]
    for _ in range(3):
        h.engine.handle_delivery(batch)
    executed = [(a.rule, a.kind) for a in h.executed()]
    assert sorted(executed) == sorted(set(executed)), "no action ran twice"
    assert len(executed) == 5


def test_permanent_action_failure_quarantines_the_event_and_runs_the_other_actions(make_engine: Build) -> None:
    h = make_engine()
    h.adapters[ActionKind.TAG_MODEL].fail_next(PermanentError("403 on model sklearn_regression_model:20"))
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert outcome.outcome is Outcome.QUARANTINED
    assert "test-new-model/tag_model: 403 on model" in outcome.reason
    assert [(a.kind, a.status) for a in outcome.actions] == [
        ("tag_model", "failed"), ("run_pipeline", "done"), ("notify", "done")]  # the last tells Ops (on_quarantine)
    assert h.ledger.quarantined()[0].event_id == outcome.event_id
    (again,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert again.outcome is Outcome.DUPLICATE, "a quarantined event is never retried by redelivery"


def test_an_unexpected_adapter_bug_is_retried_a_bounded_number_of_deliveries_then_quarantined(
    make_engine: Build,
) -> None:
    h = make_engine(error_deliveries=3)
    h.adapters[ActionKind.NOTIFY].fail_next(*[ZeroDivisionError("bug")] * 3)
    outcomes = [h.engine.handle_delivery(json.dumps(delivery("run_status_changed_failed")))[0] for _ in range(3)]

    assert [o.outcome for o in outcomes] == [Outcome.FAILED, Outcome.FAILED, Outcome.QUARANTINED]
    assert "unexpected error while executing notify-failed-runs/notify: ZeroDivisionError: bug" in outcomes[0].reason
    assert "delivery 1 of 3" in outcomes[0].reason and "on 3 deliveries" in outcomes[2].reason
    assert h.ledger.quarantined()[0].reason == outcomes[2].reason


def test_a_template_that_cannot_render_fails_only_its_action(make_engine: Build) -> None:
    rules = rules_from("""
rules:
  - name: r
    on: RunStatusChanged
    do:
      - tag_model: {set: {stage: x}}
      - tag_run: {set: {seen: "yes"}}
""")
    h = make_engine(rules)
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("run_status_changed_failed")))
    assert outcome.outcome is Outcome.QUARANTINED
    assert "{{ model.name }} is not available" in outcome.reason
    assert [a.kind for a in h.executed()] == [ActionKind.TAG_RUN]


def test_when_an_action_with_an_id_fails_transiently_every_later_action_waits_for_it(make_engine: Build) -> None:
    """A notify without an ``if`` reads the gate's verdict too: it must not go out without it (it would tell Ops
    "finished" and be recorded done); an action after a failed action without an id still runs."""
    rules = rules_from("""
channels:
  ops: {type: teams, url_setting: MLREACTOR_TEST_TEAMS_URL}
rules:
  - name: r
    on: RunStatusChanged
    do:
      - tag_run: {id: first, set: {seen: "yes"}}
      - notify: {channels: [ops], message: run_failed}
  - name: s
    on: RunStatusChanged
    do:
      - tag_run: {set: {seen: "yes"}}
      - notify: {channels: [ops], message: run_failed}
""")
    h = make_engine(rules)
    h.adapters[ActionKind.TAG_RUN].fail_next(TransientError("503"))
    h.adapters[ActionKind.TAG_RUN].fail_next(TransientError("503"))

    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("run_status_changed_failed")))

    assert outcome.outcome is Outcome.FAILED
    assert [(a.rule, a.kind, a.status) for a in outcome.actions] == [
        ("r", "tag_run", "retry"), ("r", "notify", "retry"), ("s", "tag_run", "retry"), ("s", "notify", "done")]
    assert "waits for an earlier failed action (first)" in outcome.actions[1].detail


def test_throttle_fires_once_per_window_per_group(make_engine: Build) -> None:
    h = make_engine()

    def drift(event_id: str) -> str:
        return json.dumps([event("model_monitor_threshold_breached", id=event_id)])

    assert h.engine.handle_delivery(drift("a"))[0].outcome is Outcome.ACTED
    second = h.engine.handle_delivery(drift("b"))[0]
    assert (second.outcome, second.reason) == (Outcome.IGNORED, "throttled: retrain-on-drift (once within 6h)")
    h.clock.advance(hours=6, seconds=1)
    assert h.engine.handle_delivery(drift("c"))[0].outcome is Outcome.ACTED
    assert len(h.executed(ActionKind.RUN_PIPELINE)) == 2


def test_a_redelivered_event_re_enters_its_own_throttle_window(make_engine: Build) -> None:
    h = make_engine()
    h.adapters[ActionKind.RUN_PIPELINE].fail_next(TransientError("429"))
    raw = json.dumps(delivery("model_monitor_threshold_breached"))
    assert h.engine.handle_delivery(raw)[0].outcome is Outcome.FAILED
    h.clock.advance(minutes=5)
    assert h.engine.handle_delivery(raw)[0].outcome is Outcome.ACTED
    assert len(h.executed(ActionKind.RUN_PIPELINE)) == 1


def test_an_event_held_by_another_live_instance_is_retried_later(make_engine: Build) -> None:
    h = make_engine(lease=timedelta(minutes=2))
    parsed = parse_event(event("model_registered"))
    h.ledger.claim_event(parsed.key, parsed.id, h.clock.now(), timedelta(minutes=2))  # another instance
    busy = h.engine.handle(parsed)
    assert busy.outcome is Outcome.FAILED and "another instance" in busy.reason
    assert h.executed() == []
    h.clock.advance(minutes=3)  # that instance died: its lease ran out
    taken_over = h.engine.handle(parsed)
    assert taken_over.outcome is Outcome.ACTED


def test_a_crash_between_action_and_record_is_resumed_with_a_lookup_hint(make_engine: Build) -> None:
    h = make_engine()
    parsed = parse_event(event("run_status_changed_failed"))
    h.ledger.claim_event(parsed.key, parsed.id, h.clock.now(), timedelta(seconds=30))  # then: crash mid-action
    h.clock.advance(minutes=1)
    outcome = h.engine.handle(parsed)
    assert outcome.outcome is Outcome.ACTED
    assert h.executed(ActionKind.NOTIFY)[0].resumed is True


@pytest.mark.parametrize(("tag_is_live", "tag_runs"), [
    (True, 1),  # its result was stored before run_pipeline started: the redelivery skips it
    (False, 2),  # a dry-run result waits for the outcome's write: made again, nothing is repeated but the dry run
])
def test_a_live_result_is_stored_before_the_next_action_starts_and_a_dry_run_one_with_the_outcome(
    make_engine: Build, tag_is_live: bool, tag_runs: int
) -> None:
    h = make_engine()
    h.adapters[ActionKind.TAG_MODEL].live = tag_is_live
    h.adapters[ActionKind.RUN_PIPELINE].fail_next(ProcessDied())
    with pytest.raises(ProcessDied):
        h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    h.clock.advance(minutes=3)  # the dead attempt's lease runs out

    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))

    assert outcome.outcome is Outcome.ACTED
    assert len(h.executed(ActionKind.TAG_MODEL)) == tag_runs
    assert h.executed(ActionKind.RUN_PIPELINE)[-1].resumed is True
    assert [a.status for a in outcome.actions] == ["skipped" if tag_is_live else "done", "done"]


def test_actions_beyond_the_time_budget_wait_for_redelivery(make_engine: Build) -> None:
    h = make_engine(budget=timedelta(seconds=-1))
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert outcome.outcome is Outcome.FAILED and "out of time" in outcome.reason
    assert h.executed() == []


def test_every_decision_is_in_the_audit_trail_newest_first_and_a_duplicate_is_not(make_engine: Build) -> None:
    """A duplicate changes nothing: it is logged and traced, not stored (a redelivery storm adds no rows)."""
    h = make_engine()
    outcomes = []
    for name in ("model_registered", "run_completed", "model_registered"):
        outcomes += h.engine.handle_delivery(json.dumps(delivery(name)))
        h.clock.advance(seconds=1)
    entries = h.ledger.audit()
    assert [o.outcome for o in outcomes] == [Outcome.ACTED, Outcome.IGNORED, Outcome.DUPLICATE]
    assert [e.outcome for e in entries] == ["ignored", "acted"]
    acted = entries[-1]
    assert acted.correlation_id == acted.event_id
    assert [a["kind"] for a in acted.actions] == ["tag_model", "run_pipeline"]
    assert [e.event_id for e in h.ledger.audit(event_id=acted.event_id)] == [acted.event_id]


@pytest.mark.parametrize("hostile", ["{{ 7*7 }}", "$(curl x)", "{{ correlation_id }}"])
def test_hostile_event_values_reach_the_adapter_verbatim(make_engine: Build, hostile: str) -> None:
    raw = event("model_registered")
    raw["data"]["ModelName"] = hostile
    h = make_engine()
    (outcome,) = h.engine.handle_delivery(json.dumps([raw]))
    assert outcome.outcome is Outcome.ACTED
    (run,) = h.executed(ActionKind.RUN_PIPELINE)
    assert run.params.model_dump()["inputs"]["model"] == f"azureml:{hostile}:20"
    assert run.params.model_dump()["display_name"] == f"offline test of {hostile}:20"


def test_the_correlation_id_travels_in_tags(make_engine: Build) -> None:
    raw = event("model_registered")
    raw["data"]["ModelTags"]["mlreactor.correlation"] = "chain-1"
    h = make_engine()
    (outcome,) = h.engine.handle_delivery(json.dumps([raw]))
    assert outcome.correlation_id == "chain-1"
    assert h.executed(ActionKind.TAG_MODEL)[0].correlation_id == "chain-1"
    assert h.executed(ActionKind.TAG_MODEL)[0].params.model_dump()["set"]["mlreactor.correlation"] == "chain-1"


@pytest.mark.parametrize("replays", [2, 5])
def test_idempotency_keys_are_stable_across_redeliveries_and_schemas(make_engine: Build, replays: int) -> None:
    h = make_engine()
    keys = set()
    for i in range(replays):
        schema = "cloudevents" if i % 2 else "eventgrid"
        keys.update(a.key for a in h.engine.plan(parse_event(event("model_registered", schema))).actions)
    assert len(keys) == 2
