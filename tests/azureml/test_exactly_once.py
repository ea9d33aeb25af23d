"""Exactly once through the real Engine + SqliteLedger + live adapter: a crash after the job PUT, then redelivery."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared.actions import ActionKind, ActionResult, PlannedAction
from shared.adapters.azureml import AzureMLAdapter
from shared.engine import Engine
from shared.errors import TransientError
from shared.events import parse_event
from shared.ledger.port import ActionStatus
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import Outcome
from shared.reactions import load_rules
from tests.azureml.conftest import engine_with
from tests.conftest import ROOT, FakeClock, ProcessDied, event
from tests.fakes.azureml import FakeAzureML

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

MODEL = "sklearn_regression_model"


class DiesAfterLaunch:
    """The live adapter, with a death injected after it returns (the job PUT is done) and before the engine
    records the result with ``finish_action``."""

    live = True

    def __init__(self, inner: AzureMLAdapter, death: BaseException) -> None:
        self.inner = inner
        self.death: BaseException | None = death

    def execute(self, action: PlannedAction) -> ActionResult:
        result = self.inner.execute(action)
        if action.kind is ActionKind.RUN_PIPELINE and self.death is not None:
            death, self.death = self.death, None
            raise death
        return result


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    store = SqliteLedger(tmp_path / "ledger.sqlite3")
    yield store
    store.close()


def shipped_engine(adapter: object, ledger: SqliteLedger, clock: FakeClock) -> Engine:
    """The shipped reactions.yaml: a ModelRegistered event tags the model, then launches the offline test."""
    engine = engine_with(load_rules(ROOT / "reactions.yaml"), adapter, ledger, clock)  # type: ignore[arg-type]
    engine.lease = timedelta(minutes=2)
    return engine


def test_a_crash_between_the_job_put_and_the_ledger_record_still_makes_one_job(
    fake: FakeAzureML, adapter: AzureMLAdapter, ledger: SqliteLedger
):
    """GIVEN the worker dies right after the offline-test job was PUT, before the ledger records it
    WHEN Event Grid redelivers the event after the dead instance's lease expired
    THEN the action resumes, finds the job by its name and records it: still one job, one PUT."""
    fake.add_model(MODEL, "20")
    clock = FakeClock()
    engine = shipped_engine(DiesAfterLaunch(adapter, ProcessDied()), ledger, clock)
    typed = parse_event(event("model_registered"))

    with pytest.raises(ProcessDied):
        engine.handle(typed)
    assert len(fake.jobs()) == 1
    job = fake.jobs()[0]

    busy = engine.handle(typed)  # redelivered while the dead instance's lease still runs
    assert busy.outcome is Outcome.FAILED and busy.should_raise

    clock.advance(minutes=3)
    fake.clear()
    again = engine.handle(typed)

    assert again.outcome is Outcome.ACTED
    assert fake.jobs() == [job]
    assert fake.calls("PUT", "/jobs/") == []
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.calls(path="/jobs/")] == [("GET", job)]
    (launch,) = [a for a in again.actions if a.kind == "run_pipeline"]
    assert launch.status == "done" and launch.external_id == job
    assert "already launched by an earlier attempt" in launch.detail
    record = ledger.get_action(launch.key, typed.id)
    assert record is not None and record.status is ActionStatus.DONE and record.external_id == job
    (tagging,) = [a for a in again.actions if a.kind == "tag_model"]
    assert tagging.status == "skipped"  # done before the crash, not redone


def test_a_transient_failure_after_the_put_is_redelivered_without_a_second_job(
    fake: FakeAzureML, adapter: AzureMLAdapter, ledger: SqliteLedger
):
    fake.add_model(MODEL, "20")
    engine = shipped_engine(DiesAfterLaunch(adapter, TransientError("connection lost after the PUT")), ledger,
                            FakeClock())
    typed = parse_event(event("model_registered"))

    first = engine.handle(typed)
    second = engine.handle(typed)
    third = engine.handle(typed)

    assert first.outcome is Outcome.FAILED
    assert second.outcome is Outcome.ACTED
    assert third.outcome is Outcome.DUPLICATE
    assert len(fake.jobs()) == 1
    assert len(fake.calls("PUT", "/jobs/")) == 1


def test_the_shipped_retrain_rule_launches_its_pipeline_once_with_the_chains_correlation(
    fake: FakeAzureML, adapter: AzureMLAdapter, ledger: SqliteLedger
):
    """GIVEN the shipped rules and a drift event WHEN it is delivered twice THEN one retrain job, whose literal
    inputs carry the monitor and the correlation id the register step puts on the new model version."""
    fake.add_data("training-data", "3")
    engine = shipped_engine(adapter, ledger, FakeClock())
    typed = parse_event(event("dataset_drift_detected"))

    first = engine.handle(typed)
    second = engine.handle(typed)

    assert first.outcome is Outcome.ACTED, first.reason
    assert second.outcome is Outcome.DUPLICATE
    (put,) = fake.calls("PUT", "/jobs/")
    inputs = put.body["properties"]["inputs"]
    assert inputs["monitor"] == {"value": "myDriftMonitor", "jobInputType": "literal"}
    assert inputs["correlation_id"] == {"value": typed.correlation_id, "jobInputType": "literal"}
    assert put.body["properties"]["experimentName"] == "mlreactor-retrain"
