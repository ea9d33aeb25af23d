"""run_pipeline through the real azure-ai-ml against the HTTPS fake: what goes on the wire, and exactly once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from http import HTTPMethod
from pathlib import Path

import pytest

from shared.adapters.azureml import AzureMLAdapter, WorkspaceClients
from shared.adapters.azureml.pipelines import job_name
from shared.errors import PermanentError
from tests.azureml.conftest import ARM, HISTORY, SUB, planned
from tests.conftest import event
from tests.fakes.azureml import FakeAzureML

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

MODEL = "sklearn_regression_model"
MODEL_ARM = f"{ARM}/models/{MODEL}/versions/20"
OFFLINE_TEST_YAML = """
rules:
  - name: test-new-model
    on: ModelRegistered
    do:
      - run_pipeline:
          purpose: offline-test
          job_yaml: pipelines/offline-test.yml
          experiment_name: mlreactor-offline-test
          display_name: "offline test of {{ model.id }}"
          inputs:
            model: "{{ model.asset }}"
          tags:
            team: risk
"""


def rule_with(source: str, **extra: str) -> str:
    lines = "".join(f"\n          {k}: {v}" for k, v in extra.items())
    return f"""
rules:
  - name: test-new-model
    on: ModelRegistered
    do:
      - run_pipeline:
          purpose: offline-test
          {source}{lines}
          experiment_name: mlreactor-offline-test
          inputs:
            model: "{{{{ model.asset }}}}"
"""


def test_a_job_yaml_is_put_under_a_name_derived_from_the_action_key(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN the shipped offline-test YAML and a ModelRegistered event
    WHEN the action runs
    THEN one PUT of the job carries the model's ARM id, the experiment, the display name and the chain's tags."""
    action = planned(OFFLINE_TEST_YAML, event("model_registered"))

    result = adapter.execute(action)

    name = job_name(action, "offline-test")
    assert name == f"mlreactor-offline-test-{action.key[:24]}"
    (put,) = fake.calls("PUT", "/jobs/")
    assert put.path == f"{ARM}/jobs/{name}"
    assert put.api_version == "2024-01-01-preview"
    assert put.headers["Authorization"].startswith("Bearer ")
    assert "x-azureml-token" in {k.lower() for k in put.headers}  # the second, ml.azure.com-audience token
    body = put.body["properties"]
    assert body["jobType"] == "Pipeline"
    assert body["experimentName"] == "mlreactor-offline-test"
    assert body["displayName"] == f"offline test of {MODEL}:20"
    assert body["inputs"]["model"] == {"uri": MODEL_ARM, "jobInputType": "mlflow_model"}
    assert body["inputs"]["test_data"]["uri"] == f"{ARM}/data/holdout-data/versions/1"  # YAML default kept
    assert body["tags"] == {
        "team": "risk",
        "mlreactor.correlation": action.correlation_id,
        "mlreactor.event": "831e1650-001e-001b-66ab-eeb76e069631",
        "mlreactor.reaction": "test-new-model",
        "mlreactor.purpose": "offline-test",
        "mlreactor.model_name": MODEL,
        "mlreactor.model_version": "20",
    }
    assert result.external_id == name
    assert result.url and name in result.url
    assert "launched pipeline job" in result.detail and "mlw-prod" in result.detail


