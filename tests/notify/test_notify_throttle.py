"""Not noisy: repeats inside a throttle window fold into one digest; a flapping run pages once per state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.outcomes import Outcome
from tests.notify.conftest import Receivers, event


def failed_run(number: int, status: str = "Failed", event_id: str | None = None) -> Any:
    return event("run_status_changed_failed", event_id=event_id or f"evt-{number}-{status}", runId=f"run-{number}",
                 runStatus=status)


def card_texts(receivers: Receivers, index: int) -> list[str]:
    body = receivers.teams.requests[index].json()["attachments"][0]["content"]["body"]
    return [b["text"] for b in body if b["type"] == "TextBlock"]


def test_given_15_failed_runs_of_one_experiment_in_10_minutes_then_ops_get_one_message_and_later_one_digest(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness()

    outcomes = []
    for number in range(15):
        outcomes.append(harness.engine.handle(failed_run(number)))
        harness.clock.advance(timedelta(seconds=30))  # 15 failures over 7.5 minutes

    assert len(receivers.teams.requests) == len(receivers.slack.requests) == len(receivers.hook.requests) == 1
    assert all(o.outcome is Outcome.ACTED for o in outcomes)
    held = outcomes[-1].actions[1]
    assert held.detail == (
        "held back: folded into the digest of 'automl-local-regression/Failed' (14 held back in this 10m window)"
    )

    harness.clock.advance(timedelta(minutes=10))  # the window is over; the next failure opens a new one
    harness.engine.handle(failed_run(99))

    assert len(receivers.teams.requests) == 2
    digest = ("Also: 14 more failed or canceled runs for automl-local-regression/Failed were held back in the "
              "previous 10m window.")
    assert any(digest in text.replace("\\", "") for text in card_texts(receivers, 1))
    assert digest == receivers.hook.requests[1].json()["digest"]
    assert {"type": "context", "elements": [{"type": "plain_text", "text": digest, "emoji": False}]} in (
        receivers.slack.requests[1].json()["blocks"]
    )


def test_given_failures_of_two_experiments_then_each_throttle_key_has_its_own_window(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness()

    harness.engine.handle(failed_run(1))
    harness.engine.handle(event("run_status_changed_failed", event_id="other", runId="r-2", experimentName="other"))
    harness.engine.handle(failed_run(3, status="Canceled"))

    assert len(receivers.teams.requests) == 3  # Failed/automl, Failed/other, Canceled/automl


def test_given_a_flapping_run_when_it_fails_twice_then_ops_are_paged_once_for_that_state(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([{
        "name": "page-on-failure", "on": "RunStatusChanged", "when": {"run_status": "Failed"},
        "do": [{"notify": {"channels": "ops-teams", "message": "run_failed"}}],  # no throttle_key at all
    }])

    first = harness.engine.handle(failed_run(7, event_id="a"))
    harness.engine.handle(failed_run(7, status="Running", event_id="b"))
    harness.clock.advance(timedelta(hours=1))
    again = harness.engine.handle(failed_run(7, event_id="c"))  # same run, same state, a new event id

    assert first.actions[0].status == "done" and len(receivers.teams.requests) == 1
    assert again.actions[0].detail.startswith("held back: already notified for this state since 2026-11-20T18:45")
    harness.clock.advance(timedelta(hours=24))
    harness.engine.handle(failed_run(7, event_id="d"))
    assert len(receivers.teams.requests) == 2  # the state window (24h) is over


def test_given_a_redelivered_event_then_it_re_enters_its_own_window_and_renders_the_same_digest(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness()
    harness.engine.handle(failed_run(1))
    harness.engine.handle(failed_run(2))  # held back: 1 for the digest
    harness.clock.advance(timedelta(minutes=11))
    receivers.slack.always(503)

    first = harness.engine.handle(failed_run(3))  # opens a window, carries the digest, Slack is down
    receivers.slack.always(None)
    harness.clock.advance(timedelta(seconds=10))
    second = harness.engine.handle(failed_run(3))  # Event Grid's redelivery of the same event

    assert first.outcome is Outcome.FAILED and second.outcome is Outcome.ACTED
    slack_digest = next(b for b in receivers.slack.requests[-1].json()["blocks"] if b["type"] == "context")
    assert slack_digest["elements"][0]["text"].startswith("Also: 1 more failed or canceled runs")
    assert len(receivers.teams.requests) == 2  # Teams was not re-sent by the redelivery
