"""The ledger port's contract, run against both backends (SQLite file, Azure Table Storage on Azurite).

Every test names the behaviour the engine relies on; a backend passes only if it behaves the same.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.ledger.port import (
    ActionRecord,
    ActionStatus,
    AuditEntry,
    ClaimOutcome,
    EventStatus,
    Ledger,
    PurgeProgress,
    QuarantineRecord,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)
SOURCE = "/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/w"


def key(event_id: str) -> str:
    return f"{SOURCE}|{event_id}"


def result(action: str, event_id: str, status: ActionStatus = ActionStatus.DONE, at: datetime = T0,
           detail: str = "ok") -> ActionRecord:
    return ActionRecord(
        key=action, event_key=key(event_id), event_id=event_id, rule="r", kind="notify", status=status,
        external_id=f"x-{action}", detail=detail, url=None, updated_at=at,
    )


def entry(event_id: str | None, outcome: str = "acted", at: datetime = T0, correlation: str = "chain-1",
          reason: str = "") -> AuditEntry:
    return AuditEntry(
        at=at, event_key=key(event_id) if event_id else None, event_id=event_id, event_type="ModelRegistered",
        subject="models/m:1", source=SOURCE, correlation_id=correlation, outcome=outcome, reason=reason,
        reactions=["r"], actions=[{"rule": "r", "kind": "notify", "status": "done"}],
    )


# claim ------------------------------------------------------------------------------------------------------------
def test_given_a_new_event_when_claimed_then_it_is_claimed_with_a_lease_and_no_results(ledger: Ledger) -> None:
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert claim.outcome is ClaimOutcome.CLAIMED
    assert claim.record.status is EventStatus.IN_PROGRESS
    assert claim.record.lease_until == T0 + LEASE
    assert claim.record.attempts == 1
    assert claim.actions == {}


def test_given_a_live_lease_when_claimed_again_up_to_its_end_then_busy_and_at_its_end_resumed(
    ledger: Ledger, second_ledger: Ledger
) -> None:
    ledger.claim_event(key("e1"), "e1", T0, LEASE)

    just_before = second_ledger.claim_event(key("e1"), "e1", T0 + LEASE - timedelta(milliseconds=1), LEASE)
    at_the_end = second_ledger.claim_event(key("e1"), "e1", T0 + LEASE, LEASE)

    assert just_before.outcome is ClaimOutcome.BUSY
    assert at_the_end.outcome is ClaimOutcome.RESUMED
    assert at_the_end.record.attempts == 2
    assert at_the_end.record.lease_until == T0 + 2 * LEASE


def test_given_a_dead_instance_with_recorded_results_when_the_lease_runs_out_then_the_taker_gets_them(
    ledger: Ledger, second_ledger: Ledger
) -> None:
    ledger.claim_event(key("e1"), "e1", T0, LEASE)
    ledger.record_action(result("a1", "e1"))
    ledger.record_action(result("other-event-action", "e2"))

    taken = second_ledger.claim_event(key("e1"), "e1", T0 + LEASE + timedelta(seconds=1), LEASE)

    assert taken.outcome is ClaimOutcome.RESUMED
    assert set(taken.actions) == {"a1"}
    assert taken.actions["a1"].status is ActionStatus.DONE
    assert taken.actions["a1"].external_id == "x-a1"


def test_given_a_settled_event_when_claimed_again_then_it_is_a_duplicate_with_its_outcome(ledger: Ledger) -> None:
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert ledger.settle_event(claim.record, "acted", T0 + timedelta(seconds=1))
    again = ledger.claim_event(key("e1"), "e1", T0 + timedelta(hours=1), LEASE)

    assert again.outcome is ClaimOutcome.DONE
    assert again.record.outcome == "acted"
    assert again.record.status is EventStatus.DONE


def test_given_a_settled_event_with_results_when_claimed_again_then_done_comes_with_the_results_and_data(
    ledger: Ledger,
) -> None:
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    gate = replace(result("a1", "e1"), data={"verdict": "pass", "auc": 0.91, "metrics": {"f1": 0.8}})
    ledger.settle_event(claim.record, "acted", T0, actions=[gate])

    again = ledger.claim_event(key("e1"), "e1", T0 + timedelta(hours=1), LEASE)

    assert again.outcome is ClaimOutcome.DONE
    assert again.actions["a1"] == gate


def test_given_two_sources_that_use_one_event_id_when_each_claims_again_then_each_gets_only_its_results(
    ledger: Ledger,
) -> None:
    """Results are stored beside their event's id; the event key (source + id) still tells two events apart."""
    other = replace(result("b1", "e1"), event_key=f"{SOURCE}-other|e1")
    ours = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    theirs = ledger.claim_event(other.event_key, "e1", T0, LEASE)
    ledger.settle_event(ours.record, "acted", T0, actions=[result("a1", "e1")])
    ledger.settle_event(theirs.record, "acted", T0, actions=[other])

    assert set(ledger.claim_event(key("e1"), "e1", T0, LEASE).actions) == {"a1"}
    assert set(ledger.claim_event(other.event_key, "e1", T0, LEASE).actions) == {"b1"}


