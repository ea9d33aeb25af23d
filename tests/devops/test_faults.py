"""Faults on the wire: what is retried here, what goes back to Event Grid, what is quarantined — and that a POST is
only repeated when the idempotency lookup says no run exists."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.devops.conftest import Release
from tests.fakes.azure_devops import FakeAzureDevOps, wrapped_exception

RUNS = "/_apis/pipelines/42/runs"


def test_given_429_with_retry_after_then_the_post_is_repeated_after_that_wait_without_a_lookup(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    """A 429 is refused before anything happens, so no lookup is needed before posting again."""
    release = make_release()
    fake_devops.fail_next("POST", RUNS, 429, headers={"Retry-After": "3"}, body=wrapped_exception(
        "TF400733: The request has been throttled.", "RequestThrottledException"))

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    assert release.sleeps[0] >= 3
    assert len(fake_devops.calls("POST")) == 2
    assert fake_devops.calls("GET", RUNS) == []
    assert len(fake_devops.runs) == 1


def test_given_500_on_the_post_then_it_looks_for_the_run_before_posting_again(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()
    fake_devops.fail_next("POST", RUNS, 500, body=wrapped_exception("Internal error", "InternalServerException"))

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    sequence = [r.method for r in fake_devops.requests if RUNS in r.path]
    assert sequence == ["POST", "GET", "POST"]
    assert len(fake_devops.runs) == 1
    assert 0 < release.sleeps[0] <= 8


def test_given_503_twice_then_backoff_grows_and_the_third_post_succeeds(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()
    fake_devops.fail_next("POST", RUNS, 503, times=2)

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    assert len(fake_devops.calls("POST")) == 3
    assert len(release.sleeps) == 2
    assert len(fake_devops.runs) == 1


def test_given_a_reset_connection_before_the_post_is_processed_then_it_is_posted_again(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()
    fake_devops.reset_next("POST", RUNS)

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    assert len(fake_devops.calls("POST")) == 2
    assert len(fake_devops.runs) == 1


def test_given_a_reset_after_the_run_was_created_then_the_lookup_finds_it_and_nothing_is_posted_again(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()
    fake_devops.reset_next("POST", RUNS, after_processing=True)

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    [run] = fake_devops.runs.values()
    assert len(fake_devops.calls("POST")) == 1
    assert outcome.actions[0].external_id == str(run["id"])
    assert len(fake_devops.calls("GET", RUNS)) == 1, "one runs-list call: the run's name carries the key"
    assert not fake_devops.calls("GET", f"{RUNS}/{run['id']}")


def test_given_a_pipeline_that_does_not_name_its_runs_with_the_key_then_the_lookup_reads_the_runs_one_by_one(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    fake_devops.run_names_carry_key = False
    release = make_release()
    fake_devops.reset_next("POST", RUNS, after_processing=True)

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    [run] = fake_devops.runs.values()
    assert len(fake_devops.calls("POST")) == 1
    assert fake_devops.calls("GET", f"{RUNS}/{run['id']}"), "the run was fetched to compare its releaseKey"


def test_given_503_beyond_the_retry_budget_then_event_grid_redelivers_and_the_redelivery_queues_once(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(devops_retry_attempts=2)
    fake_devops.fail_next("POST", RUNS, 503, times=3)

    first = release.deliver()

    assert first.outcome.value == "failed"
    assert first.should_raise
    assert "HTTP 503" in first.reason and "pipeline 42 in project mlops" in first.reason
    assert "Event Grid will redeliver" in first.reason

    second = release.deliver()

    assert second.outcome.value == "acted", second.reason
    assert len(fake_devops.runs) == 1


def test_given_a_retry_after_longer_than_the_budget_then_it_does_not_wait_and_leaves_it_to_event_grid(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(devops_retry_budget_seconds=10)
    fake_devops.fail_next("POST", RUNS, 429, headers={"Retry-After": "60"})

    outcome = release.deliver()

    assert outcome.outcome.value == "failed"
    assert "HTTP 429" in outcome.reason
    assert release.sleeps == []


def test_given_401_then_the_event_is_quarantined_with_a_message_naming_the_target_and_nothing_is_retried(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(devops_pat="a-revoked-pat")

    outcome = release.deliver()

    assert outcome.outcome.value == "quarantined"
    assert "HTTP 401" in outcome.reason
    assert "pipeline 42 in project mlops" in outcome.reason
    assert "sklearn_regression_model:20" in outcome.reason
    assert release.sleeps == []
    assert fake_devops.runs == {}


def test_given_404_with_a_wrapped_exception_then_the_service_message_is_in_the_quarantine_reason(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(PIPELINE_99)

    outcome = release.deliver()

    assert outcome.outcome.value == "quarantined"
    assert "HTTP 404: Pipeline with id 99 not found." in outcome.reason
    [record] = release.ledger.quarantined()
    assert "Pipeline with id 99 not found." in record.reason
    assert release.sleeps == []


def test_given_a_permanent_failure_then_a_fixed_rule_can_queue_the_release_later(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    """A failed attempt does not lock the model version forever: a redrive after the fix queues it (once)."""
    make_release(PIPELINE_99).deliver()
    fake_devops.pipelines.add(99)

    outcome = make_release(PIPELINE_99).deliver(id="redriven-event")

    assert outcome.outcome.value == "acted", outcome.reason
    assert len(fake_devops.runs) == 1


PIPELINE_99 = """
rules:
  - name: release-registered-model
    on: ModelRegistered
    do:
      - queue_release: {project: mlops, pipeline_id: 99, environment: production}
"""


@pytest.mark.parametrize("named", [True, False])
def test_after_a_dropped_post_with_many_earlier_runs_one_list_call_decides_when_run_names_carry_the_key(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps, named: bool
) -> None:
    """60 runs of other model versions in the window: by name, one list call says "none of these"; without the key
    in the names it would take 60 reads, more than the 50 a release may spend — it refuses rather than guess."""
    fake_devops.run_names_carry_key = named
    release = make_release()
    for n in range(60):
        release.deliver(id=f"earlier-{n}", data={"ModelName": f"model-{n}", "ModelVersion": 1})
    fake_devops.reset_next("POST", RUNS)
    lists_before = len(fake_devops.calls("GET", RUNS))

    outcome = release.deliver(id="dropped")

    lookups = fake_devops.calls("GET", RUNS)[lists_before:]
    if named:
        assert outcome.outcome.value == "acted", outcome.reason
        assert [r.path for r in lookups] == ["/contoso/mlops/_apis/pipelines/42/runs"]
        assert len(fake_devops.runs) == 61
    else:
        assert outcome.outcome.value == "quarantined"
        assert "60 runs in the last 26 h whose name carries no release key" in outcome.reason
        assert len(lookups) == 1 and len(fake_devops.runs) == 60
