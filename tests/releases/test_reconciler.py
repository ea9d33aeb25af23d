"""Queued releases are remembered, and the reconciler closes the chain when hooks are lost — through the real
azure-devops SDK against the local fake Azure DevOps (tests/fakes/azure_devops.py), on a real SQLite ledger."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from shared.actions import ActionKind, PlannedAction
from shared.adapters.devops_state import DevOpsStateReader
from shared.ledger.port import ReleaseState
from shared.outcomes import Outcome
from shared.releases import hooks, reconciler
from shared.releases.tracking import TrackedReleases
from shared.settings import Settings
from tests.conftest import WORKSPACE, ScriptedAdapter
from tests.devops.conftest import CLASSIC_RULES, PIPELINE_RULES, Release
from tests.releases.conftest import payload
from tests.releases.test_hooks import SECRET, basic

RELEASE_RULES = """
  - name: champion
    on: ReleaseDeployed
    do:
      - tag_model: {set: {mlreactor.stage: champion}}
  - name: waiting
    on: [ReleaseAwaitingApproval, ReleaseApproved, ReleaseRejected, ReleaseFailed, ReleaseExpired]
    do:
      - tag_model: {set: {mlreactor.release_state: "{{ release.transition }}"}}
"""


def tracked(make_release: Callable[..., Release], rules: str) -> Release:
    """The engine as build_adapters makes it: the real release adapter, wrapped to record what it queues."""
    release = make_release(rules + RELEASE_RULES, release_reconcile_max=10)
    release.engine.adapters[ActionKind.QUEUE_RELEASE] = TrackedReleases(
        release.adapter, release.ledger, default_organization=release.fake.organization_url, clock=release.clock)
    return release


def tag_actions(release: Release) -> list[PlannedAction]:
    adapter = release.engine.adapters[ActionKind.TAG_MODEL]
    assert isinstance(adapter, ScriptedAdapter)
    return adapter.executed


def reconcile(release: Release, settings: Settings | None = None) -> reconciler.Report:
    settings = settings or Settings.model_validate({"release_reconcile_max": 10})
    reader = DevOpsStateReader(release.adapter, release.fake.organization_url)
    return reconciler.reconcile(release.engine, dict.fromkeys(reader.targets, reader), settings, release.clock.now())


@pytest.fixture
def pipeline(make_release: Callable[..., Release]) -> Release:
    release = tracked(make_release, PIPELINE_RULES)
    assert release.deliver().outcome is Outcome.ACTED  # ModelRegistered credit-fraud... queues run 101
    return release


def test_a_queued_run_is_recorded_with_what_mlreactor_knew(pipeline: Release) -> None:
    record = pipeline.ledger.find_release("azure-devops-pipeline", "contoso", "101")
    assert record is not None
    run = pipeline.fake.runs[101]["templateParameters"]
    assert (record.model, record.version, record.correlation_id) == (run["modelName"], run["modelVersion"],
                                                                     run["correlationId"])
    assert (record.workspace, record.project, record.definition, record.environment) == (
        WORKSPACE, "mlops", "42", "production")
    assert record.url.endswith("_build/results?buildId=101") and record.state is ReleaseState.QUEUED
    assert record.release_key == run["releaseKey"]


def test_a_redelivered_queue_event_tracks_the_same_release_once(pipeline: Release) -> None:
    assert pipeline.deliver().outcome is Outcome.DUPLICATE
    assert len(pipeline.ledger.pending_releases(limit=10)) == 1


def test_the_reconciler_closes_the_chain_when_the_hooks_are_lost(pipeline: Release) -> None:
    """GIVEN a queued run whose hooks never arrive WHEN the run succeeds THEN one reconciler pass emits
    ReleaseDeployed for the recorded model, and the release is no longer pending."""
    assert reconcile(pipeline).outcomes == []  # still running: nothing to tell
    pipeline.fake.finish_run(101, "succeeded")
    pipeline.clock.advance(minutes=5)
    report = reconcile(pipeline)
    (outcome,) = report.outcomes
    assert (outcome.event_type, outcome.outcome) == ("ReleaseDeployed", Outcome.ACTED)
    (tagging,) = tag_actions(pipeline)
    assert tagging.event.context()["release"]["via"] == "reconciler"
    assert pipeline.ledger.pending_releases(limit=10) == []
    assert reconcile(pipeline).read == 0  # nothing pending: no GET at all


def test_a_hook_after_the_reconciler_is_a_duplicate_not_a_second_event(pipeline: Release) -> None:
    pipeline.fake.finish_run(101, "succeeded")
    reconcile(pipeline)
    body = payload("azure_devops/run_state_changed")
    body["resource"]["run"]["id"] = 101
    late = hooks.azure_devops(pipeline.engine, Settings.model_validate({"release_hook_secret": SECRET}),
                              basic(SECRET), json.dumps(body).encode(), "contoso", pipeline.clock.now())
    assert late.body["outcome"] == "duplicate"
    assert len(tag_actions(pipeline)) == 1


def test_a_failed_run_ends_the_chain_as_failed(pipeline: Release) -> None:
    pipeline.fake.finish_run(101, "failed")
    (outcome,) = reconcile(pipeline).outcomes
    assert outcome.event_type == "ReleaseFailed"
    record = pipeline.ledger.find_release("azure-devops-pipeline", "contoso", "101")
    assert record is not None and record.state is ReleaseState.FAILED


def test_each_pending_release_costs_one_get_and_the_count_is_bounded(make_release: Callable[..., Release]) -> None:
    release = tracked(make_release, PIPELINE_RULES)
    for version in ("2", "3", "4"):
        release.deliver(id=f"registered-{version}",
                        data={"modelName": "credit-fraud", "modelVersion": version, "modelTags": {}})
    assert len(release.ledger.pending_releases(limit=10)) == 3
    before = len(release.fake.calls("GET", "/runs/"))
    report = reconcile(release, Settings.model_validate({"release_reconcile_max": 2}))
    assert report.read == 2 and len(release.fake.calls("GET", "/runs/")) - before == 2
    release.clock.advance(minutes=5)
    reconcile(release, Settings.model_validate({"release_reconcile_max": 2}))
    read = {r.path.rsplit("/", 1)[1] for r in release.fake.calls("GET", "/runs/")[before:]}
    assert read == {"101", "102", "103"}  # the least recently checked first: the third is read in the second pass


def test_a_classic_release_waiting_then_rejected_with_who_and_why(make_release: Callable[..., Release]) -> None:
    release = tracked(make_release, CLASSIC_RULES)
    release.deliver()
    release.fake.set_stage(1, "Production", "inProgress", [{"status": "pending"}])
    (waiting,) = reconcile(release).outcomes
    assert waiting.event_type == "ReleaseAwaitingApproval"
    release.fake.set_stage(1, "Production", "rejected", [
        {"status": "rejected", "approvedBy": {"displayName": "Dana Reviewer"}, "comments": "not this week"}])
    release.clock.advance(minutes=5)
    (rejected,) = reconcile(release).outcomes
    assert rejected.event_type == "ReleaseRejected"
    context = tag_actions(release)[-1].event.context()["release"]
    assert (context["actor"], context["comment"], context["environment"]) == ("Dana Reviewer", "not this week",
                                                                              "Production")


def test_a_release_waiting_past_the_reminder_time_gets_one_reminder_per_interval(
    make_release: Callable[..., Release],
) -> None:
    release = tracked(make_release, CLASSIC_RULES)
    release.deliver()
    release.fake.set_stage(1, "Production", "inProgress", [{"status": "pending"}])
    reconcile(release)
    started = release.clock.now()
    for hours in (20, 29, 1, 47, 1):  # 20 h, 49 h, 50 h, 97 h, 98 h after it started waiting
        release.clock.advance(hours=hours)
        reconcile(release)
    reminders = [(a.event.context()["release"]["reminder"], a.event.time) for a in tag_actions(release)
                 if a.event.context()["release"]["reminder"]]
    assert reminders == [(1, started + timedelta(hours=49)), (2, started + timedelta(hours=97))]
    record = release.ledger.find_release("azure-devops-release", "contoso", "1")
    assert record is not None and record.waiting_since == started
