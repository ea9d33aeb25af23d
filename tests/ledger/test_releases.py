"""The ledger's release records, run against both backends (SQLite file, Azure Table Storage on Azurite).

A release mlreactor queued is found again by what its target calls it (kind, organization or repository, run or
release id); its state only moves forward; the reconciler lists the ones still pending, least recently checked first.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.ledger.port import Ledger, ReleaseRecord, ReleaseState

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WORKSPACE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w"


def release(release_id: str = "101", target: str = "azure-devops-pipeline", scope: str = "contoso",
            at: datetime = T0) -> ReleaseRecord:
    return ReleaseRecord(
        target=target, scope=scope, release_id=release_id, model="credit-fraud", version="2",
        correlation_id="chain-1", workspace=WORKSPACE, queued_at=at, project="mlops", definition="42",
        environment="production", url=f"https://dev.azure.com/contoso/mlops/_build/results?buildId={release_id}",
        release_key="k" * 64,
    )


def test_a_tracked_release_is_found_by_target_scope_and_id(ledger: Ledger) -> None:
    assert ledger.track_release(release()) is True
    found = ledger.find_release("azure-devops-pipeline", "Contoso", "101")  # organization names ignore case
    assert found is not None
    assert (found.model, found.version, found.correlation_id, found.workspace) == ("credit-fraud", "2", "chain-1",
                                                                                   WORKSPACE)
    assert (found.project, found.definition, found.environment, found.state) == ("mlops", "42", "production",
                                                                                 ReleaseState.QUEUED)
    assert found.queued_at == T0 and found.waiting_since is None


def test_another_target_kind_scope_or_id_is_not_the_same_release(ledger: Ledger) -> None:
    ledger.track_release(release())
    assert ledger.find_release("azure-devops-release", "contoso", "101") is None
    assert ledger.find_release("azure-devops-pipeline", "fabrikam", "101") is None
    assert ledger.find_release("azure-devops-pipeline", "contoso", "102") is None


def test_tracking_twice_keeps_the_first_record(ledger: Ledger) -> None:
    assert ledger.track_release(release()) is True
    assert ledger.track_release(replace(release(), model="forged")) is False
    found = ledger.find_release("azure-devops-pipeline", "contoso", "101")
    assert found is not None and found.model == "credit-fraud"


def test_state_moves_forward_only_and_a_terminal_state_is_final(ledger: Ledger) -> None:
    record = release()
    ledger.track_release(record)
    at = T0 + timedelta(minutes=5)
    assert ledger.advance_release(record.key, ReleaseState.AWAITING_APPROVAL, at, waiting_since=at) is True
    assert ledger.advance_release(record.key, ReleaseState.AWAITING_APPROVAL, at) is False  # same state: no move
    assert ledger.advance_release(record.key, ReleaseState.DEPLOYED, at + timedelta(hours=1)) is True
    assert ledger.advance_release(record.key, ReleaseState.APPROVED, at + timedelta(hours=2)) is False
    assert ledger.advance_release(record.key, ReleaseState.FAILED, at + timedelta(hours=2)) is False
    found = ledger.find_release(record.target, record.scope, record.release_id)
    assert found is not None and found.state is ReleaseState.DEPLOYED
    assert found.waiting_since == at
    assert found.checked_at == at + timedelta(hours=2)


def test_an_unknown_release_does_not_advance(ledger: Ledger) -> None:
    assert ledger.advance_release("azure-devops-pipeline|contoso|999", ReleaseState.DEPLOYED, T0) is False


def test_pending_releases_are_the_non_terminal_ones_least_recently_checked_first(ledger: Ledger) -> None:
    for number in ("1", "2", "3", "4"):
        ledger.track_release(release(number, at=T0 + timedelta(minutes=int(number))))
    ledger.advance_release(release("1").key, ReleaseState.AWAITING_APPROVAL, T0 + timedelta(hours=1))
    ledger.advance_release(release("2").key, ReleaseState.REJECTED, T0 + timedelta(hours=1))
    ledger.advance_release(release("3").key, ReleaseState.APPROVED, T0 + timedelta(minutes=30))
    pending = [r.release_id for r in ledger.pending_releases(limit=10)]
    assert pending == ["4", "3", "1"]  # never checked first, then by last check
    assert [r.release_id for r in ledger.pending_releases(limit=2)] == ["4", "3"]


def test_two_instances_moving_one_release_at_once_move_it_once(ledger: Ledger, second_ledger: Ledger) -> None:
    record = release()
    ledger.track_release(record)
    with ThreadPoolExecutor(max_workers=2) as pool:
        moved = list(pool.map(
            lambda pair: pair[0].advance_release(record.key, pair[1], T0 + timedelta(minutes=1)),
            [(ledger, ReleaseState.DEPLOYED), (second_ledger, ReleaseState.REJECTED)],
        ))
    assert sorted(moved) == [False, True]
    found = ledger.find_release(record.target, record.scope, record.release_id)
    assert found is not None and found.state in (ReleaseState.DEPLOYED, ReleaseState.REJECTED)


def test_purge_removes_releases_untouched_since_the_cutoff(ledger: Ledger) -> None:
    ledger.track_release(release("old"))
    ledger.track_release(release("new", at=T0 + timedelta(days=100)))
    ledger.purge(T0 + timedelta(days=50))
    assert ledger.find_release("azure-devops-pipeline", "contoso", "old") is None
    assert ledger.find_release("azure-devops-pipeline", "contoso", "new") is not None
