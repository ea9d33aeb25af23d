"""Faults on the wire land on the right outcome: retried in-process, redelivered by Event Grid, or quarantined."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.adapters.azureml import AzureMLAdapter, WorkspaceClients
from shared.adapters.azureml.timing import Timing
from shared.engine import Engine
from shared.errors import PermanentError, TransientError
from shared.events import parse_event
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import Outcome
from tests.azureml.conftest import OFFLINE_TEST_RULES, ROOT, engine_with, planned
from tests.conftest import FakeClock, event, rules_from
from tests.fakes.azureml import FakeAzureML

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

JOB_PUT = "/jobs/mlreactor-offline-test-"


@pytest.fixture
def engine(adapter: AzureMLAdapter, tmp_path: Path) -> Engine:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    yield engine_with(rules_from(OFFLINE_TEST_RULES), adapter, ledger, FakeClock())
    ledger.close()


def test_429_with_a_short_retry_after_is_waited_for_and_retried(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.fail("PUT", JOB_PUT, status=429, retry_after=0.5)
    started = time.monotonic()

    adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))

    puts = fake.calls("PUT")
    assert len(puts) == 2
    assert puts[1].at - puts[0].at >= 0.45  # the Retry-After was honoured
    assert len(fake.jobs()) == 1
    assert time.monotonic() - started < 5


def test_429_asking_for_longer_than_the_budget_is_not_waited_for_and_the_event_is_redelivered(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients], tmp_path: Path
):
    """GIVEN the service answers 429 Retry-After: 60 (the action budget is 6 s)
    WHEN the event is handled THEN no wait: outcome failed, the reason names the Retry-After (Event Grid redelivers)
    AND a redelivery inside those 60 s fails at once without sending anything
    AND the redelivery after them, with the service recovered, launches the job once."""
    later = [0.0]
    clients = make_clients(timing=Timing(clock=lambda: time.monotonic() + later[0]))
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    engine = engine_with(rules_from(OFFLINE_TEST_RULES), AzureMLAdapter(clients, ROOT), ledger, FakeClock())
    fake.fail("PUT", JOB_PUT, status=429, retry_after=60)
    typed = parse_event(event("model_registered"))
    started = time.monotonic()

    first = engine.handle(typed)

    assert time.monotonic() - started < 3
    assert first.outcome is Outcome.FAILED and first.should_raise
    assert "HTTP 429" in first.reason and "mlw-prod" in first.reason and "Retry-After 60 s" in first.reason
    assert fake.jobs() == []

    puts = len(fake.calls("PUT"))
    soon = engine.handle(typed)
    assert soon.outcome is Outcome.FAILED and "Retry-After" in soon.reason and "nothing was sent" in soon.reason
    assert len(fake.calls("PUT")) == puts

    later[0] = 61.0
    again = engine.handle(typed)

    assert again.outcome is Outcome.ACTED
    assert len(fake.jobs()) == 1
    ledger.close()


def test_503_is_retried_within_the_budget_then_transient(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.fail("PUT", JOB_PUT, status=503, times=10, message="The service is busy")

    with pytest.raises(TransientError, match=r"PUT pipeline job .*HTTP 503 ServiceError: The service is busy"):
        adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))

    assert len(fake.calls("PUT")) == 3  # azureml_retry_total=2


def test_a_503_then_success_is_one_job(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.fail("PUT", JOB_PUT, status=503)

    adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))

    assert len(fake.calls("PUT")) == 2
    assert len(fake.jobs()) == 1


def test_a_reset_connection_is_retried(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.fail("PUT", JOB_PUT, reset=True)

    adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))

    assert len(fake.calls("PUT")) == 2
    assert len(fake.jobs()) == 1


def test_a_connection_that_keeps_resetting_is_transient(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.fail("PUT", JOB_PUT, reset=True, times=10)

    with pytest.raises(TransientError, match="no answer in time"):
        adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))


def test_a_slow_answer_past_the_timeout_is_retried_and_the_job_is_still_one(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    """GIVEN the first PUT is answered after the read timeout (the service still creates the job)
    WHEN the client retries the same PUT THEN one job exists either way (the name is fixed)."""
    adapter = AzureMLAdapter(make_clients(azureml_timeout_seconds=0.5), ROOT)
    fake.fail("PUT", JOB_PUT, status=0, delay=1.0)

    adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))

    assert len(fake.calls("PUT")) == 2
    time.sleep(0.7)  # let the slow first PUT finish on the server
    assert len(fake.jobs()) == 1


def test_answers_that_never_come_in_time_are_transient_within_the_budget(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    adapter = AzureMLAdapter(make_clients(azureml_timeout_seconds=0.3, azureml_action_budget_seconds=1.5), ROOT)
    fake.fail("PUT", JOB_PUT, status=0, delay=1.0, times=10)
    started = time.monotonic()

    with pytest.raises(TransientError, match="no answer in time"):
        adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))

    assert time.monotonic() - started < 3


def test_403_is_quarantined_with_the_workspace_the_asset_and_what_the_service_said(
    fake: FakeAzureML, engine: Engine
):
    fake.fail("PUT", JOB_PUT, status=403, code="AuthorizationFailed",
              message="The client 'mi-mlreactor' does not have authorization to perform action 'jobs/write'.")

    outcome = engine.handle(parse_event(event("model_registered")))

    assert outcome.outcome is Outcome.QUARANTINED and not outcome.should_raise
    assert len(fake.calls("PUT")) == 1  # never retried
    (record,) = engine.ledger.quarantined()
    for part in ("workspace mlw-prod", "resource group rg-mlops", "PUT pipeline job mlreactor-offline-test-",
                 "HTTP 403 AuthorizationFailed", "does not have authorization to perform action 'jobs/write'"):
        assert part in record.reason, part
    assert "Bearer" not in record.reason and "eyJ" not in record.reason  # no token in the message


def test_404_on_a_component_is_permanent_and_names_it(fake: FakeAzureML, adapter: AzureMLAdapter):
    rules = OFFLINE_TEST_RULES.replace("job_yaml: pipelines/offline-test.yml", "component: offline_test:7")

    with pytest.raises(PermanentError, match=r"GET pipeline component offline_test:7: HTTP 404 .*not found"):
        adapter.execute(planned(rules, event("model_registered")))
    assert len(fake.requests) == 1


def test_one_action_never_outlives_its_budget_even_when_each_request_is_in_time(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    """GIVEN every MLflow set-tag takes 0.9 s (under the 1 s read timeout) and the action budget is 1.5 s
    WHEN tag_model sets two keys THEN the second set-tag is cut to what is left: transient, within the budget
    (Event Grid redelivers), instead of running on past it."""
    adapter = AzureMLAdapter(make_clients(azureml_timeout_seconds=1.0, azureml_action_budget_seconds=1.5), ROOT)
    fake.add_model("sklearn_regression_model", "20")
    fake.fail("POST", "/set-tag", status=0, delay=0.9, times=10)
    rules = OFFLINE_TEST_RULES.replace("""      - run_pipeline:
          purpose: offline-test
          job_yaml: pipelines/offline-test.yml
          inputs:
            model: "{{ model.asset }}"
""", """      - tag_model:
          set: {mlreactor.stage: candidate, mlreactor.chain: open}
""")
    started = time.monotonic()

    with pytest.raises(TransientError, match=r"MLflow set tag mlreactor\.chain on model "
                                             r"sklearn_regression_model:20: no answer in time"):
        adapter.execute(planned(rules, event("model_registered")))

    assert time.monotonic() - started < 1.9
    assert len(fake.calls("POST")) == 2


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_other_transient_statuses_are_retried_then_transient(fake: FakeAzureML, adapter: AzureMLAdapter, status: int):
    fake.fail("PUT", JOB_PUT, status=status, times=10)

    with pytest.raises(TransientError, match=f"HTTP {status}"):
        adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))
    assert len(fake.calls("PUT")) == 3


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_permanent_at_once(fake: FakeAzureML, adapter: AzureMLAdapter, status: int):
    fake.fail("PUT", JOB_PUT, status=status, message="the service's own words")

    with pytest.raises(PermanentError, match=f"HTTP {status} .*: the service's own words"):
        adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered")))
    assert len(fake.calls("PUT")) == 1
