"""What is recorded when a release is queued, for each target's ``ActionResult`` shape — and that a GitHub run's
webhook then finds it (the GitHub Actions target records ``target``/``repository``/``id``; see tracking.py)."""

from __future__ import annotations

from collections.abc import Callable

from shared.actions import ActionKind, ActionResult, PlannedAction
from shared.adapters.dryrun import DryRunAdapter
from shared.releases.tracking import TrackedReleases, organization_name
from tests.conftest import WORKSPACE, Harness, event, rules_from
from tests.releases.conftest import payload
from tests.releases.test_hooks import github

GITHUB_RELEASE = """
rules:
  - name: release-registered-model
    on: ModelRegistered
    do:
      - queue_release: {project: mlops, pipeline_id: 42, environment: production}
  - name: champion
    on: ReleaseDeployed
    do:
      - tag_model: {set: {mlreactor.stage: champion}}
"""


class GitHubShaped(DryRunAdapter):
    """Answers as the GitHub Actions release target records a dispatched workflow run."""

    def execute(self, action: PlannedAction) -> ActionResult:
        super().execute(action)
        return ActionResult(external_id="289782451", url="https://github.com/octo-org/octo-repo/actions/runs/289782451",
                            data={"target": "github-actions", "repository": "Octo-Org/octo-repo", "id": 289782451,
                                  "workflow": "release.yml", "environment": "production", "model": "credit-fraud",
                                  "version": "2", "release_key": "r" * 64,
                                  "url": "https://github.com/octo-org/octo-repo/actions/runs/289782451"})


def test_organization_names_from_their_urls() -> None:
    assert organization_name("https://dev.azure.com/Contoso/") == "contoso"
    assert organization_name("https://contoso.visualstudio.com") == "contoso"
    assert organization_name("http://127.0.0.1:5000/contoso") == "contoso"


def test_a_github_run_is_tracked_and_its_webhook_closes_the_chain(make_engine: Callable[..., Harness]) -> None:
    harness = make_engine(rules_from(GITHUB_RELEASE))
    harness.engine.adapters[ActionKind.QUEUE_RELEASE] = TrackedReleases(
        GitHubShaped(ActionKind.QUEUE_RELEASE), harness.ledger, clock=harness.clock)
    (queued,) = harness.engine.handle_delivery([event("model_registered")])
    assert queued.outcome.value == "acted"
    record = harness.ledger.find_release("github-actions", "octo-org/octo-repo", "289782451")
    assert record is not None
    assert (record.model, record.version, record.workspace, record.definition, record.correlation_id) == (
        "credit-fraud", "2", WORKSPACE, "release.yml", queued.correlation_id)

    answer = github(harness, "workflow_run", payload("github/workflow_run_completed"))
    assert (answer.body["event_type"], answer.body["outcome"]) == ("ReleaseDeployed", "acted")
    assert answer.body["correlation_id"] == queued.correlation_id
    (tagging,) = harness.executed(ActionKind.TAG_MODEL)
    assert (tagging.params.model_dump()["model"], tagging.params.model_dump()["version"]) == ("credit-fraud", "2")


def test_a_result_naming_no_run_is_not_tracked(make_engine: Callable[..., Harness]) -> None:
    harness = make_engine(rules_from(GITHUB_RELEASE))

    class NoRun(DryRunAdapter):
        def execute(self, action: PlannedAction) -> ActionResult:
            return ActionResult(detail="queued nothing")

    harness.engine.adapters[ActionKind.QUEUE_RELEASE] = TrackedReleases(NoRun(ActionKind.QUEUE_RELEASE),
                                                                        harness.ledger, clock=harness.clock)
    harness.engine.handle_delivery([event("model_registered")])
    assert harness.ledger.pending_releases(limit=10) == []


def test_the_tracking_wrapper_is_transparent_to_the_adapters_other_attributes() -> None:
    from shared.ledger.sqlite import SqliteLedger

    inner = GitHubShaped(ActionKind.QUEUE_RELEASE)
    wrapped = TrackedReleases(inner, SqliteLedger.__new__(SqliteLedger))
    assert wrapped.executed is inner.executed and wrapped.kind is ActionKind.QUEUE_RELEASE and wrapped.live is False
