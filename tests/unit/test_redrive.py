"""Redrive: dead-lettered and quarantined events go back through the engine; redriving twice is safe."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime

from shared.actions import ActionKind
from shared.errors import PermanentError, TransientError
from shared.ops.redrive import DeadLettered, from_blobs, redrive
from tests.conftest import Harness, event

DEAD_LETTER = {"deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30,
               "lastDeliveryOutcome": "Probation", "publishTime": "2026-11-20T18:41:01Z",
               "lastDeliveryAttemptTime": "2026-11-21T18:41:01Z"}


class Blobs:
    """An in-memory stand-in for the dead-letter container (the Azurite test uses the real one)."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def names(self, since: datetime | None) -> Iterator[str]:
        return iter(sorted(self.blobs))

    def read(self, name: str) -> bytes:
        return self.blobs[name]


def dead_lettered(*names: str) -> Blobs:
    body = json.dumps([event(n) | DEAD_LETTER for n in names]).encode()
    folder = "mlw-prod-topic/sub/2026/11/21/18"
    return Blobs({f"{folder}/0001.json": body, f"{folder}/bad.json": b"{"})


def test_dead_lettered_events_are_replayed_and_a_second_redrive_is_all_duplicates(
    make_engine: Callable[..., Harness]
) -> None:
    h = make_engine()
    blobs = dead_lettered("model_registered", "run_status_changed_failed")
    first = redrive(h.engine, from_blobs(blobs, None))
    assert [r.outcome for r in first] == ["acted", "acted", "quarantined"]
    assert first[0].dead_letter_reason == "MaxDeliveryAttemptsExceeded"
    assert first[2].dead_letter_reason.startswith("blob is not JSON")
    second = redrive(h.engine, from_blobs(blobs, None))
    assert [r.outcome for r in second][:2] == ["duplicate", "duplicate"]
    assert len(h.executed()) == 3


def test_a_dry_run_plans_and_changes_nothing(make_engine: Callable[..., Harness]) -> None:
    h = make_engine()
    results = redrive(h.engine, from_blobs(dead_lettered("model_registered"), None), dry_run=True)
    assert [r.outcome for r in results] == ["planned", "quarantined"]
    assert "would run 2 action(s) of test-new-model" in results[0].reason
    assert h.executed() == [] and h.ledger.audit() == []


def test_a_quarantined_event_is_redriven_once_fixed_running_only_what_failed(
    make_engine: Callable[..., Harness]
) -> None:
    h = make_engine()
    h.adapters[ActionKind.RUN_PIPELINE].fail_next(PermanentError("403: no access to the workspace"))
    (outcome,) = h.engine.handle_delivery(json.dumps([event("model_registered")]))
    assert outcome.outcome.value == "quarantined"
    (record,) = h.ledger.quarantined()
    items = [DeadLettered("quarantine", record.raw, record.reason)]

    (result,) = redrive(h.engine, items, reopen=True)  # the role assignment was fixed

    assert result.outcome == "acted" and "1 already done before" in result.reason
    assert sorted(a.kind.value for a in h.executed() if a.rule != "on_quarantine") == ["run_pipeline", "tag_model"]
    (again,) = redrive(h.engine, items)
    assert again.outcome == "duplicate"


def test_quarantine_tells_ops_once_and_a_redrive_does_not_tell_again(make_engine: Callable[..., Harness]) -> None:
    h = make_engine()
    h.adapters[ActionKind.RUN_PIPELINE].fail_next(PermanentError("403: no access to the workspace"))
    (outcome,) = h.engine.handle_delivery(json.dumps([event("model_registered")]))
    (notice,) = [a for a in outcome.actions if a.rule == "on_quarantine"]
    assert (notice.kind, notice.status) == ("notify", "done")
    (told,) = h.adapters[ActionKind.NOTIFY].executed
    assert told.params.model_dump()["message"] == "event_quarantined"
    assert "403: no access" in told.params.model_dump()["facts"]["Reason"]
    (record,) = h.ledger.quarantined()
    redrive(h.engine, [DeadLettered("quarantine", record.raw, record.reason)], reopen=True)
    assert len(h.adapters[ActionKind.NOTIFY].executed) == 1


def test_a_transient_failure_during_redrive_is_reported_for_another_pass(make_engine: Callable[..., Harness]) -> None:
    h = make_engine()
    h.adapters[ActionKind.NOTIFY].fail_next(TransientError("Teams 503"))
    (result,) = redrive(h.engine, [DeadLettered("b", event("run_status_changed_failed") | DEAD_LETTER, "x")])
    assert result.outcome == "failed"
    (retry,) = redrive(h.engine, [DeadLettered("b", event("run_status_changed_failed") | DEAD_LETTER, "x")])
    assert retry.outcome == "acted"
