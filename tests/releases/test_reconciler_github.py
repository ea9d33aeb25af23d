"""GitHub Actions releases are reconciled too: a lost webhook no longer leaves the chain open. Through the real
GitHub release adapter (its HTTP client, App token and retries) against the local fake GitHub
(tests/fakes/github.py), on a real SQLite ledger."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.actions import ActionKind, PlannedAction
from shared.adapters.github.state import GitHubStateReader
from shared.ledger.port import ReleaseState
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import Outcome
from shared.releases import hooks, reconciler
from shared.releases.tracking import TrackedReleases
from shared.settings import Settings
from tests.conftest import ScriptedAdapter
from tests.github.conftest import GITHUB_RULES, REPOSITORY, GitHubRelease
from tests.releases.conftest import payload
from tests.releases.test_hooks import GITHUB_SECRET, signed
from tests.releases.test_reconciler import RELEASE_RULES

RUN = 9_000_000_001  # the fake's first dispatched run
RUN_PATH = f"/repos/{REPOSITORY}/actions/runs/"


def tracked(make_github_release: Callable[..., GitHubRelease]) -> GitHubRelease:
    """The engine as build_adapters makes it: the real GitHub adapter, wrapped to record what it dispatches."""
    release = make_github_release(GITHUB_RULES + RELEASE_RULES, release_reconcile_max=10)
    release.engine.adapters[ActionKind.QUEUE_RELEASE] = TrackedReleases(release.adapter, release.ledger,
                                                                         clock=release.clock)
    return release


def tag_actions(release: GitHubRelease) -> list[PlannedAction]:
    adapter = release.engine.adapters[ActionKind.TAG_MODEL]
    assert isinstance(adapter, ScriptedAdapter)
    return adapter.executed


def reconcile(release: GitHubRelease, settings: Settings | None = None) -> reconciler.Report:
    settings = settings or Settings.model_validate({"release_reconcile_max": 10})
    reader = GitHubStateReader(release.adapter)
    return reconciler.reconcile(release.engine, dict.fromkeys(reader.targets, reader), settings, release.clock.now())


def run_gets(release: GitHubRelease) -> list[str]:
    return [r.path.removeprefix(RUN_PATH) for r in release.fake.calls("GET", RUN_PATH)]


@pytest.fixture
def dispatched(make_github_release: Callable[..., GitHubRelease]) -> GitHubRelease:
    release = tracked(make_github_release)
    assert release.deliver().outcome is Outcome.ACTED  # ModelRegistered credit-fraud... dispatches run RUN
    return release


def test_a_dispatched_run_is_recorded_as_a_pending_github_release(dispatched: GitHubRelease) -> None:
    record = dispatched.ledger.find_release("github-actions", REPOSITORY, str(RUN))
    assert record is not None and record.state is ReleaseState.QUEUED
    assert (record.environment, record.url) == ("production", f"https://github.com/{REPOSITORY}/actions/runs/{RUN}")


def test_a_run_that_succeeded_is_deployed_once_and_a_late_hook_is_a_duplicate(dispatched: GitHubRelease) -> None:
    """GIVEN a dispatched run whose webhooks never arrive WHEN it completes with success THEN one reconciler pass
    emits ReleaseDeployed, a second pass reads nothing, and the hook arriving late is a duplicate."""
    dispatched.fake.set_status(RUN, "in_progress")
    assert reconcile(dispatched).outcomes == []  # running: nothing to tell
    dispatched.fake.finish_run(RUN, "success")
    dispatched.clock.advance(minutes=5)
    (outcome,) = reconcile(dispatched).outcomes
    assert (outcome.event_type, outcome.outcome) == ("ReleaseDeployed", Outcome.ACTED)
    (tagging,) = tag_actions(dispatched)
    context = tagging.event.context()["release"]
    assert context["via"] == "reconciler"
    assert context["approval_url"] == f"https://github.com/{REPOSITORY}/actions/runs/{RUN}"  # the run's html_url
    assert context["status"] == "workflow run completed: success"
    assert dispatched.ledger.pending_releases(limit=10) == []
    assert reconcile(dispatched).read == 0  # nothing pending: no GET at all

    body = payload("github/workflow_run_completed")
    body["repository"]["full_name"] = REPOSITORY
    body["workflow_run"]["id"] = RUN
    raw = json.dumps(body).encode()
    headers = {"X-GitHub-Event": "workflow_run", "X-GitHub-Delivery": "late-1", "X-Hub-Signature-256": signed(raw)}
    late = hooks.github(dispatched.engine, Settings.model_validate({"github_webhook_secret": GITHUB_SECRET}),
                        headers, raw, dispatched.clock.now())
    assert late.body["outcome"] == "duplicate"
    assert len(tag_actions(dispatched)) == 1


@pytest.mark.parametrize("conclusion", ["failure", "cancelled", "timed_out"])
def test_a_run_that_failed_ends_the_chain_as_failed(dispatched: GitHubRelease, conclusion: str) -> None:
    dispatched.fake.finish_run(RUN, conclusion)
    (outcome,) = reconcile(dispatched).outcomes
    assert outcome.event_type == "ReleaseFailed"
    assert tag_actions(dispatched)[-1].event.context()["release"]["status"] == f"workflow run completed: {conclusion}"
    record = dispatched.ledger.find_release("github-actions", REPOSITORY, str(RUN))
    assert record is not None and record.state is ReleaseState.FAILED


@pytest.mark.parametrize("conclusion", ["neutral", "skipped"])
def test_a_run_that_neither_deployed_nor_failed_tells_nothing(dispatched: GitHubRelease, conclusion: str) -> None:
    dispatched.fake.finish_run(RUN, conclusion)
    assert reconcile(dispatched).outcomes == []
    assert len(dispatched.ledger.pending_releases(limit=10)) == 1


def test_a_run_waiting_for_its_reviewer_is_awaiting_approval_once(dispatched: GitHubRelease) -> None:
    """A job whose environment requires a reviewer holds the run as ``waiting`` (the fake's runs start so)."""
    (waiting,) = reconcile(dispatched).outcomes
    assert (waiting.event_type, waiting.outcome) == ("ReleaseAwaitingApproval", Outcome.ACTED)
    record = dispatched.ledger.find_release("github-actions", REPOSITORY, str(RUN))
    assert record is not None and record.state is ReleaseState.AWAITING_APPROVAL
    dispatched.clock.advance(minutes=5)
    assert [o.outcome for o in reconcile(dispatched).outcomes] == [Outcome.DUPLICATE]
    assert len(tag_actions(dispatched)) == 1


def test_a_run_github_does_not_know_is_reported_and_emits_nothing(dispatched: GitHubRelease) -> None:
    del dispatched.fake.runs[RUN]  # e.g. the run was deleted: GitHub answers 404
    report = reconcile(dispatched)
    assert report.read == 1 and report.outcomes == []
    (error,) = report.errors
    assert f"github-actions #{RUN}" in error and "HTTP 404" in error
    assert tag_actions(dispatched) == []
    assert len(dispatched.ledger.pending_releases(limit=10)) == 1  # still pending: read again next time


def test_each_pending_github_release_costs_one_get(make_github_release: Callable[..., GitHubRelease]) -> None:
    release = tracked(make_github_release)
    for version in ("2", "3", "4"):
        release.deliver(id=f"registered-{version}",
                        data={"modelName": "credit-fraud", "modelVersion": version, "modelTags": {}})
    assert len(release.ledger.pending_releases(limit=10)) == 3
    for run in release.fake.runs:
        release.fake.set_status(run, "in_progress")
    before = len(release.fake.requests)
    report = reconcile(release)
    sent = release.fake.requests[before:]
    assert report.read == 3 and report.errors == []
    assert sorted(r.path.removeprefix(RUN_PATH) for r in sent) == sorted(str(r) for r in release.fake.runs)
    assert {r.method for r in sent} == {"GET"}  # one GET each, nothing else (the App token is the dispatch's)
    release.clock.advance(minutes=5)
    before = len(run_gets(release))
    assert reconcile(release, Settings.model_validate({"release_reconcile_max": 2})).read == 2
    assert len(run_gets(release)) - before == 2


def test_readers_include_github_when_it_is_configured(github_settings: Callable[..., Settings],
                                                      tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "readers.sqlite3")
    try:
        found = reconciler.readers(github_settings(), ledger)
        assert isinstance(found["github-actions"], GitHubStateReader)
        assert "github-actions" not in reconciler.readers(github_settings(dry_run=True), ledger)
        assert "github-actions" not in reconciler.readers(
            github_settings(github_app_id=None, github_app_private_key=None), ledger)
    finally:
        ledger.close()
