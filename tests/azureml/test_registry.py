"""Azure ML registries as the target of tag_model and of the gate's champion lookup, through the real azure-ai-ml.

A registry client first asks the registry's discovery document (on the cloud's global host) where the registry
lives, then reads and writes model versions under that region's management front end. The fake answers both; the
SDK is pointed at it by a cloud of its own (see the ``registry_cloud`` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.azureml import AzureMLAdapter, AzureMLState
from shared.adapters.gate import GateAdapter
from shared.engine import Engine
from shared.errors import PermanentError, RulesError, TransientError
from shared.events import parse_event
from shared.ledger.port import ActionStatus
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import Outcome
from tests.azureml.conftest import ARM, SUB, engine_with, planned
from tests.conftest import FakeClock, event, rules_from
from tests.fakes.azureml import FakeAzureML

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

MODEL = "sklearn_regression_model"  # the model of the model_registered sample event (version 20)
REGISTRY = "shared-models"
REGISTRY_RG = "rg-registries"
REGISTRY_ID = (f"/subscriptions/{SUB}/resourceGroups/{REGISTRY_RG}/providers/Microsoft.MachineLearningServices/"
               f"registries/{REGISTRY}")
DISCOVERY = f"/registrymanagement/v1.0/registries/{REGISTRY}/discovery"
REG_PATH = f"/mferp/managementfrontend{REGISTRY_ID}"
VERSION_PATH = f"{REG_PATH}/models/{MODEL}/versions/20"
DATAPLANE = "2021-10-01-dataplanepreview"


@pytest.fixture(autouse=True)
def registry_cloud(fake: FakeAzureML, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK asks its cloud's ``registry_discovery_endpoint`` (no env var redirects it, unlike the ARM host):
    a cloud whose endpoint is the fake, selected the way the SDK selects clouds (``AZUREML_CURRENT_CLOUD``)."""
    from azure.ai.ml import _azure_environments  # the SDK's cloud table: where MLClient(cloud=...) adds clouds

    monkeypatch.setitem(_azure_environments._environments, "MlreactorFake", fake.cloud_metadata())
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "MlreactorFake")
    fake.add_registry(REGISTRY, resource_group=REGISTRY_RG)
    yield


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    store = SqliteLedger(tmp_path / "ledger.sqlite3")
    yield store
    store.close()


def rule(action: str, **params: object) -> str:
    body = "".join(f"\n          {k}: {v}" for k, v in params.items())
    return f"""
rules:
  - name: promote
    on: [ModelRegistered, RunCompleted]
    do:
      - {action}:{body}
"""


def test_tag_model_on_a_registry_discovers_it_then_merges_the_tags_into_the_version(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN a model version in a registry, with tags and lineage WHEN a rule whose tag_model names the registry
    (resource id) sets a tag THEN the registry's discovery, then GET, full-body PUT (old tags kept, lineage sent back
    as read), GET to verify — under the registry's path, at the registry data-plane api-version."""
    fake.add_model(MODEL, "20", registry=REGISTRY, tags={"area": "diabetes", "mlreactor.stage": "candidate"})
    before = fake.model_version(MODEL, "20", registry=REGISTRY)["properties"]

    result = adapter.execute(planned(rule("tag_model", workspace=REGISTRY_ID, set="{mlreactor.stage: champion}"),
                                     event("model_registered")))

    assert [str(r) for r in fake.requests] == [
        f"GET {DISCOVERY}?api-version=v1.0",
        f"GET {VERSION_PATH}?api-version={DATAPLANE}",
        f"PUT {VERSION_PATH}?api-version={DATAPLANE}",
        f"GET {VERSION_PATH}?api-version={DATAPLANE}",
    ]
    assert fake.requests[0].body is None
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in fake.requests)
    (put,) = fake.calls("PUT")
    assert set(put.body) == {"properties"}  # read-only id/name/type/systemData are not sent back
    sent = put.body["properties"]
    assert sent["tags"] == {"area": "diabetes", "mlreactor.stage": "champion"}
    for kept in ("flavors", "jobName", "modelUri", "modelType", "stage", "isArchived"):
        assert sent[kept] == before[kept], kept
    assert "description" not in sent  # explicit nulls are not sent
    assert fake.model_tags(MODEL, "20", registry=REGISTRY)["mlreactor.stage"] == "champion"
    assert fake.model_versions(MODEL) == []  # nothing was written to the workspace
    assert result.detail == f"model {MODEL}:20 in registry {REGISTRY} tagged: set mlreactor.stage"
    assert result.data["workspace"] == REGISTRY_ID and result.data["writes"] == 1


