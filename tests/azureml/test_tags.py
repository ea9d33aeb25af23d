"""tag_model and tag_run against the HTTPS fake: merged full-body PUTs, verification, the run-history PATCH."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http import HTTPMethod

import pytest

from shared.actions import ActionResult, PlannedAction
from shared.adapters.azureml import AzureMLAdapter, WorkspaceClients
from shared.errors import PermanentError
from tests.azureml.conftest import ARM, HISTORY, ROOT, planned
from tests.conftest import event
from tests.fakes.azureml import FakeAzureML

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

MODEL = "sklearn_regression_model"
VERSION_PATH = f"{ARM}/models/{MODEL}/versions/20"


def tag_model_rule(**params: object) -> str:
    body = "".join(f"\n          {k}: {v}" for k, v in params.items())
    return f"""
rules:
  - name: tag
    on: [ModelRegistered, RunCompleted]
    do:
      - tag_model:{body}
"""


def test_tags_are_merged_into_the_version_and_everything_else_is_sent_back_as_read(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN a model version with tags and lineage WHEN a rule sets two tags
    THEN GET, PUT (old tags kept, new added, flavors/jobName/modelUri unchanged), GET to verify."""
    fake.add_model(MODEL, "20", tags={"area": "diabetes", "mlreactor.stage": "new"})
    before = fake.model_version(MODEL, "20")["properties"]
    action = planned(tag_model_rule(set="{mlreactor.stage: candidate, mlreactor.correlation: '{{ correlation_id }}'}"),
                     event("model_registered"))

    result = adapter.execute(action)

    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", VERSION_PATH), ("PUT", VERSION_PATH), ("GET", VERSION_PATH)
    ]
    assert {r.api_version for r in fake.requests} == {"2023-08-01-preview"}
    sent = fake.calls("PUT")[0].body["properties"]
    assert sent["tags"] == {"area": "diabetes", "mlreactor.stage": "candidate",
                            "mlreactor.correlation": action.correlation_id}
    for kept in ("flavors", "jobName", "modelUri", "modelType", "stage", "isArchived"):
        assert sent[kept] == before[kept], kept
    assert "description" not in sent  # explicit nulls are not sent (as the SDK's own archive PUT)
    assert fake.model_tags(MODEL, "20")["mlreactor.stage"] == "candidate"
    assert result.external_id == f"{MODEL}:20"
    assert " tagged: set mlreactor.correlation, mlreactor.stage" in result.detail and result.data["writes"] == 1