def test_a_literal_input_of_a_job_yaml_is_overridden_as_a_value(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN the retrain YAML, whose ``monitor`` input is a string WHEN it runs THEN the value replaces the default."""
    fake.add_data("training-data", "4")
    rules = """
rules:
  - name: retrain
    on: DatasetDriftDetected
    do:
      - run_pipeline:
          purpose: retrain
          job_yaml: pipelines/retrain.yml
          compute: gpu-cluster
          inputs:
            monitor: "{{ monitor.name }}"
"""
    adapter.execute(planned(rules, event("dataset_drift_detected")))

    (put,) = fake.calls("PUT", "/jobs/")
    body = put.body["properties"]
    assert body["inputs"]["monitor"] == {"value": "myDriftMonitor", "jobInputType": "literal"}
    assert body["settings"]["default_compute"] == f"{ARM}/computes/gpu-cluster"
    assert body["experimentName"] == "mlreactor-retrain"  # from the YAML: the rule names none
    assert body["inputs"]["training_data"]["uri"] == f"{ARM}/data/training-data/versions/4"  # @latest resolved


def test_a_registered_component_is_looked_up_by_version_then_launched(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN component ``offline_test:2`` WHEN the action runs THEN GET that version, PUT a job pointing at it."""
    fake.add_component("offline_test", "1")
    fake.add_component("offline_test", "2")

    adapter.execute(planned(rule_with("component: offline_test:2", compute="cpu-cluster"), event("model_registered")))

    get, put = fake.requests
    assert (get.method, get.path) == ("GET", f"{ARM}/components/offline_test/versions/2")
    assert get.api_version == "2024-01-01-preview"
    body = put.body["properties"]
    assert body["componentId"] == f"{ARM}/components/offline_test/versions/2"
    assert body["inputs"]["model"] == {"uri": MODEL_ARM, "jobInputType": "mlflow_model"}
    assert body["settings"]["default_compute"] == f"{ARM}/computes/cpu-cluster"


def test_a_component_label_resolves_to_the_newest_version(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN ``offline_test@latest`` WHEN the action runs THEN the version list is read and the newest is used."""
    fake.add_component("offline_test", "1")
    fake.add_component("offline_test", "3")

    adapter.execute(planned(rule_with("component: offline_test@latest"), event("model_registered")))

    get, put = fake.requests
    assert (get.method, get.path) == ("GET", f"{ARM}/components/offline_test/versions")
    assert put.body["properties"]["componentId"].endswith("/components/offline_test/versions/3")


def test_a_batch_endpoint_is_invoked_with_the_job_name_then_tagged(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN a batch endpoint with a pipeline deployment WHEN the action runs
    THEN POST to its scoring URI names the job, the model goes as a literal, and a run-history PATCH tags the job."""
    fake.add_batch_endpoint("offline-test-ep", ("blue", "green"))
    action = planned(rule_with("batch_endpoint: offline-test-ep", batch_deployment="green"), event("model_registered"))

    result = adapter.execute(action)

    name = job_name(action, "offline-test")
    (post,) = fake.calls("POST")
    assert post.path == f"/score/{SUB}/rg-mlops/mlw-prod/offline-test-ep/jobs"
    assert post.headers["azureml-model-deployment"] == "green"
    assert post.body == {"properties": {
        "inputData": {"model": {"jobInputType": "Literal", "value": f"azureml:{MODEL}:20"}},
        "name": name,
        "properties": {"experimentName": "mlreactor-offline-test"},
    }}
    (patch,) = fake.calls(HTTPMethod.PATCH)
    assert patch.path == f"{HISTORY}/experiments/mlreactor-offline-test/runs/{name}"
    assert patch.body["tags"]["mlreactor.correlation"] == action.correlation_id
    assert patch.body["tags"]["mlreactor.model_version"] == "20"
    assert fake.job(name)["properties"]["tags"]["mlreactor.purpose"] == "offline-test"
    assert result.external_id == name


def test_a_rule_may_send_the_job_to_another_workspace(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN a rule naming a prod workspace WHEN an event from mlw-prod fires it THEN the job goes to the other one."""
    other = ARM.replace("rg-mlops", "rg-prod").replace("mlw-prod", "mlw-release")
    adapter.execute(planned(rule_with("job_yaml: pipelines/offline-test.yml", workspace=other),
                            event("model_registered")))

    (put,) = fake.calls("PUT")
    assert put.path.startswith(f"{other}/jobs/mlreactor-offline-test-")
    assert put.body["properties"]["inputs"]["model"]["uri"] == f"{other}/models/{MODEL}/versions/20"


def test_one_client_per_workspace_is_built_once_and_reused(fake: FakeAzureML, adapter: AzureMLAdapter):
    other = ARM.replace("mlw-prod", "mlw-dev")
    first = planned(rule_with("job_yaml: pipelines/offline-test.yml"), event("model_registered"))
    elsewhere = planned(rule_with("job_yaml: pipelines/offline-test.yml", workspace=other), event("model_registered"))
    adapter.execute(first)
    client = adapter.clients.get(first.event.workspace)  # type: ignore[arg-type]
    adapter.execute(planned(rule_with("job_yaml: pipelines/offline-test.yml"), event("model_registered", id="e2")))
    adapter.execute(elsewhere)

    assert adapter.clients.get(first.event.workspace) is client  # type: ignore[arg-type]
    assert len(adapter.clients._clients) == 2


def test_a_job_that_already_exists_counts_as_done(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN the job was created before (a lost ledger record) WHEN the action runs again, not even marked resumed
    THEN the service refuses the second PUT (409), the adapter reads the job and reports it done: one job."""
    action = planned(OFFLINE_TEST_YAML, event("model_registered"))
    adapter.execute(action)
    fake.clear()

    result = adapter.execute(action)

    assert [r.method for r in fake.requests] == ["PUT", "GET"]  # the refused PUT, then the job
    assert "already launched" in result.detail
    assert fake.jobs() == [job_name(action, "offline-test")]


def test_a_resumed_action_looks_before_it_launches(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN an earlier attempt recorded its intent, then the job PUT went through but not the result
    WHEN the action is resumed THEN one GET finds the job and nothing is sent again."""
    action = planned(OFFLINE_TEST_YAML, event("model_registered"))
    adapter.execute(action)
    fake.clear()

    result = adapter.execute(replace(action, resumed=True))

    (get,) = fake.requests
    assert (get.method, get.path) == ("GET", f"{ARM}/jobs/{job_name(action, 'offline-test')}")
    assert result.external_id == job_name(action, "offline-test")
    assert len(fake.jobs()) == 1


def test_a_resumed_action_whose_job_was_never_created_launches_it(fake: FakeAzureML, adapter: AzureMLAdapter):
    action = replace(planned(OFFLINE_TEST_YAML, event("model_registered")), resumed=True)

    adapter.execute(action)

    assert [r.method for r in fake.requests] == ["GET", "GET", "PUT"]  # 404 on the job, workspace key, PUT
    assert fake.jobs() == [job_name(action, "offline-test")]


COMMAND_JOB = """
type: command
command: python score.py
environment: azureml:scoring-env:1
compute: azureml:cpu-cluster
inputs:
  model: {type: mlflow_model, path: azureml:placeholder:1}
"""
BROKEN_PIPELINE = """
type: pipeline
inputs:
  model: {type: mlflow_model, path: azureml:placeholder:1}
jobs: not-a-mapping
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("job_yaml: ../../etc/passwd", "no such file under the rules folder"),
        ("job_yaml: pipelines/missing.yml", "no such file under the rules folder"),
        ("job_yaml: pipelines/command.yml", "is a command job, not a pipeline"),
        ("job_yaml: pipelines/broken.yml", "is not a valid pipeline job"),
        ("component: 'bad name!'", "use name:version, name@label or name"),
    ],
)
def test_a_pipeline_that_cannot_be_built_is_permanent(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients], tmp_path: Path, source: str, expected: str
):
    """GIVEN a rules folder with a command job and a broken pipeline WHEN a rule names a bad source
    THEN a PermanentError says what is wrong, before anything is sent."""
    (tmp_path / "rules" / "pipelines").mkdir(parents=True)
    (tmp_path / "rules" / "pipelines" / "command.yml").write_text(COMMAND_JOB)
    (tmp_path / "rules" / "pipelines" / "broken.yml").write_text(BROKEN_PIPELINE)
    adapter = AzureMLAdapter(make_clients(), tmp_path / "rules")

    with pytest.raises(PermanentError, match=expected):
        adapter.execute(planned(rule_with(source), event("model_registered")))
    assert fake.requests == []


def test_an_input_the_pipeline_does_not_declare_is_permanent(fake: FakeAzureML, adapter: AzureMLAdapter):
    rules = rule_with("job_yaml: pipelines/offline-test.yml").replace(
        'model: "{{ model.asset }}"', 'model: "{{ model.asset }}"\n            modle: x'
    )
    with pytest.raises(PermanentError, match=r"declares no input modle \(it has: model, test_data\)"):
        adapter.execute(planned(rules, event("model_registered")))
    assert fake.requests == []


def test_a_batch_job_that_exists_is_done_and_its_tags_are_made_sure_of(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN the batch job was POSTed before but the worker died before tagging it
    WHEN the action runs again THEN the second POST is refused (409), the tags are PATCHed, one job."""
    fake.add_batch_endpoint("offline-test-ep")
    action = planned(rule_with("batch_endpoint: offline-test-ep"), event("model_registered"))
    fake.fail(HTTPMethod.PATCH, "/runs/", status=403, times=1)  # the first attempt dies before its tags land
    with pytest.raises(PermanentError):
        adapter.execute(action)
    fake.clear()

    result = adapter.execute(action)

    assert [r.method for r in fake.requests] == ["GET", "POST", HTTPMethod.PATCH]  # endpoint, refused POST, tags
    assert fake.calls("POST")[0].body["properties"]["name"] == result.external_id
    job = fake.job(job_name(action, "offline-test"))
    assert job is not None and job["properties"]["tags"]["mlreactor.reaction"] == "test-new-model"
    assert len(fake.jobs()) == 1


def test_a_resumed_batch_action_finds_its_job_and_only_tags_it(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.add_batch_endpoint("offline-test-ep")
    action = planned(rule_with("batch_endpoint: offline-test-ep"), event("model_registered"))
    adapter.execute(action)
    fake.clear()

    adapter.execute(replace(action, resumed=True))

    assert [r.method for r in fake.requests] == ["GET", HTTPMethod.PATCH]
    assert fake.calls("POST") == []