def test_the_short_form_names_the_same_registry_and_discovery_is_asked_once_per_process(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    fake.add_model(MODEL, "20", registry=REGISTRY)
    short = f"'azureml://registries/{REGISTRY}'"

    adapter.execute(planned(rule("tag_model", workspace=short, set="{a: '1'}"), event("model_registered")))
    adapter.execute(planned(rule("tag_model", workspace=REGISTRY_ID, set="{b: '2'}"), event("model_registered")))

    assert len(fake.calls("GET", "/discovery$")) == 1
    assert fake.model_tags(MODEL, "20", registry=REGISTRY) == {"a": "1", "b": "2"}


def test_exclusive_tags_demote_the_former_champion_and_archive_works_in_the_registry(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN version 19 is the registry's champion WHEN version 20 becomes champion (exclusive) and is archived
    THEN 19 is listed (registry list call) and demoted, 20 carries the tag and is archived."""
    fake.add_model(MODEL, "19", registry=REGISTRY, tags={"mlreactor.stage": "champion", "keep": "x"})
    fake.add_model(MODEL, "20", registry=REGISTRY)

    result = adapter.execute(planned(rule(
        "tag_model", workspace=REGISTRY_ID, set="{mlreactor.stage: champion}", archive="true",
        exclusive="{mlreactor.stage: champion}", demote_to="{mlreactor.stage: former-champion}"),
        event("model_registered")))

    (listing,) = fake.calls("GET", r"/versions$")
    assert listing.path == f"{REG_PATH}/models/{MODEL}/versions" and listing.api_version == DATAPLANE
    assert fake.model_tags(MODEL, "19", registry=REGISTRY) == {"mlreactor.stage": "former-champion", "keep": "x"}
    assert fake.model_version(MODEL, "20", registry=REGISTRY)["properties"]["isArchived"] is True
    assert result.data["demoted"] == ["19"]


def test_a_registry_id_whose_group_discovery_contradicts_is_refused_before_any_model_call(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    wrong = REGISTRY_ID.replace(REGISTRY_RG, "rg-elsewhere")

    with pytest.raises(PermanentError, match=r"registry shared-models: the rule names resource group 'rg-elsewhere'"):
        adapter.execute(planned(rule("tag_model", workspace=wrong, set="{a: '1'}"), event("model_registered")))

    assert [r.path for r in fake.requests] == [DISCOVERY]


def test_an_unknown_registry_is_permanent_and_an_unreachable_discovery_is_transient_and_not_cached(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    fake.add_model(MODEL, "20", registry=REGISTRY)
    with pytest.raises(PermanentError, match=r"Azure ML registry nope: GET registry discovery: HTTP 404"):
        adapter.execute(planned(rule("tag_model", workspace="'azureml://registries/nope'", set="{a: '1'}"),
                                event("model_registered")))

    fake.fail("GET", "/discovery$", status=503, times=3)
    action = planned(rule("tag_model", workspace=REGISTRY_ID, set="{a: '1'}"), event("model_registered"))
    with pytest.raises(TransientError, match=r"registry shared-models: GET registry discovery: HTTP 503"):
        adapter.execute(action)

    adapter.execute(action)  # the redelivery: the failed discovery was not cached
    assert fake.model_tags(MODEL, "20", registry=REGISTRY) == {"a": "1"}


@pytest.mark.parametrize("action", ["run_pipeline", "tag_run"])
def test_job_actions_refuse_a_registry_when_the_rules_load(action: str):
    extra = {"job_yaml": "pipelines/offline-test.yml"} if action == "run_pipeline" else {}

    with pytest.raises(RulesError) as caught:
        rules_from(rule(action, workspace=REGISTRY_ID, **extra))

    assert f"rule 'promote': do[0].{action}.workspace: '{REGISTRY_ID}' is an Azure ML registry" in str(caught.value)


@pytest.mark.parametrize("action", ["run_pipeline", "tag_run"])
def test_job_actions_refuse_a_templated_workspace_when_the_rules_load_naming_rule_action_and_field(
    fake: FakeAzureML, action: str
):
    """GIVEN a workspace templated from a model tag (which could render to a registry, or anywhere) WHEN the rules
    load THEN they are refused, naming the rule, the action and the field: where a job goes is not event data."""
    extra = {"job_yaml": "pipelines/offline-test.yml"} if action == "run_pipeline" else {"run": "run1"}

    with pytest.raises(RulesError) as caught:
        rules_from(rule(action, workspace="'{{ tags.target }}'", **extra))

    assert f"rule 'promote': do[0].{action}.workspace: workspace decides where the request and its credential go" \
        in str(caught.value)
    assert fake.requests == []


def test_the_state_reads_model_tags_and_finds_the_champion_in_a_registry(fake: FakeAzureML, state: AzureMLState):
    fake.add_model(MODEL, "18", registry=REGISTRY, tags={"mlreactor.stage": "champion"})
    fake.add_model(MODEL, "19", registry=REGISTRY, tags={"mlreactor.stage": "champion", "mlreactor.metric.r2": "0.8"})

    assert state.model_tags(REGISTRY_ID, MODEL, "18") == {"mlreactor.stage": "champion"}
    assert state.model_tags(f"azureml://registries/{REGISTRY}", MODEL, "99") is None
    assert state.find_model_by_tag(REGISTRY_ID, MODEL, "mlreactor.stage", "champion") == (
        "19", {"mlreactor.stage": "champion", "mlreactor.metric.r2": "0.8"})
    with pytest.raises(PermanentError, match="not an Azure ML workspace resource id"):
        state.job(REGISTRY_ID, "run1")
    with pytest.raises(PermanentError, match="registry nope: GET registry discovery: HTTP 404"):
        state.model_tags("azureml://registries/nope", MODEL, "18")  # no such registry is not "no such version"


def test_the_gate_judges_against_the_registrys_champion_and_reads_the_candidate_in_the_workspace(
    fake: FakeAzureML, state: AzureMLState
):
    """GIVEN the candidate registered (and marked) in the event's workspace and the champion in the registry
    WHEN a gate names the registry THEN the candidate mark is read in the workspace, the champion in the registry."""
    fake.add_model(MODEL, "20", tags={"mlreactor.stage": "candidate"})
    fake.add_model(MODEL, "19", registry=REGISTRY, tags={"mlreactor.stage": "champion", "mlreactor.metric.r2": "0.9"})
    run = event("run_completed")
    run["data"]["runTags"] = {"mlreactor.model_name": MODEL, "mlreactor.model_version": "20",
                              "mlreactor.metric.r2": "0.85"}
    action = planned(rule("quality_gate", workspace=REGISTRY_ID, metrics="{r2: {min: 0.5, max_regression: 0.0}}"),
                     run)

    result = GateAdapter(state).execute(action)

    assert result.data["passed"] is False and result.data["champion_version"] == "19", result.detail
    assert [r.path for r in fake.calls("GET", "/models/")] == [
        f"{ARM}/models/{MODEL}/versions/20", f"{REG_PATH}/models/{MODEL}/versions"]


def test_through_the_engine_and_ledger_a_registry_is_tagged_once_per_event(
    fake: FakeAzureML, adapter: AzureMLAdapter, ledger: SqliteLedger
):
    """GIVEN a rule whose tag_model names a registry WHEN a ModelRegistered event is delivered twice
    THEN the registry's version is tagged once (recorded done in the ledger), the redelivery is a duplicate."""
    fake.add_model(MODEL, "20", registry=REGISTRY)
    rules = rules_from(rule("tag_model", workspace=REGISTRY_ID,
                            set="{mlreactor.stage: candidate, mlreactor.correlation: '{{ correlation_id }}'}"))
    engine: Engine = engine_with(rules, adapter, ledger, FakeClock())
    typed = parse_event(event("model_registered"))

    first = engine.handle(typed)
    second = engine.handle(typed)

    assert first.outcome is Outcome.ACTED, first.reason
    assert second.outcome is Outcome.DUPLICATE
    assert fake.model_tags(MODEL, "20", registry=REGISTRY) == {
        "mlreactor.stage": "candidate", "mlreactor.correlation": typed.correlation_id}
    assert len(fake.calls("PUT")) == 1
    (tagged,) = first.actions
    record = ledger.get_action(tagged.key, typed.id)
    assert record is not None and record.status is ActionStatus.DONE
    assert record.external_id == f"{MODEL}:20" and f"registry {REGISTRY}" in (record.detail or "")


def test_a_throttled_registry_put_is_retried_within_the_action_and_lands_once(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN the registry answers the first PUT with 429 WHEN tag_model runs THEN the window-bounded retry policy
    (the same as the workspaces') retries it: two PUTs sent, the tags merged once, the action done."""
    fake.add_model(MODEL, "20", registry=REGISTRY, tags={"keep": "1"})
    fake.fail("PUT", "/registries/.*/versions/20$", status=429, retry_after=0)

    result = adapter.execute(planned(rule("tag_model", workspace=REGISTRY_ID, set="{a: '1'}"),
                                     event("model_registered")))

    assert len(fake.calls("PUT")) == 2
    assert fake.model_tags(MODEL, "20", registry=REGISTRY) == {"keep": "1", "a": "1"}
    assert result.data["writes"] == 1
