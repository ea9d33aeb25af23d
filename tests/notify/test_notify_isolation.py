"""Failure isolation: a channel that fails does not block the others or the event's other actions; transient
failures are retried (only that channel), permanent ones are recorded and quarantined for a person, and a channel
that stays down ends in a recorded failure instead of a day of redeliveries."""

from __future__ import annotations

from typing import Any

from shared.outcomes import Outcome
from tests.notify.conftest import Receivers, event


def counts(receivers: Receivers) -> tuple[int, int, int]:
    return len(receivers.teams.requests), len(receivers.slack.requests), len(receivers.hook.requests)


def test_given_slack_answers_500_then_teams_and_the_webhook_deliver_and_only_slack_is_retried_on_redelivery(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness(notify_retries=0)
    receivers.slack.always(500)

    first = harness.engine.handle(event("run_status_changed_failed"))

    assert first.outcome is Outcome.FAILED and first.should_raise  # Event Grid will redeliver
    assert counts(receivers) == (1, 1, 1)
    tag_run, notify = first.actions
    assert tag_run.status == "done"  # the event's other action is not blocked
    assert notify.status == "retry" and "ops-slack: retry (attempt 1/8: channel ops-slack: the receiver answered " \
        "HTTP 500 (injected failure))" in notify.detail
    assert "ops-teams: delivered" in notify.detail

    receivers.slack.always(None)
    second = harness.engine.handle(event("run_status_changed_failed"))

    assert second.outcome is Outcome.ACTED
    assert counts(receivers) == (1, 2, 1)  # only Slack was sent again
    assert "ops-teams: skipped (already delivered: HTTP 200)" in second.actions[1].detail
    assert len(harness.tag_run.executed) == 1


def test_given_a_transient_failure_then_it_is_retried_in_process_before_asking_for_a_redelivery(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness(notify_retries=1)
    receivers.slack.fail_next(503)

    outcome = harness.engine.handle(event("run_status_changed_failed"))

    assert outcome.outcome is Outcome.ACTED
    assert counts(receivers) == (1, 2, 1)


def test_given_slack_answers_404_then_the_failure_is_recorded_quarantined_and_a_redrive_sends_only_to_slack(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness()
    receivers.slack.always(404, b"no_service")
    the_event = event("run_status_changed_failed")

    first = harness.engine.handle(the_event)

    assert first.outcome is Outcome.QUARANTINED and not first.should_raise  # never redelivered by Event Grid
    assert counts(receivers) == (1, 1, 1)  # a 4xx is not retried in-process either
    assert "ops-slack: failed (channel ops-slack: the receiver answered HTTP 404 (no_service))" in first.reason
    audit = harness.ledger.audit(event_id=the_event.id)[0]
    assert audit.outcome == "quarantined" and "ops-teams: delivered" in audit.actions[1]["detail"]
    assert harness.ledger.quarantined()[0].event_id == the_event.id

    receivers.slack.always(None)  # a person fixed the Slack app, then redrives the event
    assert harness.ledger.reopen_event(the_event.key, the_event.id, harness.clock.now())
    redriven = harness.engine.handle(the_event)

    assert redriven.outcome is Outcome.ACTED, redriven.reason
    assert counts(receivers) == (1, 2, 1)


def test_given_slack_stays_down_then_it_gives_up_after_the_bounded_number_of_deliveries(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness(notify_retries=0, notify_max_attempts=3)
    receivers.slack.always(503)

    outcomes = [harness.engine.handle(event("run_status_changed_failed")) for _ in range(3)]

    assert [o.outcome for o in outcomes] == [Outcome.FAILED, Outcome.FAILED, Outcome.QUARANTINED]
    assert "ops-slack: failed (gave up after 3 deliveries: channel ops-slack: the receiver answered HTTP 503" in (
        outcomes[-1].reason
    )
    assert counts(receivers) == (1, 3, 1)
    assert harness.engine.handle(event("run_status_changed_failed")).outcome is Outcome.DUPLICATE


def test_given_a_channel_whose_setting_is_missing_then_it_fails_for_good_naming_the_setting(
    make_harness: Any, receivers: Receivers, monkeypatch: Any
) -> None:
    monkeypatch.delenv("MLREACTOR_TEST_SLACK_URL")
    harness = make_harness()

    outcome = harness.engine.handle(event("run_status_changed_failed"))

    assert outcome.outcome is Outcome.QUARANTINED
    assert "channel ops-slack: app setting MLREACTOR_TEST_SLACK_URL is not set" in outcome.reason
    assert counts(receivers) == (1, 0, 1)


def test_given_the_time_budget_is_spent_then_the_remaining_channels_wait_for_the_redelivery_without_losing_attempts(
    make_harness: Any, receivers: Receivers
) -> None:
    # The budget is spent as soon as the first channel is sent: one channel per delivery.
    harness = make_harness(action_budget_seconds=0.000_001, notify_retries=0, notify_max_attempts=2)
    receivers.slack.fail_next(503)

    outcomes = [harness.engine.handle(event("run_status_changed_failed")) for _ in range(4)]

    assert [o.outcome for o in outcomes] == [Outcome.FAILED, Outcome.FAILED, Outcome.FAILED, Outcome.ACTED]
    assert "ops-slack: retry (out of time in this delivery; sent on the next)" in outcomes[0].reason
    # Waiting in delivery 1 did not count: Slack's first real try (delivery 2) is attempt 1 of 2, not a give-up.
    assert "ops-slack: retry (attempt 1/2: channel ops-slack: the receiver answered HTTP 503" in outcomes[1].reason
    assert counts(receivers) == (1, 2, 1)  # no channel sent twice after it was delivered
