"""Reading the documented hook payloads: which run or release, and what happened to it — and nothing more."""

from __future__ import annotations

import pytest

from shared.events import EventKind
from shared.releases.signals import Ignored, Signal, TargetKind, parse_azure_devops, parse_github
from tests.releases.conftest import payload


def ado(name: str, **resource_changes: object) -> Signal | Ignored:
    body = payload(f"azure_devops/{name}")
    body["resource"].update(resource_changes)
    return parse_azure_devops(body, "Contoso")


def test_a_succeeded_run_is_deployed() -> None:
    signal = ado("run_state_changed")
    assert isinstance(signal, Signal)
    assert (signal.target, signal.scope, signal.release_id, signal.kind) == (
        TargetKind.AZURE_DEVOPS_PIPELINE, "contoso", "11", EventKind.RELEASE_DEPLOYED)
    assert signal.status == "run completed: succeeded"
    assert signal.notification == "62e4351f-1c24-40f9-8510-7af03692ab45"
    assert signal.link == "https://codedev.ms/org/863d0a5b-3c91-4bf3-8ad7-7f33736b7f4c/_build/results?buildId=11"


@pytest.mark.parametrize(("result", "kind"), [
    ("failed", EventKind.RELEASE_FAILED), ("canceled", EventKind.RELEASE_FAILED),
    ("partiallySucceeded", EventKind.RELEASE_FAILED),
])
def test_a_run_that_did_not_succeed_failed(result: str, kind: EventKind) -> None:
    body = payload("azure_devops/run_state_changed")
    body["resource"]["run"]["result"] = result
    signal = parse_azure_devops(body, "contoso")
    assert isinstance(signal, Signal) and signal.kind is kind and signal.status == f"run completed: {result}"


def test_a_run_still_in_progress_is_no_transition() -> None:
    body = payload("azure_devops/run_state_changed")
    body["resource"]["run"].update(state="inProgress", result=None)
    assert isinstance(parse_azure_devops(body, "contoso"), Ignored)


def test_stage_states_waiting_and_rejected_are_transitions_a_succeeded_stage_is_not() -> None:
    assert isinstance(ado("stage_state_changed"), Ignored)  # the documented sample: a stage succeeded
    body = payload("azure_devops/stage_state_changed")
    body["resource"]["stage"].update(state="waiting", result=None)
    waiting = parse_azure_devops(body, "contoso")
    assert isinstance(waiting, Signal) and waiting.kind is EventKind.RELEASE_AWAITING_APPROVAL
    assert waiting.release_id == "2" and waiting.status == "stage __default waiting"
    body["resource"]["stage"].update(state="completed", result="rejected")
    rejected = parse_azure_devops(body, "contoso")
    assert isinstance(rejected, Signal) and rejected.kind is EventKind.RELEASE_REJECTED


def test_the_documented_yaml_approval_names_its_run_only_in_the_message_link() -> None:
    """The sample has ``"run": null``; ``buildId=2`` in the message is the only reference to the run."""
    signal = ado("approval_pending")
    assert isinstance(signal, Signal)
    assert (signal.release_id, signal.kind, signal.status) == ("2", EventKind.RELEASE_AWAITING_APPROVAL,
                                                                "approval pending")
    with_run = ado("approval_pending", run={"id": 57})
    assert isinstance(with_run, Signal) and with_run.release_id == "57"  # resource.run.id wins where given


@pytest.mark.parametrize(("status", "kind"), [
    ("approved", EventKind.RELEASE_APPROVED), ("rejected", EventKind.RELEASE_REJECTED),
    ("timedOut", EventKind.RELEASE_EXPIRED),
])
def test_a_completed_yaml_approval_is_approved_rejected_or_expired(status: str, kind: EventKind) -> None:
    body = payload("azure_devops/approval_completed")
    approval = body["resource"]["approval"]
    approval["status"] = approval["steps"][0]["status"] = status
    approval["steps"][0]["actualApprover"] = {"displayName": "Dana Reviewer", "id": "x"}
    signal = parse_azure_devops(body, "contoso")
    assert isinstance(signal, Signal)
    assert (signal.kind, signal.actor, signal.comment) == (kind, "Dana Reviewer", "Sample comment")


