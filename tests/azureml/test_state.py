"""The state the quality gate reads: job status, a run's metrics (event first, then the run, then its steps),
and a model's recorded metrics — typed, and as few requests as the data allows."""

from __future__ import annotations

import pytest

from shared.adapters.azureml import AzureMLState
from shared.errors import PermanentError
from shared.events import RunCompleted, Workspace, parse_event
from tests.azureml.conftest import ARM, HISTORY
from tests.conftest import event
from tests.fakes.azureml import FakeAzureML

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

WS = Workspace.parse(ARM)
assert WS is not None
RUN = "offline-test-run-1"


def completed(tags: dict[str, str] | None = None, properties: dict[str, str] | None = None) -> RunCompleted:
    raw = event("run_completed")
    raw["data"].update({"runId": RUN, "experimentName": "mlreactor-offline-test", "runTags": tags or {},
                        "runProperties": properties or {}})
    typed = parse_event(raw)
    assert isinstance(typed, RunCompleted)
    return typed


def test_job_state_is_typed_with_the_status_as_azure_ml_spells_it(fake: FakeAzureML, state: AzureMLState):
    fake.add_job(RUN, experiment="mlreactor-offline-test", status="Completed", tags={"mlreactor.purpose": "t"},
                 properties={"azureml.runsource": "azureml.PipelineRun"})

    job = state.job(WS, RUN)

    assert job.status == "Completed" and job.succeeded and job.terminal
    assert job.experiment_name == "mlreactor-offline-test"
    assert job.tags == {"mlreactor.purpose": "t"}
    assert job.properties["azureml.runsource"] == "azureml.PipelineRun"
    assert [(r.method, r.path) for r in fake.requests] == [("GET", f"{ARM}/jobs/{RUN}")]


def test_a_running_job_is_neither_terminal_nor_succeeded(fake: FakeAzureML, state: AzureMLState):
    fake.add_job(RUN, experiment="e", status="Running")

    job = state.job(WS, RUN)

    assert job.status == "Running" and not job.terminal and not job.succeeded


def test_metrics_in_the_event_cost_no_request(fake: FakeAzureML, state: AzureMLState):
    metrics = state.run_metrics(completed(tags={"mlreactor.metric.auc": "0.91", "other": "x"},
                                          properties={"mlreactor.metric.rmse": "12.5"}))

    assert metrics.source == "event"
    assert metrics.values == {"auc": 0.91, "rmse": 12.5}
    assert fake.requests == []


def test_metrics_not_in_the_event_are_read_from_the_run(fake: FakeAzureML, state: AzureMLState):
    fake.add_job(RUN, experiment="mlreactor-offline-test", tags={"mlreactor.metric.auc": "0.88"})

    metrics = state.run_metrics(completed())

    assert (metrics.source, metrics.values) == ("run", {"auc": 0.88})
    assert len(fake.requests) == 1


def test_metrics_of_a_pipeline_are_read_from_its_step_runs(fake: FakeAzureML, state: AzureMLState):
    """GIVEN a pipeline run whose evaluate step wrote the metrics WHEN read THEN GET the run, then list its steps."""
    fake.add_job(RUN, experiment="mlreactor-offline-test")
    fake.add_job("step-prep", experiment="mlreactor-offline-test", parent=RUN)
    fake.add_job("step-evaluate", experiment="mlreactor-offline-test", parent=RUN,
                 properties={"mlreactor.metric.auc": "0.93", "mlreactor.metric.f1": "0.8"})

    metrics = state.run_metrics(completed())

    assert metrics.source == "steps"
    assert metrics.values == {"auc": 0.93, "f1": 0.8}
    assert metrics.steps == ("step-evaluate",)
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", f"{ARM}/jobs/{RUN}"), ("GET", ARM), ("GET", "/discovery/mlw-prod"),  # host: once per client
        ("GET", f"{HISTORY}/runs/{RUN}/children"),
    ]


def test_a_run_without_metrics_says_so(fake: FakeAzureML, state: AzureMLState):
    fake.add_job(RUN, experiment="mlreactor-offline-test")

    metrics = state.run_metrics(completed())

    assert (metrics.source, metrics.values, metrics.steps) == ("none", {}, ())


def test_steps_that_disagree_on_a_metric_are_an_error(fake: FakeAzureML, state: AzureMLState):
    fake.add_job(RUN, experiment="e")
    fake.add_job("s1", experiment="e", parent=RUN, tags={"mlreactor.metric.auc": "0.9"})
    fake.add_job("s2", experiment="e", parent=RUN, tags={"mlreactor.metric.auc": "0.7"})

    with pytest.raises(PermanentError, match="steps disagree on auc"):
        state.run_metrics(completed())


def test_a_metric_that_is_not_a_number_is_an_error_not_a_zero(state: AzureMLState):
    with pytest.raises(PermanentError, match=r"metric mlreactor\.metric\.auc is not a number: 'high'"):
        state.run_metrics(completed(tags={"mlreactor.metric.auc": "high"}))


def test_a_model_versions_recorded_metrics_come_from_its_tags(fake: FakeAzureML, state: AzureMLState):
    fake.add_model("credit", "7", tags={"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.9"})

    model = state.model(WS, "credit", "7")

    assert (model.name, model.version, model.archived) == ("credit", "7", False)
    assert model.metrics == {"auc": 0.9}
    assert [(r.method, r.path) for r in fake.requests] == [("GET", f"{ARM}/models/credit/versions/7")]


def test_the_champion_is_the_newest_version_tagged_champion(fake: FakeAzureML, state: AzureMLState):
    fake.add_model("credit", "3", tags={"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.85"})
    fake.add_model("credit", "5", tags={"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.9"})
    fake.add_model("credit", "6", tags={"mlreactor.stage": "candidate"})

    champion = state.champion(WS, "credit")

    assert champion is not None and champion.version == "5" and champion.metrics == {"auc": 0.9}
    assert [r.path for r in fake.requests] == [f"{ARM}/models/credit/versions"]


def test_no_champion_yet_is_none(fake: FakeAzureML, state: AzureMLState):
    fake.add_model("credit", "1", tags={"mlreactor.stage": "candidate"})

    assert state.champion(WS, "credit") is None
