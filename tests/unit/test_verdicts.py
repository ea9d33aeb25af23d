"""Every chain has a verdict, read from its audit entries alone — including the release signals
(``ReleaseDeployed``, ``ReleaseRejected`` ...) that the release targets send through the same engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.ledger.port import AuditEntry
from shared.ops.verdicts import Ending, Tone, chain

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
STALL = timedelta(hours=24)
AML = "Microsoft.MachineLearningServices."


def entry(minute: int, event_id: str, event_type: str, outcome: str = "acted", *actions: dict[str, Any],
          reason: str = "", subject: str = "") -> AuditEntry:
    return AuditEntry(T0 + timedelta(minutes=minute), f"key|{event_id}", event_id, event_type, subject, "ws",
                      "chain-1", outcome, reason or f"{len(actions)} action(s) done", ["some-rule"], list(actions))


def gate(passed: bool) -> dict[str, Any]:
    verdict = "challenger" if passed else "rejected"
    summary = "passed: auc 0.91 >= 0.8" if passed else "failed: auc 0.74 >= 0.8 FAILED"
    return {"kind": "quality_gate", "status": "done", "detail": f"credit:2 {verdict} — {summary}",
            "data": {"passed": passed, "summary": summary, "model": "credit", "version": "2"}}


RELEASE = {"kind": "queue_release", "status": "done", "external_id": "151", "detail": "release 151 queued",
           "url": "https://dev.azure.com/contoso/mlops/_build/results?buildId=151",
           "data": {"id": 151, "model": "credit", "version": "2"}}


def started() -> list[AuditEntry]:
    return [
        entry(0, "drift", AML + "RunStatusChanged", "acted", {"kind": "run_pipeline", "status": "done"}),
        entry(20, "registered", AML + "ModelRegistered", "acted", {"kind": "run_pipeline", "status": "done"}),
    ]


def released() -> list[AuditEntry]:
    return [*started(), entry(40, "tested", AML + "RunCompleted", "acted", gate(True), RELEASE)]


def verdict_of(entries: list[AuditEntry], now: datetime = T0 + timedelta(hours=1)) -> Any:
    return chain("chain-1", entries, now, STALL)


def test_a_release_deployed_makes_the_model_champion_and_the_chain_ends_green() -> None:
    drawn = verdict_of([*released(), entry(90, "hook-1", "ReleaseDeployed")])
    assert drawn.verdict.ending is Ending.DEPLOYED and drawn.verdict.final
    assert drawn.verdict.text == "deployed as champion: credit:2 (ReleaseDeployed at 2026-11-20 19:30 UTC)"
    assert drawn.steps[-1].tone is Tone.GOOD


def test_model_deployed_stays_an_alternative_ending() -> None:
    drawn = verdict_of([*released(), entry(90, "deployed", AML + "ModelDeployed")])
    assert drawn.verdict.ending is Ending.DEPLOYED


def test_a_queued_release_is_awaiting_approval_since_it_was_queued_and_never_stalls() -> None:
    drawn = verdict_of(released(), now=T0 + timedelta(days=5))
    assert drawn.verdict.ending is Ending.AWAITING_APPROVAL and not drawn.verdict.final
    assert drawn.verdict.text == "awaiting approval since 2026-11-20 18:40 UTC: credit:2 (release #151)"
    assert drawn.steps[-1].tone is Tone.WAITING
    hooked = verdict_of([*started(), entry(45, "hook-0", "mlreactor.ReleaseAwaitingApproval")])
    assert hooked.verdict.text.startswith("awaiting approval since 2026-11-20 18:45 UTC")
    reminded = verdict_of([*released(), entry(45, "hook-0", "mlreactor.ReleaseAwaitingApproval"),
                           entry(50 + 48 * 60, "reminder-1", "mlreactor.ReleaseAwaitingApproval")],
                          now=T0 + timedelta(days=3))
    assert reminded.verdict.text == "awaiting approval since 2026-11-20 18:40 UTC: credit:2 (release #151)", (
        "reminders do not restart the wait"
    )


def test_the_gate_rejecting_the_candidate_ends_the_chain_red_with_the_gates_summary() -> None:
    drawn = verdict_of([*started(), entry(40, "tested", AML + "RunCompleted", "acted", gate(False))])
    assert drawn.verdict.ending is Ending.REJECTED_BY_GATE
    assert drawn.verdict.text == "rejected by the gate: credit:2: failed: auc 0.74 >= 0.8 FAILED"
    assert drawn.steps[-1].tone is Tone.BAD, "an acted step that rejected is not a green dot"


def test_a_gate_result_recorded_before_results_were_structured_is_read_from_its_detail() -> None:
    old = {k: v for k, v in gate(False).items() if k != "data"}
    drawn = verdict_of([*started(), entry(40, "tested", AML + "RunCompleted", "acted", old)])
    assert drawn.verdict.ending is Ending.REJECTED_BY_GATE


def test_a_reviewer_rejecting_and_an_approval_expiring_are_bad_endings() -> None:
    rejected = verdict_of([*released(), entry(90, "hook-2", "ReleaseRejected")])
    assert rejected.verdict.ending is Ending.REJECTED_BY_REVIEWER
    assert rejected.verdict.text == "rejected by a reviewer: credit:2 at 2026-11-20 19:30 UTC"
    assert rejected.steps[-1].tone is Tone.BAD
    expired = verdict_of([*released(), entry(90, "hook-3", "ReleaseExpired")])
    assert expired.verdict.ending is Ending.APPROVAL_EXPIRED and expired.steps[-1].tone is Tone.BAD
    failed = verdict_of([*released(), entry(90, "hook-4", "ReleaseFailed")])
    assert failed.verdict.ending is Ending.FAILED and failed.verdict.text.startswith("failed at step release")


def test_an_approved_release_is_in_progress_until_it_deploys() -> None:
    drawn = verdict_of([*released(), entry(50, "hook-5", "ReleaseApproved")])
    assert drawn.verdict.ending is Ending.IN_PROGRESS
    assert "approved at 2026-11-20 18:50 UTC: credit:2, deploying" in drawn.verdict.text


def test_a_failed_chain_run_fails_the_chain_at_that_step_and_never_ends_on_a_green_dot() -> None:
    drawn = verdict_of([*started(), entry(30, "run-failed", AML + "RunStatusChanged", "acted",
                                          {"kind": "notify", "status": "done"},
                                          subject="experiments/x/runs/mlr-3f2a")])
    assert drawn.verdict.ending is Ending.FAILED
    assert drawn.verdict.text == "failed at step RunStatusChanged: run mlr-3f2a failed or was canceled"
    assert drawn.steps[-1].outcome == "acted" and drawn.steps[-1].tone is Tone.BAD


def test_a_quarantined_step_fails_the_chain_until_a_redrive_of_it_acts() -> None:
    broken = [*started()[:1], entry(20, "registered", AML + "ModelRegistered", "quarantined",
                                    reason="tag_model: 403 Forbidden")]
    drawn = verdict_of(broken)
    assert drawn.verdict.ending is Ending.FAILED
    assert drawn.verdict.text == "failed at step ModelRegistered: quarantined — tag_model: 403 Forbidden"
    redriven = verdict_of([*broken, entry(35, "registered", AML + "ModelRegistered", "acted",
                                          {"kind": "run_pipeline", "status": "done"})])
    assert redriven.verdict.ending is Ending.IN_PROGRESS
    assert len(redriven.steps) == 2 and [a.outcome for a in redriven.steps[1].attempts] == ["quarantined", "acted"]


def test_redeliveries_are_attempts_of_one_step_and_a_duplicate_does_not_hide_what_the_step_did() -> None:
    pipeline = {"rule": "r", "kind": "run_pipeline", "key": "k1", "status": "done", "detail": "job mlr-1 submitted"}
    drawn = verdict_of([
        entry(0, "drift", AML + "RunStatusChanged", "failed", pipeline,
              {"rule": "r", "kind": "notify", "key": "k2", "status": "retry", "detail": "Teams answered 503"},
              reason="will retry: r/notify: Teams answered 503"),
        entry(1, "drift", AML + "RunStatusChanged", "acted",
              {**pipeline, "status": "skipped", "detail": "already done: job mlr-1 submitted"},
              {"rule": "r", "kind": "notify", "key": "k2", "status": "done", "detail": "notified ops-teams"}),
        entry(2, "drift", AML + "RunStatusChanged", "duplicate", reason="already handled (outcome acted)"),
    ])
    (step,) = drawn.steps
    assert [a.outcome for a in step.attempts] == ["failed", "acted", "duplicate"]
    assert step.outcome == "acted" and step.tone is Tone.GOOD
    assert [(a["kind"], a["status"], a["detail"]) for a in step.actions] == [
        ("run_pipeline", "done", "job mlr-1 submitted"), ("notify", "done", "notified ops-teams")
    ], "each action as the attempt that did it recorded it"


def test_a_chain_with_no_event_for_longer_than_the_setting_is_stalled_at_its_step() -> None:
    fresh = verdict_of(started(), now=T0 + timedelta(hours=2))
    assert fresh.verdict.ending is Ending.IN_PROGRESS
    assert fresh.verdict.text == "in progress at step ModelRegistered (last event 1h 40m ago)"
    stale = verdict_of(started(), now=T0 + timedelta(days=2))
    assert stale.verdict.ending is Ending.STALLED and stale.verdict.step == "ModelRegistered"
    assert stale.verdict.text == "stalled at step ModelRegistered: no event for 1d 23h (more than 1d)"
    assert stale.steps[-1].tone is Tone.BAD


def test_a_step_failing_transiently_is_in_progress_while_it_is_the_last_and_stalls_like_any() -> None:
    retrying = [*started(), entry(40, "tested", AML + "RunCompleted", "failed", reason="will retry: 503")]
    assert "failing transiently (redelivered): will retry: 503" in verdict_of(retrying).verdict.text
    stale = verdict_of(retrying, now=T0 + timedelta(days=3))
    assert stale.verdict.ending is Ending.STALLED and stale.steps[-1].tone is Tone.BAD


def test_entries_in_any_order_give_steps_in_time_order() -> None:
    drawn = verdict_of(list(reversed([*released(), entry(90, "hook-1", "ReleaseDeployed")])))
    assert [s.kind for s in drawn.steps] == ["RunStatusChanged", "ModelRegistered", "RunCompleted", "ReleaseDeployed"]
    assert [s.at for s in drawn.steps] == sorted(s.at for s in drawn.steps)