def test_removals_are_explicit_and_other_keys_stay(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.add_model(MODEL, "20", tags={"keep": "1", "mlreactor.verdict": "fail"})

    adapter.execute(planned(tag_model_rule(remove="[mlreactor.verdict]", set="{mlreactor.stage: candidate}"),
                            event("model_registered")))

    assert fake.model_tags(MODEL, "20") == {"keep": "1", "mlreactor.stage": "candidate"}


def test_a_version_that_already_has_the_tags_costs_one_read_and_no_write(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN the tags are already there (a redelivery after the write) WHEN the action runs THEN only a GET."""
    fake.add_model(MODEL, "20", tags={"mlreactor.stage": "candidate"})

    result = adapter.execute(planned(tag_model_rule(set="{mlreactor.stage: candidate}"), event("model_registered")))

    assert [r.method for r in fake.requests] == ["GET"]
    assert "already carried: set mlreactor.stage" in result.detail


def test_a_rule_can_archive_the_version_in_the_same_write(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.add_model(MODEL, "20", tags={"a": "1"})

    adapter.execute(planned(tag_model_rule(set="{mlreactor.verdict: fail}", archive="true"), event("model_registered")))

    (put,) = fake.calls("PUT")
    assert put.body["properties"]["isArchived"] is True
    assert put.body["properties"]["tags"] == {"a": "1", "mlreactor.verdict": "fail"}


def test_a_missing_model_version_is_permanent_and_says_where(fake: FakeAzureML, adapter: AzureMLAdapter):
    with pytest.raises(PermanentError) as caught:
        adapter.execute(planned(tag_model_rule(set="{a: b}"), event("model_registered")))

    message = str(caught.value)
    assert "workspace mlw-prod" in message
    assert f"GET model {MODEL}:20" in message
    assert f"HTTP 404 UserError: Model {MODEL}:20 not found in workspace mlw-prod." in message


def _both(adapters: tuple[AzureMLAdapter, AzureMLAdapter], actions: tuple[PlannedAction, PlannedAction]) -> None:
    results: list[ActionResult | BaseException] = []

    def run(adapter: AzureMLAdapter, action: PlannedAction) -> None:
        try:
            results.append(adapter.execute(action))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(adapters, actions, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(isinstance(r, ActionResult) for r in results), results


def two_writers() -> tuple[PlannedAction, PlannedAction]:
    first = planned(tag_model_rule(set="{x: from-reaction-1}"), event("model_registered"))
    second = planned(tag_model_rule(set="{y: from-reaction-2}"), event("model_registered", id="other-event"))
    return first, second


def test_two_reactions_in_one_instance_tagging_one_version_at_once_lose_no_tag(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN every read is slow (both writers would read the same old tags) WHEN two reactions on one instance
    tag the same version at once THEN the per-version lock serialises them: both tags stay, two writes."""
    fake.add_model(MODEL, "20", tags={"a": "1"})
    fake.fail("GET", "/models/", status=0, delay=0.3, times=2)

    _both((adapter, adapter), two_writers())

    assert fake.model_tags(MODEL, "20") == {"a": "1", "x": "from-reaction-1", "y": "from-reaction-2"}
    assert len(fake.calls("PUT")) == 2


def test_two_instances_whose_reads_cross_lose_no_tag(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    """GIVEN two instances (no shared lock), and writer 1's read answered only after writer 2 has read and written,
    so that writer 1 then writes the stale tags back over writer 2's
    WHEN both tag the same version THEN writer 2's verification after the settle time sees its tag gone and
    merges again: both tags stay, three writes."""
    fake.add_model(MODEL, "20", tags={"a": "1"})
    instance_1 = AzureMLAdapter(make_clients(azureml_tag_settle_seconds=1.0), ROOT)
    instance_2 = AzureMLAdapter(make_clients(azureml_tag_settle_seconds=1.0), ROOT)
    first, second = two_writers()
    reading, written = threading.Event(), threading.Event()
    # Writer 1 reads {a}; the answer leaves 0.3 s after writer 2 has written {a, y} (well within the settle time).
    fake.fail("GET", "/models/", status=0, times=1, then=reading.set, wait_for=written, hold=0.3)
    fake.fail("PUT", "/models/", status=0, times=1, done=written.set)

    def second_writer() -> None:
        reading.wait(10)
        instance_2.execute(second)

    thread = threading.Thread(target=second_writer)
    thread.start()
    instance_1.execute(first)
    thread.join(timeout=30)

    puts = fake.calls("PUT")
    assert [sorted(p.body["properties"]["tags"]) for p in puts] == [["a", "y"], ["a", "x"], ["a", "x", "y"]]
    assert fake.model_tags(MODEL, "20") == {"a": "1", "x": "from-reaction-1", "y": "from-reaction-2"}


def test_a_run_is_tagged_through_the_run_history_merge(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN a RunCompleted event WHEN a rule tags its run THEN one PATCH of the run's tags (set and removed keys),
    under the experiment the event names; other tags stay."""
    fake.add_job("AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5", experiment="automl-local-regression",
                 tags={"keep": "1", "old": "x"})
    rules = """
rules:
  - name: tag-run
    on: RunCompleted
    do:
      - tag_run:
          set: {mlreactor.seen: "yes"}
          remove: [old]
"""
    result = adapter.execute(planned(rules, event("run_completed")))

    patches = fake.calls(HTTPMethod.PATCH)
    run = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
    assert [(r.method, r.path) for r in patches] == [
        (HTTPMethod.PATCH, f"{HISTORY}/experiments/automl-local-regression/runs/{run}/tags")
    ]
    assert patches[0].body == {"tagsToModify": {"mlreactor.seen": "yes"}, "tagsToDelete": ["old"]}
    assert patches[0].api_version == "v1.0"
    job = fake.job("AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5")
    assert job is not None and job["properties"]["tags"] == {"keep": "1", "mlreactor.seen": "yes"}
    # The workspace and its discovery document (the run-history host) are read once per client.
    assert [r.method for r in fake.requests] == ["GET", "GET", HTTPMethod.PATCH]
    assert result.external_id == "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"


def test_a_run_the_event_is_not_about_is_looked_up_for_its_experiment(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.add_job("train-42", experiment="training")
    rules = """
rules:
  - name: tag-run
    on: ModelRegistered
    do:
      - tag_run:
          run: train-42
          set: {mlreactor.registered: "{{ model.id }}"}
"""
    adapter.execute(planned(rules, event("model_registered")))

    assert fake.calls("GET", "/jobs/train-42$")
    (patch,) = fake.calls(HTTPMethod.PATCH)
    assert patch.path == f"{HISTORY}/experiments/training/runs/train-42/tags"
    assert fake.job("train-42")["properties"]["tags"] == {"mlreactor.registered": f"{MODEL}:20"}  # type: ignore[index]


def test_promoting_a_champion_demotes_the_previous_one(fake: FakeAzureML, adapter: AzureMLAdapter):
    """GIVEN version 18 is the champion WHEN the shipped promote rule tags version 20 champion (exclusive)
    THEN 20 becomes champion, 18 former-champion (its other tags kept), the archived 12 is left alone."""
    fake.add_model(MODEL, "12", tags={"mlreactor.stage": "champion"})
    fake.state.models[("mlw-prod", MODEL, "12")]["properties"]["isArchived"] = True
    fake.add_model(MODEL, "18", tags={"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.8"})
    fake.add_model(MODEL, "20", tags={"mlreactor.stage": "candidate"})
    raw = event("model_deployed")
    raw["data"]["ModelIds"] = f"{MODEL}:20"
    rules = """
rules:
  - name: promote
    on: ModelDeployed
    do:
      - tag_model:
          set: {mlreactor.stage: champion}
          exclusive: {mlreactor.stage: champion}
          demote_to: {mlreactor.stage: former-champion}
"""
    result = adapter.execute(planned(rules, raw))

    assert fake.model_tags(MODEL, "20") == {"mlreactor.stage": "champion"}
    assert fake.model_tags(MODEL, "18") == {"mlreactor.stage": "former-champion", "mlreactor.metric.auc": "0.8"}
    assert fake.model_tags(MODEL, "12") == {"mlreactor.stage": "champion"}
    assert result.data["demoted"] == ["18"]
    assert f"demoted {MODEL}:18" in result.detail

    fake.clear()
    again = adapter.execute(planned(rules, raw))  # redelivered: nothing left to change
    assert [r.method for r in fake.requests] == ["GET", "GET"]  # the version, the list of versions
    assert again.data["writes"] == 0 and again.data["demoted"] == []
