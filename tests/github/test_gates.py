"""Nothing is dispatched to a GitHub workflow whose environment lacks a required reviewer — verified first."""

from __future__ import annotations

from collections.abc import Callable

from shared.outcomes import Outcome
from tests.conftest import FakeClock
from tests.fakes.github import FakeGitHub
from tests.github.conftest import DISPATCHES, GitHubRelease

ENVIRONMENT = "/repos/contoso/ml-release/environments/production"


def test_given_a_missing_environment_then_nothing_is_dispatched_and_the_reason_names_the_repository(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.environments.clear()
    release = make_github_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.QUARANTINED
    assert not fake_github.calls("POST", DISPATCHES)
    assert "production" not in fake_github.environments, "nothing ran, so GitHub created nothing"
    for named in ("repository contoso/ml-release", "workflow release-model.yml", "'production'", "does not exist"):
        assert named in outcome.reason


def test_the_fake_answers_as_github_a_dispatch_to_a_missing_environment_creates_it_unprotected(
    fake_github: FakeGitHub,
) -> None:
    fake_github.environments.clear()

    status, _, _ = fake_github._dispatch({"ref": "main", "inputs": {}})

    assert status == 204
    assert fake_github.environments["production"]["protection_rules"] == []


def test_given_an_environment_with_only_a_wait_timer_then_it_is_refused(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.add_environment("production", reviewers=(), wait_timer=30)
    release = make_github_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.QUARANTINED
    assert "has no required reviewers (protection rules: wait_timer)" in outcome.reason
    assert not fake_github.calls("POST", DISPATCHES)


def test_given_required_reviewers_then_one_run_is_dispatched_and_self_review_is_reported(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.add_environment("production", reviewers=("ml-release-board",), prevent_self_review=False)
    release = make_github_release()

    outcome = release.deliver()
    release.deliver()

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    assert len(fake_github.calls("POST", DISPATCHES)) == 1
    [check] = release.adapter.gates.latest()
    assert check.approvers == ("team ml-release-board",)
    assert check.self_approval_blocked is False
    assert "the dispatcher may approve its own run; admins may bypass" in check.reason


def test_a_removed_reviewer_rule_refuses_the_next_release_once_the_verified_gate_expires(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub, clock: FakeClock
) -> None:
    release = make_github_release(release_gate_cache_seconds=60)
    release.deliver()
    fake_github.add_environment("production", reviewers=())

    clock.advance(seconds=61)
    refused = release.deliver(id="second", data={"ModelName": "m2", "ModelVersion": 1})

    assert refused.outcome is Outcome.QUARANTINED
    assert len(fake_github.calls("GET", ENVIRONMENT)) == 2
    assert len(fake_github.calls("POST", DISPATCHES)) == 1
