"""Nothing is queued to an Azure DevOps target that lacks a human approval — verified before every queue, from the
environment's check configurations (YAML) or the stage's pre-deployment approvals (classic)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from shared.ops.redrive import DeadLettered, redrive
from shared.outcomes import Outcome
from tests.conftest import FakeClock
from tests.devops.conftest import BASIC, BEARER, CLASSIC_RULES, FakeCredential, Release
from tests.fakes.azure_devops import FakeAzureDevOps

RUNS = "/_apis/pipelines/42/runs"
CHECKS = "/_apis/pipelines/checks/configurations"
ENVIRONMENTS = "/_apis/distributedtask/environments"


def test_given_a_missing_environment_then_nothing_is_posted_and_the_reason_names_where_and_what_is_missing(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    fake_devops.environments.clear()
    fake_devops.checks.clear()
    release = make_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.QUARANTINED
    assert not fake_devops.calls("POST")
    assert fake_devops.environment("production") is None, "nothing ran, so Azure Pipelines created nothing"
    for named in ("organization contoso", "project mlops", "pipeline 42", "'production'", "does not exist"):
        assert named in outcome.reason
    [quarantined] = release.ledger.quarantined()
    assert "not gated by a person" in quarantined.reason


def test_the_fake_answers_as_the_service_a_run_to_a_missing_environment_creates_it_without_checks(
    fake_devops: FakeAzureDevOps,
) -> None:
    """Why the check exists (Microsoft's "Create and target an environment"), shown on the fake the tests trust."""
    fake_devops.targets[42] = "prod-eu"

    status, _ = fake_devops.answer("POST", "/contoso/mlops/_apis/pipelines/42/runs", {}, {"templateParameters": {}})

    assert status == 200
    env = fake_devops.environment("prod-eu")
    assert env is not None
    assert not [c for c in fake_devops.checks.values() if c["resource"]["id"] == str(env["id"])]


def test_given_an_environment_without_an_approval_check_then_it_is_refused(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    fake_devops.environments.clear()
    fake_devops.checks.clear()
    fake_devops.add_environment("production", approvers=(), branch_control=True)
    release = make_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.QUARANTINED
    assert "has no Approval check (it has only: Task Check)" in outcome.reason
    assert not fake_devops.calls("POST")


def test_given_an_approval_check_then_the_run_is_queued_once_and_the_settings_were_read_expanded(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()

    outcome = release.deliver()
    again = release.deliver(id="same-version-again")

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    assert again.outcome is Outcome.ACTED and "already queued" in again.actions[0].detail
    assert len(fake_devops.calls("POST", RUNS)) == 1
    [environments] = fake_devops.calls("GET", ENVIRONMENTS)
    assert environments.query["name"] == ["production"]
    [checks] = fake_devops.calls("GET", CHECKS)
    assert checks.query["resourceType"] == ["environment"] and checks.query["$expand"] == ["settings"]
    assert checks.accept == "application/json;api-version=7.1-preview.1"


def test_the_verdict_reports_the_approvers_the_minimum_and_whether_requesters_may_approve(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    fake_devops.environments.clear()
    fake_devops.checks.clear()
    fake_devops.add_environment("production", approvers=("Ana", "Ben"), min_required=0,
                                requester_cannot_be_approver=False)
    release = make_release()

    release.deliver()

    [check] = release.adapter.gates.latest()
    assert check.gated and check.approvers == ("Ana", "Ben")
    assert check.min_approvers == 2  # 0 in the API means "all of them"
    assert check.self_approval_blocked is False
    assert "all 2 required; requesters may approve their own runs" in check.reason


def test_a_verified_gate_is_trusted_for_the_cache_time_then_read_again_and_a_removed_approval_refuses(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps, clock: FakeClock
) -> None:
    release = make_release()
    release.deliver()
    fake_devops.remove_approval("production")

    clock.advance(minutes=5)
    cached = release.deliver(id="second", data={"ModelName": "m2", "ModelVersion": 1})
    clock.advance(minutes=6)  # 11 min after the first verification: past the 10 min default
    refused = release.deliver(id="third", data={"ModelName": "m3", "ModelVersion": 1})

    assert cached.outcome is Outcome.ACTED, "within the cache time the earlier verdict holds (no request)"
    assert len(fake_devops.calls("GET", CHECKS)) == 2
    assert refused.outcome is Outcome.QUARANTINED
    assert "no Approval check" in refused.reason
    assert len(fake_devops.calls("POST", RUNS)) == 2


def test_a_negative_verdict_is_never_cached_and_a_redrive_after_the_fix_queues_exactly_once(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    fake_devops.environments.clear()
    fake_devops.checks.clear()
    release = make_release()
    assert release.deliver().outcome is Outcome.QUARANTINED

    fake_devops.add_environment("production")  # someone adds the environment and its Approval check
    quarantined = [DeadLettered("quarantine", r.raw, r.reason) for r in release.ledger.quarantined()]
    [redriven] = redrive(release.engine, quarantined, reopen=True)
    [twice] = redrive(release.engine, quarantined, reopen=True)

    assert redriven.outcome == "acted", redriven.reason
    assert twice.reason == "0 action(s) done, 1 already done before"
    assert len(fake_devops.calls("POST", RUNS)) == 1


def test_given_a_classic_stage_with_an_automated_approval_then_no_release_is_created(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    fake_devops.set_stage_approval(7, "Production", None)
    release = make_release(CLASSIC_RULES)

    outcome = release.deliver()

    assert outcome.outcome is Outcome.QUARANTINED
    assert "release definition 7" in outcome.reason
    assert "pre-deployment approval of stage 'Production' is automated" in outcome.reason
    assert not fake_devops.calls("POST")


def test_given_a_classic_stage_with_a_person_approving_then_one_release_is_created(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(CLASSIC_RULES)

    outcome = release.deliver()

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    [definition] = fake_devops.calls("GET", "/Release/definitions/7")
    assert definition.path.startswith("/vsrm/")
    assert len(fake_devops.calls("POST")) == 1
    [check] = release.adapter.gates.latest()
    assert check.approvers == ("ML Release Board",) and check.self_approval_blocked is True


@pytest.mark.parametrize("refusal", [401, 203])
def test_in_auto_mode_a_refused_entra_token_is_retried_once_with_the_pat_and_the_audit_says_so(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps, clock: FakeClock,
    caplog: pytest.LogCaptureFixture, refusal: int,
) -> None:
    """The managed identity has a token but was never added to the organization."""
    fake_devops.accepted_auth = {BASIC}
    fake_devops.refused_status = refusal
    release = make_release(credential=FakeCredential(clock), devops_auth="auto")

    with caplog.at_level(logging.WARNING):
        outcome = release.deliver()

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    [first, *rest] = fake_devops.requests
    assert first.headers["authorization"] == BEARER
    assert {r.headers["authorization"] for r in rest} == {BASIC}
    assert "with the PAT" in outcome.actions[0].detail
    assert "refused the managed identity's token" in caplog.text
    assert len(fake_devops.calls("POST")) == 1


def test_in_entra_mode_a_refused_token_is_not_retried_with_the_pat(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps, clock: FakeClock
) -> None:
    fake_devops.accepted_auth = {BASIC}
    release = make_release(credential=FakeCredential(clock), devops_auth="entra")

    outcome = release.deliver()

    assert outcome.outcome is Outcome.QUARANTINED
    assert "HTTP 401" in outcome.reason
    assert {r.headers["authorization"] for r in fake_devops.requests} == {BEARER}