def test_a_classic_pre_deployment_approval_pending_and_completed() -> None:
    pending = ado("release_approval_pending")
    assert isinstance(pending, Signal)
    assert (pending.target, pending.release_id, pending.kind, pending.environment) == (
        TargetKind.AZURE_DEVOPS_RELEASE, "1", EventKind.RELEASE_AWAITING_APPROVAL, "Dev")
    approved = ado("release_approval_completed")
    assert isinstance(approved, Signal)
    assert (approved.kind, approved.actor, approved.comment) == (EventKind.RELEASE_APPROVED, "Chuck Reinhart", None)
    body = payload("azure_devops/release_approval_completed")
    body["resource"]["approval"].update(status="rejected", comments="metrics drifted since the test")
    rejected = parse_azure_devops(body, "contoso")
    assert isinstance(rejected, Signal)
    assert (rejected.kind, rejected.comment) == (EventKind.RELEASE_REJECTED, "metrics drifted since the test")


def test_a_post_deployment_approval_is_not_the_gate() -> None:
    body = payload("azure_devops/release_approval_pending")
    body["resource"]["approval"]["approvalType"] = "postDeploy"
    assert isinstance(parse_azure_devops(body, "contoso"), Ignored)


@pytest.mark.parametrize(("status", "kind"), [
    ("succeeded", EventKind.RELEASE_DEPLOYED), ("rejected", EventKind.RELEASE_REJECTED),
    ("canceled", EventKind.RELEASE_FAILED), ("partiallySucceeded", EventKind.RELEASE_FAILED),
])
def test_a_completed_classic_deployment(status: str, kind: EventKind) -> None:
    body = payload("azure_devops/release_deployment_completed")
    body["resource"]["environment"]["status"] = status
    signal = parse_azure_devops(body, "contoso")
    assert isinstance(signal, Signal)
    assert (signal.release_id, signal.kind, signal.environment) == ("1", kind, "Dev")


@pytest.mark.parametrize("event_type", ["build.complete", "git.push", "ms.vss-release.release-created-event", ""])
def test_other_azure_devops_events_are_ignored_with_the_reason(event_type: str) -> None:
    body = payload("azure_devops/run_state_changed")
    body["eventType"] = event_type
    ignored = parse_azure_devops(body, "contoso")
    assert isinstance(ignored, Ignored) and "is not a release transition" in ignored.reason


def test_github_workflow_run_completed_success_is_deployed() -> None:
    signal = parse_github("workflow_run", "d-1", payload("github/workflow_run_completed"))
    assert isinstance(signal, Signal)
    assert (signal.target, signal.scope, signal.release_id, signal.kind) == (
        TargetKind.GITHUB_ACTIONS, "octo-org/octo-repo", "289782451", EventKind.RELEASE_DEPLOYED)
    assert signal.notification == "d-1"
    assert signal.link == "https://github.com/octo-org/octo-repo/actions/runs/289782451"


def test_github_deployment_review_requested_approved_rejected() -> None:
    body = payload("github/deployment_review_requested")
    requested = parse_github("deployment_review", None, body)
    assert isinstance(requested, Signal)
    assert (requested.release_id, requested.kind, requested.environment) == (
        "5453085689", EventKind.RELEASE_AWAITING_APPROVAL, "TST")
    body.update(action="rejected", approver={"login": "dana"}, comment="not during the freeze")
    rejected = parse_github("deployment_review", None, body)
    assert isinstance(rejected, Signal)
    assert (rejected.kind, rejected.actor, rejected.comment) == (EventKind.RELEASE_REJECTED, "dana",
                                                                 "not during the freeze")


def test_github_deployment_status_needs_its_workflow_run() -> None:
    body = payload("github/deployment_status")  # an older deployment, not made by Actions: no workflow_run
    assert isinstance(parse_github("deployment_status", None, body), Ignored)
    body["workflow_run"] = {"id": 77, "html_url": "https://github.com/Codertocat/Hello-World/actions/runs/77"}
    signal = parse_github("deployment_status", None, body)
    assert isinstance(signal, Signal)
    assert (signal.release_id, signal.kind, signal.environment) == ("77", EventKind.RELEASE_DEPLOYED, "production")


def test_a_github_ping_or_other_event_is_ignored() -> None:
    ignored = parse_github("ping", None, {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert isinstance(ignored, Ignored)
    push = parse_github("push", None, payload("github/workflow_run_completed"))
    assert isinstance(push, Ignored) and push.reason == "push completed is not a release transition mlreactor follows"