def test_given_a_released_event_when_claimed_again_then_it_resumes_at_once(ledger: Ledger) -> None:
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert ledger.settle_event(claim.record, None, T0 + timedelta(seconds=1))
    again = ledger.claim_event(key("e1"), "e1", T0 + timedelta(seconds=2), LEASE)

    assert again.outcome is ClaimOutcome.RESUMED
    assert again.record.attempts == 2


def test_given_many_instances_when_they_claim_one_new_event_at_once_then_exactly_one_gets_it(
    ledger: Ledger, second_ledger: Ledger
) -> None:
    instances = [ledger, second_ledger] * 4
    with ThreadPoolExecutor(len(instances)) as pool:
        outcomes = list(pool.map(lambda lg: lg.claim_event(key("e1"), "e1", T0, LEASE).outcome, instances))

    assert outcomes.count(ClaimOutcome.CLAIMED) == 1
    assert outcomes.count(ClaimOutcome.BUSY) == len(instances) - 1


def test_given_an_expired_lease_when_many_instances_take_over_at_once_then_exactly_one_resumes(
    ledger: Ledger, second_ledger: Ledger
) -> None:
    ledger.claim_event(key("e1"), "e1", T0, LEASE)
    later = T0 + LEASE + timedelta(seconds=1)
    instances = [ledger, second_ledger] * 4
    with ThreadPoolExecutor(len(instances)) as pool:
        outcomes = list(pool.map(lambda lg: lg.claim_event(key("e1"), "e1", later, LEASE).outcome, instances))

    assert outcomes.count(ClaimOutcome.RESUMED) == 1
    assert outcomes.count(ClaimOutcome.BUSY) == len(instances) - 1


def test_given_ids_with_characters_keys_forbid_when_claimed_then_they_work(ledger: Ledger) -> None:
    odd = "a/b\\c#d?e\tf|g" + "x" * 600

    assert ledger.claim_event(key(odd), odd, T0, LEASE).outcome is ClaimOutcome.CLAIMED
    assert ledger.claim_event(key(odd), odd, T0, LEASE).outcome is ClaimOutcome.BUSY
    assert ledger.claim_event("other-source|" + odd, odd, T0, LEASE).outcome is ClaimOutcome.CLAIMED


# settle -----------------------------------------------------------------------------------------------------------
def test_given_a_claim_when_settled_with_results_and_audit_then_all_are_stored(ledger: Ledger) -> None:
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    ledger.record_action(result("a1", "e1"))

    kept = ledger.settle_event(claim.record, "acted", T0, actions=[result("a2", "e1")], audit=entry("e1"))
    assert kept
    assert ledger.reopen_event(key("e1"), "e1", T0)
    again = ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert set(again.actions) == {"a1", "a2"}
    assert [e.outcome for e in ledger.audit(event_id="e1")] == ["acted"]


