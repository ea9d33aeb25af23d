"""The state the quality gate reads, through the real SDK against the fake: job status, a run's tags with its step
runs', model versions' tags — and the real gate judging with it."""

from __future__ import annotations

import pytest

from shared.adapters.azureml import AzureMLState
from shared.adapters.gate import GateAdapter
from shared.errors import PermanentError
from tests.azureml.conftest import ARM, HISTORY, planned
from tests.conftest import event
from tests.fakes.azureml import FakeAzureML

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

RUN = "offline-test-run-1"


def test_job_state_is_typed_with_the_status_as_azure_ml_spells_it(fake: FakeAzureML, state: AzureMLState):
    fake.add_job(RUN, experiment="mlreactor-offline-test", status="Completed", tags={"mlreactor.purpose": "t"},
                 properties={"azureml.runsource": "azureml.PipelineRun"})

    job = state.job(ARM, RUN)

    assert job.status == "Completed" and job.succeeded and job.terminal
    assert job.experiment_name == "mlreactor-offline-test"
    assert job.tags == {"mlreactor.purpose": "t"}
    assert job.properties["azureml.runsource"] == "azureml.PipelineRun"
    assert [(r.method, r.path) for r in fake.requests] == [("GET", f"{ARM}/jobs/{RUN}")]


def test_a_running_job_is_neither_terminal_nor_succeeded(fake: FakeAzureML, state: AzureMLState):
    fake.add_job(RUN, experiment="e", status="Running")

    job = state.job(ARM, RUN)

    assert job.status == "Running" and not job.terminal and not job.succeeded


def test_run_tags_merge_the_runs_own_with_its_step_runs(fake: FakeAzureML, state: AzureMLState):
    """GIVEN a pipeline run whose evaluate step wrote the metrics WHEN read THEN GET the run, list its steps;
    the run's own values win over a step's."""
    fake.add_job(RUN, experiment="mlreactor-offline-test", tags={"mlreactor.model_name": "credit"})
    fake.add_job("step-prep", experiment="mlreactor-offline-test", parent=RUN, tags={"mlreactor.model_name": "x"})
    fake.add_job("step-evaluate", experiment="mlreactor-offline-test", parent=RUN,
                 properties={"mlreactor.metric.auc": "0.93"})

    tags = state.run_tags(ARM, RUN)

    assert tags["mlreactor.model_name"] == "credit"
    assert tags["mlreactor.metric.auc"] == "0.93"
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", f"{ARM}/jobs/{RUN}"),
        ("GET", ARM), ("GET", "/discovery/mlw-prod"),  # the run-history host: once per client
        ("GET", f"{HISTORY}/runs/{RUN}/children"),
    ]


def test_a_model_versions_tags_or_none_when_there_is_no_such_version(fake: FakeAzureML, state: AzureMLState):
    fake.add_model("credit", "7", tags={"mlreactor.stage": "candidate", "mlreactor.metric.auc": "0.9"})

    assert state.model_tags(ARM, "credit", "7") == {"mlreactor.stage": "candidate", "mlreactor.metric.auc": "0.9"}
    assert state.model_tags(ARM, "credit", "8") is None
    assert [r.path for r in fake.requests] == [f"{ARM}/models/credit/versions/7", f"{ARM}/models/credit/versions/8"]


def test_a_forbidden_model_read_is_an_error_not_a_missing_model(fake: FakeAzureML, state: AzureMLState):
    fake.fail("GET", "/models/", status=403, code="AuthorizationFailed", message="no read access")

    with pytest.raises(PermanentError, match="HTTP 403 AuthorizationFailed: no read access"):
        state.model_tags(ARM, "credit", "7")


def test_the_champion_is_the_newest_active_version_carrying_the_tag(fake: FakeAzureML, state: AzureMLState):
    fake.add_model("credit", "3", tags={"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.85"})
    fake.add_model("credit", "5", tags={"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.9"})
    fake.add_model("credit", "6", tags={"mlreactor.stage": "candidate"})

    found = state.find_model_by_tag(ARM, "credit", "mlreactor.stage", "champion")

    assert found is not None and found[0] == "5" and found[1]["mlreactor.metric.auc"] == "0.9"
    assert [r.path for r in fake.requests] == [f"{ARM}/models/credit/versions"]
    assert state.find_model_by_tag(ARM, "credit", "mlreactor.stage", "retired") is None


def test_a_workspace_that_is_not_a_resource_id_is_permanent(state: AzureMLState):
    with pytest.raises(PermanentError, match="not an Azure ML workspace resource id"):
        state.job("mlw-prod", RUN)


def test_the_gate_judges_a_pipeline_run_against_the_champion_read_from_the_workspace(
    fake: FakeAzureML, state: AzureMLState
):
    """GIVEN an offline-test run whose metrics are on its evaluate step (not in the event), a registered candidate
    and a champion with recorded metrics WHEN the real gate runs on live state THEN it reads both and passes."""
    fake.add_model("credit", "7", tags={"mlreactor.stage": "candidate"})
    fake.add_model("credit", "5", tags={"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.85"})
    fake.add_job(RUN, experiment="mlreactor-offline-test")
    fake.add_job("evaluate", experiment="mlreactor-offline-test", parent=RUN, tags={"mlreactor.metric.auc": "0.91"})
    raw = event("run_completed")
    raw["data"].update({"runId": RUN, "experimentName": "mlreactor-offline-test", "runTags": {
        "mlreactor.model_name": "credit", "mlreactor.model_version": "7", "mlreactor.purpose": "offline-test"}})
    rules = """
rules:
  - name: gate
    on: RunCompleted
    do:
      - quality_gate:
          metrics:
            auc: {min: 0.8, min_improvement: 0.01}
"""

    result = GateAdapter(state).execute(planned(rules, raw))

    assert result.data["passed"] is True, result.detail
    assert "credit:7" in result.detail
    assert {r.path for r in fake.requests} >= {
        f"{ARM}/models/credit/versions/7", f"{ARM}/jobs/{RUN}", f"{HISTORY}/runs/{RUN}/children",
        f"{ARM}/models/credit/versions",
    }
