"""How many HTTP requests each Azure ML action costs on the happy path — pinned, and printed with ``-s``:

    pytest tests/azureml/test_request_costs.py -s -q

"First" is the first call of its kind on a new workspace client (cold instance), "then" every later one. Tokens
are not HTTP requests to Azure ML and are cached per scope (see the last test).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from shared.adapters.azureml import AzureMLAdapter, AzureMLState
from shared.events import RunCompleted, parse_event
from tests.azureml.conftest import ARM, planned
from tests.conftest import event
from tests.fakes.azureml import FakeAzureML, FakeCredential

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

@dataclass(frozen=True)
class Cost:
    action: str
    first: list[str]
    then: list[str]
    why: str


def run_pipeline_rule(source: str) -> str:
    return f"""
rules:
  - name: r
    on: ModelRegistered
    do:
      - run_pipeline:
          purpose: offline-test
          {source}
          experiment_name: mlreactor-offline-test
          inputs:
            model: "{{{{ model.asset }}}}"
"""


TAG_MODEL = """
rules:
  - name: r
    on: ModelRegistered
    do:
      - tag_model:
          set: {mlreactor.stage: "{{ event.id }}"}
"""
TAG_RUN = """
rules:
  - name: r
    on: RunCompleted
    do:
      - tag_run:
          set: {mlreactor.seen: "{{ event.id }}"}
"""


def measure(fake: FakeAzureML, call: Callable[[int], object]) -> tuple[list[str], list[str]]:
    """Requests of the first call and of a second one (a different event, so nothing is already done)."""

    def once(n: int) -> list[str]:
        fake.clear()
        call(n)
        return [f"{r.method} {_short(r.path)}" for r in fake.requests]

    return once(1), once(2)


def _short(path: str) -> str:
    return path.replace(ARM, "{ws}").replace("/history/v1.0{ws}", "{history}")


def costs(fake: FakeAzureML, adapter: AzureMLAdapter, state: AzureMLState) -> list[Cost]:
    fake.add_model("sklearn_regression_model", "20")
    fake.add_component("offline_test", "2")
    fake.add_batch_endpoint("offline-test-ep", ("blue",))
    fake.add_job("AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5", experiment="automl-local-regression")

    ids = itertools.count()

    def action(rules: str, name: str) -> Callable[[int], object]:
        """Each call handles a new event: nothing was launched or tagged for it before."""
        return lambda n: adapter.execute(planned(rules, event(name, id=f"event-{next(ids)}")))

    results = []
    for label, source, why in [
        ("run_pipeline (job YAML)", "job_yaml: pipelines/offline-test.yml",
         "the PUT is the launch; the first also GETs the workspace (the SDK's component-cache key)"),
        ("run_pipeline (component name:version)", "component: offline_test:2",
         "the component's interface types the inputs and gives its ARM id; then the PUT"),
        ("run_pipeline (batch endpoint + deployment)", "batch_endpoint: offline-test-ep\n          "
         "batch_deployment: blue",
         "SDK checks the deployment, reads the scoring URI, POSTs; invoke takes no tags: one run-history PATCH "
         "(its host found once per client)"),
    ]:
        adapter.clients._clients.clear()  # a cold client for each source
        first, then = measure(fake, action(run_pipeline_rule(source), "model_registered"))
        results.append(Cost(label, first, then, why))
    first, then = measure(fake, action(TAG_MODEL, "model_registered"))
    results.append(Cost("tag_model", first, then,
                        "one MLflow set-tag per key, one read-back; the first reads the workspace's tracking URI"))
    adapter.clients._clients.clear()
    first, then = measure(fake, action(TAG_RUN, "run_completed"))
    results.append(Cost("tag_run (the event's run)", first, then,
                        "the run-history PATCH merges server-side; its host is found once per client"))
    typed = parse_event(event("run_completed"))
    assert isinstance(typed, RunCompleted)
    first, then = measure(fake, lambda n: state.job(ARM, typed.run_id))
    results.append(Cost("state: job", first, then, "one GET"))
    return results


EXPECTED = {
    "run_pipeline (job YAML)": (2, 1),
    "run_pipeline (component name:version)": (2, 2),
    "run_pipeline (batch endpoint + deployment)": (6, 4),
    "tag_model": (3, 2),
    "tag_run (the event's run)": (3, 1),
    "state: job": (1, 1),
}


def test_each_action_costs_the_fewest_requests_the_service_allows(
    fake: FakeAzureML, adapter: AzureMLAdapter, state: AzureMLState
):
    measured = costs(fake, adapter, state)

    print("\n| action | first call | then | requests (first call) | why |\n| --- | --- | --- | --- | --- |")
    for cost in measured:
        print(f"| {cost.action} | {len(cost.first)} | {len(cost.then)} | {'; '.join(cost.first)} | {cost.why} |")
    assert {c.action: (len(c.first), len(c.then)) for c in measured} == EXPECTED


def test_the_credential_is_asked_once_per_scope_however_many_actions_run(
    fake: FakeAzureML, adapter: AzureMLAdapter
):
    """azure-ai-ml asks the credential on every pipeline submission (ml.azure.com and management scopes);
    the caching wrapper answers all but the first of each."""
    fake.add_model("sklearn_regression_model", "20")
    rules = run_pipeline_rule("job_yaml: pipelines/offline-test.yml")
    for n in range(4):
        adapter.execute(planned(rules, event("model_registered", id=f"event-{n}")))
    adapter.execute(planned(TAG_MODEL, event("model_registered")))

    credential = adapter.clients._credential
    assert isinstance(credential, FakeCredential)
    assert sorted(credential.scopes) == [("https://management.azure.com/.default",), ("https://ml.azure.com/.default",)]