def test_given_a_lease_taken_over_when_the_slow_instance_settles_then_it_keeps_its_results_not_the_event(
    ledger: Ledger, second_ledger: Ledger
) -> None:
    slow = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    taker = second_ledger.claim_event(key("e1"), "e1", T0 + LEASE, LEASE)
    assert taker.outcome is ClaimOutcome.RESUMED

    kept = ledger.settle_event(
        slow.record, None, T0 + LEASE, actions=[result("a1", "e1")], audit=entry("e1", "failed")
    )

    assert not kept
    third = ledger.claim_event(key("e1"), "e1", T0 + LEASE + timedelta(seconds=1), LEASE)
    assert third.outcome is ClaimOutcome.BUSY  # the taker's lease is untouched
    assert second_ledger.settle_event(taker.record, "acted", T0 + LEASE, audit=entry("e1", "acted"))
    assert ledger.reopen_event(key("e1"), "e1", T0 + LEASE)
    assert set(ledger.claim_event(key("e1"), "e1", T0 + LEASE, LEASE).actions) == {"a1"}
    assert sorted(e.outcome for e in ledger.audit(event_id="e1")) == ["acted", "failed"]


# actions ----------------------------------------------------------------------------------------------------------
def test_given_a_done_result_when_a_later_result_arrives_then_done_is_final(ledger: Ledger) -> None:
    ledger.claim_event(key("e1"), "e1", T0, LEASE)
    ledger.record_action(result("a1", "e1", ActionStatus.DONE, detail="first"))
    ledger.record_action(result("a1", "e1", ActionStatus.FAILED, detail="second"))

    taken = ledger.claim_event(key("e1"), "e1", T0 + 2 * LEASE, LEASE)

    assert taken.actions["a1"].status is ActionStatus.DONE
    assert taken.actions["a1"].detail == "first"


def test_given_a_failed_result_when_a_redrive_succeeds_then_done_replaces_it(ledger: Ledger) -> None:
    ledger.claim_event(key("e1"), "e1", T0, LEASE)
    ledger.record_action(result("a1", "e1", ActionStatus.FAILED, detail="404 model not found"))
    ledger.record_action(result("a1", "e1", ActionStatus.DONE, detail="tagged"))

    taken = ledger.claim_event(key("e1"), "e1", T0 + 2 * LEASE, LEASE)

    assert taken.actions["a1"].status is ActionStatus.DONE
    assert taken.actions["a1"].detail == "tagged"


def test_given_an_adapters_sub_step_when_started_again_then_attempts_count_until_done_which_is_final(
    ledger: Ledger,
) -> None:
    first = ledger.start_action("sub", key("e1"), "e1", "r", "notify:teams", T0)
    second = ledger.start_action("sub", key("e1"), "e1", "r", "notify:teams", T0 + timedelta(seconds=10))
    ledger.record_action(replace(result("sub", "e1", detail="sent"), kind="notify:teams"))
    after_done = ledger.start_action("sub", key("e1"), "e1", "r", "notify:teams", T0 + timedelta(seconds=20))

    assert (first.status, first.attempts) == (ActionStatus.STARTED, 1)
    assert (second.status, second.attempts) == (ActionStatus.STARTED, 2)
    assert (after_done.status, after_done.attempts, after_done.detail) == (ActionStatus.DONE, 2, "sent")
    assert ledger.get_action("sub", "e1") == after_done
    assert ledger.get_action("nope", "e1") is None


def test_given_a_failed_sub_step_when_started_again_then_it_stays_failed_and_counts(ledger: Ledger) -> None:
    ledger.start_action("sub", key("e1"), "e1", "r", "notify:slack", T0)
    ledger.record_action(replace(result("sub", "e1", ActionStatus.FAILED, detail="404"), kind="notify:slack"))

    again = ledger.start_action("sub", key("e1"), "e1", "r", "notify:slack", T0 + timedelta(minutes=1))

    assert (again.status, again.attempts, again.detail) == (ActionStatus.FAILED, 2, "404")


