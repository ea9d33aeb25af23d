"""tag_model and tag_run against the HTTPS fake: per-key MLflow tags, whole-body PUTs to archive, the run PATCH."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from http import HTTPMethod

import pytest

from shared.actions import ActionResult, PlannedAction
from shared.adapters.azureml import AzureMLAdapter, WorkspaceClients
from shared.errors import PermanentError
from tests.azureml.conftest import ARM, HISTORY, ROOT, planned
from tests.conftest import event
from tests.fakes.azureml import FakeAzureML, Fault, Request

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


MLFLOW = f"/mlflow/v2.0{ARM}/api/2.0/mlflow/model-versions"


def test_workspace_tags_are_set_key_by_key_through_mlflow_and_read_back_once(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN a model version with tags and lineage WHEN a rule sets two tags
    THEN the workspace's tracking URI is read once, one MLflow set-tag per key, one MLflow read-back; no PUT of the
    version: its other tags and its lineage are never sent, so no other writer's key can be lost."""
    fake.add_model(MODEL, "20", tags={"area": "diabetes", "mlreactor.stage": "new"})
    before = fake.model_version(MODEL, "20")["properties"]
    action = planned(tag_model_rule(set="{mlreactor.stage: candidate, mlreactor.correlation: '{{ correlation_id }}'}"),
                     event("model_registered"))

    result = adapter.execute(action)

    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", ARM), ("POST", f"{MLFLOW}/set-tag"), ("POST", f"{MLFLOW}/set-tag"), ("GET", f"{MLFLOW}/get"),
    ]
    assert [r.body for r in fake.calls("POST")] == [
        {"name": MODEL, "version": "20", "key": "mlreactor.stage", "value": "candidate"},
        {"name": MODEL, "version": "20", "key": "mlreactor.correlation", "value": action.correlation_id},
    ]
    assert fake.calls("POST")[0].headers["Authorization"].startswith("Bearer ")
    after = fake.model_version(MODEL, "20")["properties"]
    assert after["tags"] == {"area": "diabetes", "mlreactor.stage": "candidate",
                             "mlreactor.correlation": action.correlation_id}
    assert {k: v for k, v in after.items() if k != "tags"} == {k: v for k, v in before.items() if k != "tags"}
    assert result.data["tags"] == after["tags"] and result.data["writes"] == 1
    assert result.external_id == f"{MODEL}:20"

    fake.clear()
    adapter.execute(planned(tag_model_rule(set="{b: '2'}"), event("model_registered", id="e2")))
    assert [r.method for r in fake.requests] == ["POST", "GET"]  # the tracking URI is known: one key, one read


def test_removals_are_deletes_of_one_key_and_other_keys_stay(fake: FakeAzureML, adapter: AzureMLAdapter):
    fake.add_model(MODEL, "20", tags={"keep": "1", "mlreactor.verdict": "fail"})

    adapter.execute(planned(tag_model_rule(remove="[mlreactor.verdict]", set="{mlreactor.stage: candidate}"),
                            event("model_registered")))

    (delete,) = fake.calls("DELETE")
    assert (delete.path, delete.body) == (f"{MLFLOW}/delete-tag",
                                          {"name": MODEL, "version": "20", "key": "mlreactor.verdict"})
    assert fake.model_tags(MODEL, "20") == {"keep": "1", "mlreactor.stage": "candidate"}


