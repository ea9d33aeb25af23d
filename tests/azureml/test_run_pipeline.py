"""run_pipeline through the real azure-ai-ml against the HTTPS fake: what goes on the wire, and exactly once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from http import HTTPMethod
from pathlib import Path

import pytest

from shared.adapters.azureml import AzureMLAdapter, WorkspaceClients
from shared.adapters.azureml.pipelines import job_name
from shared.errors import PermanentError, TransientError
from tests.azureml.conftest import ARM, HISTORY, ROOT, SUB, azureml_settings, planned
from tests.conftest import event
from tests.fakes.azureml import API_VERSIONS, FakeAzureML, FakeCredential

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
        "mlreactor.action": action.key,
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


def test_a_second_put_refused_with_400_already_exists_reads_the_job_and_counts_as_done(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN the job was created before (a lost ledger record) WHEN the action runs again, not even marked resumed
    THEN the service refuses the second PUT with 400 UserError "A job with this name already exists"
    (MicrosoftDocs/azure-docs#122250), the adapter reads the job, finds this action's key on it: done, one job."""
    action = planned(OFFLINE_TEST_YAML, event("model_registered"))
    adapter.execute(action)
    fake.clear()

    result = adapter.execute(action)

    assert [r.method for r in fake.requests] == ["PUT", "GET"]  # the refused PUT, then the job by name
    assert "already launched" in result.detail
    assert fake.jobs() == [job_name(action, "offline-test")]


def test_a_job_of_this_name_carrying_another_actions_key_is_a_permanent_error_naming_both(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    action = planned(OFFLINE_TEST_YAML, event("model_registered"))
    name = job_name(action, "offline-test")
    fake.add_job(name, experiment="mlreactor-offline-test", status="Running", tags={"mlreactor.action": "f" * 64})

    with pytest.raises(PermanentError) as caught:
        adapter.execute(action)

    message = str(caught.value)
    assert f"job {name} belongs to action {'f' * 64}, not to this action {action.key}" in message
    assert "event 831e1650-001e-001b-66ab-eeb76e069631" in message


def test_a_lost_put_answer_is_resent_by_azure_core_and_the_update_keeps_one_job_with_its_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_clients: Callable[..., WorkspaceClients]
):
    """GIVEN a service whose second PUT of a name is an update (200, tags replaced) and a first PUT whose answer is
    lost after it was applied WHEN the action runs THEN azure-core re-sends the same PUT (an update carrying the
    very same tags), the action is done: one job, its tags those of the first PUT."""
    fake = FakeAzureML(tmp_path / "tls2", job_reput="update").start()
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", fake.base_url)
    try:
        adapter = AzureMLAdapter(WorkspaceClients(azureml_settings(), credential=FakeCredential(),
                                                  connection_verify=str(fake.cert.cert_path)), ROOT)
        action = planned(OFFLINE_TEST_YAML, event("model_registered"))
        fake.fail("PUT", "/jobs/", status=0, lost=True)

        result = adapter.execute(action)

        puts = fake.calls("PUT", "/jobs/")
        assert len(puts) == 2 and puts[0].body == puts[1].body  # azure-core's own re-send of a lost answer
        assert result.external_id == job_name(action, "offline-test")
        (job,) = (fake.job(name) for name in fake.jobs())
        assert job is not None and job["properties"]["tags"] == puts[0].body["properties"]["tags"]
        assert job["properties"]["tags"]["mlreactor.action"] == action.key
    finally:
        fake.stop()