# reopen -----------------------------------------------------------------------------------------------------------
def test_given_a_quarantined_event_when_reopened_then_the_next_claim_resumes(ledger: Ledger) -> None:
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    ledger.settle_event(claim.record, "quarantined", T0)

    assert ledger.reopen_event(key("e1"), "e1", T0)
    assert ledger.claim_event(key("e1"), "e1", T0, LEASE).outcome is ClaimOutcome.RESUMED


def test_given_an_unknown_or_unfinished_event_when_reopened_then_false(ledger: Ledger) -> None:
    ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert not ledger.reopen_event(key("e1"), "e1", T0)
    assert not ledger.reopen_event(key("nope"), "nope", T0)


# throttles --------------------------------------------------------------------------------------------------------
def test_given_a_throttle_window_when_others_fire_then_suppressed_and_counted_until_a_new_window(
    ledger: Ledger,
) -> None:
    window = timedelta(minutes=10)

    first = ledger.acquire_throttle("retrain|m1", "event-a", window, T0)
    second = ledger.acquire_throttle("retrain|m1", "event-b", window, T0 + timedelta(minutes=1))
    third = ledger.acquire_throttle("retrain|m1", "event-c", window, T0 + timedelta(minutes=2))
    redelivered = ledger.acquire_throttle("retrain|m1", "event-a", window, T0 + timedelta(minutes=3))
    next_window = ledger.acquire_throttle("retrain|m1", "event-d", window, T0 + window)

    assert (first.allowed, first.suppressed, first.window_start) == (True, 0, T0)
    assert (second.allowed, second.suppressed) == (False, 1)
    assert (third.allowed, third.suppressed, third.window_start) == (False, 2, T0)
    assert (redelivered.allowed, redelivered.window_start) == (True, T0)
    assert (next_window.allowed, next_window.suppressed, next_window.window_start) == (True, 2, T0 + window)


def test_given_many_instances_when_they_fire_one_throttle_at_once_then_one_is_allowed_and_all_are_counted(
    ledger: Ledger, second_ledger: Ledger
) -> None:
    instances = [(ledger if i % 2 else second_ledger, f"event-{i}") for i in range(8)]
    with ThreadPoolExecutor(len(instances)) as pool:
        decisions = list(pool.map(
            lambda pair: pair[0].acquire_throttle("notify|x", pair[1], timedelta(hours=1), T0), instances
        ))

    assert sum(d.allowed for d in decisions) == 1
    assert sorted(d.suppressed for d in decisions if not d.allowed) == list(range(1, 8))


# quarantine -------------------------------------------------------------------------------------------------------
def test_given_quarantined_payloads_when_listed_then_raw_payloads_come_back_oldest_first(ledger: Ledger) -> None:
    big = '{"data": "' + "x" * 300_000 + '"}'  # above a table property's limit: the Tables ledger keeps it in a blob
    ledger.quarantine(QuarantineRecord(T0 + timedelta(days=1), key("e2"), "e2", "400 from Azure ML", big))
    ledger.quarantine(QuarantineRecord(T0, None, None, "not JSON", "{oops"))

    listed = ledger.quarantined()
    recent = ledger.quarantined(since=T0 + timedelta(hours=1))

    assert [(q.event_id, q.reason, q.raw) for q in listed] == [
        (None, "not JSON", "{oops"), ("e2", "400 from Azure ML", big)
    ]
    assert [q.event_id for q in recent] == ["e2"]
    assert listed[1].at == T0 + timedelta(days=1)


def test_given_an_event_settled_as_quarantined_with_its_record_then_both_are_stored(ledger: Ledger) -> None:
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert ledger.settle_event(claim.record, "quarantined", T0, audit=entry("e1", "quarantined"),
                               quarantine=QuarantineRecord(T0, key("e1"), "e1", "gate missing", '{"id": "e1"}'))

    assert [(q.event_id, q.reason, q.raw) for q in ledger.quarantined()] == [("e1", "gate missing", '{"id": "e1"}')]
    assert ledger.claim_event(key("e1"), "e1", T0, LEASE).record.outcome == "quarantined"