def test_a_tag_that_reads_back_as_written_pays_no_settle_time(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    """GIVEN a settle time of 2 s WHEN a tag (per key) and an archive (whole body) read back as written
    THEN neither waits: the settle time is paid only by a write whose read-back differs."""
    adapter = AzureMLAdapter(make_clients(azureml_tag_settle_seconds=2.0), ROOT)
    fake.add_model(MODEL, "20", tags={"a": "1"})
    started = time.monotonic()

    adapter.execute(planned(tag_model_rule(set="{b: '2'}"), event("model_registered")))
    adapter.execute(planned(tag_model_rule(set="{c: '3'}", archive="true"), event("model_registered", id="e2")))

    assert time.monotonic() - started < 1.5
    assert fake.model_tags(MODEL, "20") == {"a": "1", "b": "2", "c": "3"}


def test_a_rule_can_archive_the_version_in_one_whole_write_read_back_at_once(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """MLflow has no archive: archiving reads the version, PUTs it whole (lineage as read) and reads it back."""
    fake.add_model(MODEL, "20", tags={"a": "1"})
    before = fake.model_version(MODEL, "20")["properties"]

    adapter.execute(planned(tag_model_rule(set="{mlreactor.verdict: fail}", archive="true"), event("model_registered")))

    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", VERSION_PATH), ("PUT", VERSION_PATH), ("GET", VERSION_PATH)
    ]
    (put,) = fake.calls("PUT")
    sent = put.body["properties"]
    assert sent["isArchived"] is True
    assert sent["tags"] == {"a": "1", "mlreactor.verdict": "fail"}
    for kept in ("flavors", "jobName", "modelUri", "modelType", "stage"):
        assert sent[kept] == before[kept], kept
    assert "description" not in sent  # explicit nulls are not sent (as the SDK's own archive PUT)


def test_a_missing_model_version_is_permanent_and_says_where(fake: FakeAzureML, adapter: AzureMLAdapter):
    with pytest.raises(PermanentError) as caught:
        adapter.execute(planned(tag_model_rule(set="{a: b}"), event("model_registered")))

    message = str(caught.value)
    assert "workspace mlw-prod" in message
    assert f"MLflow set tag a on model {MODEL}:20" in message
    assert "HTTP 404" in message and f"name={MODEL}, version=20" in message


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


def two_writers(**extra: str) -> tuple[PlannedAction, PlannedAction]:
    first = planned(tag_model_rule(set="{x: from-reaction-1}", **extra), event("model_registered"))
    second = planned(tag_model_rule(set="{y: from-reaction-2}", **extra), event("model_registered", id="other-event"))
    return first, second


def test_two_instances_tagging_one_version_at_once_lose_no_tag(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    """GIVEN every MLflow call is slow (the two writers overlap) WHEN two instances (no shared lock) tag the same
    version at once THEN each sets only its key: both tags stay, no whole-body write, no retry."""
    fake.add_model(MODEL, "20", tags={"a": "1"})
    fake.fail("POST", "/set-tag", status=0, delay=0.3, times=2)
    instances = (AzureMLAdapter(make_clients(), ROOT), AzureMLAdapter(make_clients(), ROOT))

    _both(instances, two_writers())

    assert fake.model_tags(MODEL, "20") == {"a": "1", "x": "from-reaction-1", "y": "from-reaction-2"}
    assert fake.calls("PUT") == [] and len(fake.calls("POST")) == 2


def test_two_reactions_in_one_instance_archiving_one_version_at_once_lose_no_tag(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """GIVEN every read is slow (both whole-body writers would read the same old tags) WHEN two reactions on one
    instance archive and tag the same version at once THEN the per-version lock serialises them: both tags stay."""
    fake.add_model(MODEL, "20", tags={"a": "1"})
    fake.fail("GET", "/models/", status=0, delay=0.3, times=2)

    _both((adapter, adapter), two_writers(archive="true"))

    assert fake.model_tags(MODEL, "20") == {"a": "1", "x": "from-reaction-1", "y": "from-reaction-2"}
    assert len(fake.calls("PUT")) == 2


def test_two_whole_body_writers_whose_reads_cross_lose_no_tag(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    """GIVEN two instances archiving one version (whole-body writes), writer 1's read answered only after writer 2
    wrote, and writer 2's read-back made after writer 1's stale write landed
    WHEN both run THEN writer 2's read-back misses its tag, it settles and merges again: both tags stay, three PUTs."""
    fake.add_model(MODEL, "20", tags={"a": "1"})
    instance_1 = AzureMLAdapter(make_clients(azureml_tag_settle_seconds=0.2), ROOT)
    instance_2 = AzureMLAdapter(make_clients(azureml_tag_settle_seconds=0.2), ROOT)
    first, second = two_writers(archive="true")
    reading, written, stale_written = threading.Event(), threading.Event(), threading.Event()
    gets, puts = itertools.count(), itertools.count()

    def order(request: Request) -> Fault | None:
        if request.method == "GET" and "/models/" in request.path:
            n = next(gets)
            if n == 0:  # writer 1 reads {a}; the answer leaves only after writer 2 has written {a, y}
                return Fault("GET", "", status=0, then=reading.set, wait_for=written)
            if n == 2:  # writer 2's read-back is made after writer 1's stale {a, x} landed
                return Fault("GET", "", status=0, then=lambda: stale_written.wait(10))
        if request.method == "PUT":
            n = next(puts)
            return Fault("PUT", "", status=0, done=(written.set, stale_written.set)[n]) if n < 2 else None
        return None

    fake.injector = order

    def second_writer() -> None:
        reading.wait(10)
        instance_2.execute(second)

    thread = threading.Thread(target=second_writer)
    thread.start()
    instance_1.execute(first)
    thread.join(timeout=30)

    assert [sorted(p.body["properties"]["tags"]) for p in fake.calls("PUT")] == [["a", "y"], ["a", "x"],
                                                                                 ["a", "x", "y"]]
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
    again = adapter.execute(planned(rules, raw))  # redelivered: the key is set again (idempotent), nothing demoted
    assert [r.method for r in fake.requests] == ["POST", "GET", "GET"]  # set-tag, read-back, the list of versions
    assert again.data["demoted"] == [] and fake.calls("PUT") == []