def test_a_lost_answer_that_every_retry_also_loses_is_found_by_name_when_the_put_gave_up(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN every PUT is applied but its answer lost (azure-core gives up after its retries, the later PUTs answered
    400 "already exists" and lost too) WHEN the action runs THEN the job is read by name: ours, done, one job."""
    fake.fail("PUT", "/jobs/", status=0, lost=True, times=10)
    action = planned(OFFLINE_TEST_YAML, event("model_registered"))

    result = adapter.execute(action)

    assert len(fake.calls("PUT", "/jobs/")) == 3  # the first try and azure-core's two retries (retry_total=2)
    assert "already launched" in result.detail
    assert fake.jobs() == [job_name(action, "offline-test")]


def test_a_job_that_exists_but_cannot_be_read_yet_is_read_again_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """GIVEN ARM's read-after-write lag (a job GET 404s for 0.3 s after its PUT) and a lost first PUT answer
    WHEN azure-core's re-PUT is refused (400 already exists) THEN the adapter reads the job again shortly until it
    shows, finds its key: done, one job."""
    fake = FakeAzureML(tmp_path / "tls2", read_lag=0.3).start()
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", fake.base_url)
    try:
        adapter = AzureMLAdapter(WorkspaceClients(azureml_settings(), credential=FakeCredential(),
                                                  connection_verify=str(fake.cert.cert_path)), ROOT)
        action = planned(OFFLINE_TEST_YAML, event("model_registered"))
        fake.fail("PUT", "/jobs/", status=0, lost=True)

        result = adapter.execute(action)

        gets = fake.calls("GET", "/jobs/")
        assert len(gets) >= 2  # the first read fell inside the lag (404)
        assert "already launched" in result.detail and len(fake.jobs()) == 1
    finally:
        fake.stop()


def test_a_job_that_stays_invisible_leaves_the_event_to_its_redelivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """GIVEN a lag longer than the action may wait WHEN the refused re-PUT's job cannot be read THEN transient (not
    quarantined: the service says the job exists), and the resumed redelivery reads it first and PUTs nothing."""
    fake = FakeAzureML(tmp_path / "tls2", read_lag=30.0).start()
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", fake.base_url)
    try:
        adapter = AzureMLAdapter(WorkspaceClients(azureml_settings(azureml_action_budget_seconds=2.0),
                                                  credential=FakeCredential(),
                                                  connection_verify=str(fake.cert.cert_path)), ROOT)
        action = planned(OFFLINE_TEST_YAML, event("model_registered"))
        fake.fail("PUT", "/jobs/", status=0, lost=True)

        with pytest.raises(TransientError, match="says it exists but does not show it yet"):
            adapter.execute(action)

        fake.read_lag = 0.0
        fake.clear()
        result = adapter.execute(replace(action, resumed=True))
        assert [r.method for r in fake.requests] == ["GET"] and "already launched" in result.detail
    finally:
        fake.stop()


def test_a_resumed_action_never_re_puts_its_job_so_later_tags_survive(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN the job was launched and later tagged (tag_run, a person) WHEN the action resumes THEN one GET, no PUT:
    the job's tags are never replaced by a re-PUT."""
    action = planned(OFFLINE_TEST_YAML, event("model_registered"))
    adapter.execute(action)
    name = job_name(action, "offline-test")
    fake.finish_job(name, status="Running", tags={"mlreactor.chain": "failed"})
    fake.clear()

    adapter.execute(replace(action, resumed=True))

    assert fake.calls("PUT") == []
    assert fake.job(name)["properties"]["tags"]["mlreactor.chain"] == "failed"  # type: ignore[index]


def test_an_api_version_the_service_does_not_know_is_a_400(fake: FakeAzureML, make_clients):  # type: ignore[no-untyped-def]
    """The fake answers an unknown api-version as ARM does (400 NoRegisteredProviderFound): nothing the adapter
    sends today is refused, which pins the api-versions it uses."""
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    adapter = AzureMLAdapter(make_clients(), ROOT)
    adapter.execute(planned(OFFLINE_TEST_YAML, event("model_registered")))
    assert all(r.api_version in API_VERSIONS for r in fake.requests if r.api_version)
    ml = adapter.clients.get(planned(OFFLINE_TEST_YAML, event("model_registered")).event.workspace)  # type: ignore[arg-type]
    client = ml.models._model_versions_operation._client
    response = client.send_request(HttpRequest("GET", f"{fake.base_url}{ARM}/jobs/x?api-version=2099-01-01"))
    with pytest.raises(HttpResponseError, match="NoRegisteredProviderFound"):
        response.raise_for_status()
    assert response.status_code == 400


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
    WHEN the action runs again THEN the second POST is refused (400 UserError), the job is read by name, the tags
    are PATCHed, one job."""
    fake.add_batch_endpoint("offline-test-ep")
    action = planned(rule_with("batch_endpoint: offline-test-ep"), event("model_registered"))
    fake.fail(HTTPMethod.PATCH, "/runs/", status=403, times=1)  # the first attempt dies before its tags land
    with pytest.raises(PermanentError):
        adapter.execute(action)
    fake.clear()

    result = adapter.execute(action)

    # endpoint, the refused POST (400 "already exists"), the job read by name (no key yet: ours), tags
    assert [r.method for r in fake.requests] == ["GET", "POST", "GET", HTTPMethod.PATCH]
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