# audit ------------------------------------------------------------------------------------------------------------
def test_given_audit_entries_when_read_by_event_or_correlation_then_only_theirs_newest_first(ledger: Ledger) -> None:
    ledger.record_audit(entry("chain-1", "acted", T0 - timedelta(minutes=1), "chain-1"))  # the chain's first event
    ledger.record_audit(entry("e1", "failed", T0, "chain-1"))
    ledger.record_audit(entry("e1", "acted", T0 + timedelta(seconds=30), "chain-1"))
    ledger.record_audit(entry("e2", "acted", T0 + timedelta(minutes=1), "chain-1"))
    ledger.record_audit(entry("e3", "ignored", T0 + timedelta(minutes=2), "chain-2"))
    ledger.record_audit(entry("chain-2", "acted", T0 + timedelta(minutes=3), "chain-2"))
    ledger.record_audit(entry(None, "rejected", T0 + timedelta(minutes=4), "chain-1"))  # no event id

    by_event = ledger.audit(event_id="e1")
    by_chain = ledger.audit(correlation_id="chain-1")

    assert [(e.event_id, e.outcome) for e in by_event] == [("e1", "acted"), ("e1", "failed")]
    assert [(e.event_id, e.outcome) for e in by_chain] == [
        (None, "rejected"), ("e2", "acted"), ("e1", "acted"), ("e1", "failed"), ("chain-1", "acted")]
    assert by_event[0] == entry("e1", "acted", T0 + timedelta(seconds=30), "chain-1")


def test_given_audit_entries_when_read_since_and_limited_then_the_newest_within_the_limit(ledger: Ledger) -> None:
    for minute in range(5):
        ledger.record_audit(entry(f"e{minute}", at=T0 + timedelta(minutes=minute), correlation=f"c{minute}"))
    ledger.record_audit(entry(None, "quarantined", T0 + timedelta(minutes=9), correlation="", reason="not JSON"))

    latest = ledger.audit(limit=3)
    since = ledger.audit(since=T0 + timedelta(minutes=3))
    one_chain_since = ledger.audit(correlation_id="c1", since=T0 + timedelta(minutes=3))

    assert [e.event_id for e in latest] == [None, "e4", "e3"]
    assert [e.event_id for e in since] == [None, "e4", "e3"]
    assert latest[0].reason == "not JSON"
    assert one_chain_since == []


def test_given_a_very_long_reason_when_audited_then_it_is_stored(ledger: Ledger) -> None:
    long = "permanent failure: " + "detail " * 20_000

    ledger.record_audit(entry("e1", "quarantined", reason=long))

    stored = ledger.audit(event_id="e1")[0].reason
    assert stored.startswith("permanent failure: detail")


# retention --------------------------------------------------------------------------------------------------------
def test_given_old_and_new_records_when_purged_then_only_the_old_go(ledger: Ledger) -> None:
    old, new = T0, T0 + timedelta(days=100)
    for when, name in ((old, "old"), (new, "new")):
        claim = ledger.claim_event(key(name), name, when, LEASE)
        ledger.settle_event(claim.record, "acted", when, actions=[result(f"a-{name}", name, at=when)],
                            audit=entry(name, at=when, correlation=f"chain-{name}"))
        ledger.quarantine(QuarantineRecord(when, key(name), name, "bad", "{}"))
        ledger.acquire_throttle(f"t|{name}", name, timedelta(hours=1), when)

    purged = ledger.purge(T0 + timedelta(days=90))

    assert purged == PurgeProgress(5, finished=True)  # event, action, audit entry, quarantine record, throttle window
    assert ledger.claim_event(key("old"), "old", new, LEASE).outcome is ClaimOutcome.CLAIMED
    assert ledger.claim_event(key("new"), "new", new, LEASE).outcome is ClaimOutcome.DONE
    assert [e.event_id for e in ledger.audit()] == ["new"]
    assert ledger.audit(correlation_id="chain-old") == []
    assert [q.event_id for q in ledger.quarantined()] == ["new"]
    assert ledger.acquire_throttle("t|old", "someone", timedelta(hours=1), new).allowed
