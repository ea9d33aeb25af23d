"""What a release target says about a run or release, read from its own notification: a ``Signal``, or why not.

Only *which* run or release, *what happened* to it, and who/why/where-to-look are read from a payload. The model,
version, correlation id and workspace never are: ``intake.py`` takes them from what mlreactor recorded when it queued
the release. Payload shapes are Microsoft's "Service hooks events" page (azure-devops-docs
``docs/service-hooks/events.md``) and GitHub's webhook payloads (octokit/webhooks ``payload-examples``); samples of
both are in ``tests/events/hooks/``.

Azure DevOps event ids (as documented; the YAML approval events are ``ms.vss-pipelinechecks-events.*``, not
``ms.vss-pipelines.*``)::

    ms.vss-pipelines.run-state-changed-event          run completed: succeeded → deployed, failed/canceled → failed
    ms.vss-pipelines.stage-state-changed-event        stage waiting → awaiting approval, completed rejected → rejected
    ms.vss-pipelinechecks-events.approval-pending     → awaiting approval
    ms.vss-pipelinechecks-events.approval-completed   approved / rejected / timedOut → approved / rejected / expired
    ms.vss-release.deployment-approval-pending-event  (pre-deployment) → awaiting approval
    ms.vss-release.deployment-approval-completed-event  approved / rejected
    ms.vss-release.deployment-completed-event         succeeded → deployed, rejected → rejected, else → failed

The documented YAML approval samples carry ``"run": null`` and ``"pipeline": null``: the only reference to the run
is the ``_build/results?buildId=N`` link in ``message``. ``resource.run.id`` is read first; the link is the
fallback. Whether live deliveries fill ``resource.run`` is not verified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.events import EventKind
from shared.ledger.port import ReleaseState


class TargetKind(StrEnum):
    """The release targets, spelled as the release adapters record them (``ActionResult.data["target"]``)."""

    AZURE_DEVOPS_PIPELINE = "azure-devops-pipeline"
    AZURE_DEVOPS_RELEASE = "azure-devops-release"
    GITHUB_ACTIONS = "github-actions"


#: The ledger state each release event kind moves a release to.
STATE_OF: Mapping[EventKind, ReleaseState] = {
    EventKind.RELEASE_AWAITING_APPROVAL: ReleaseState.AWAITING_APPROVAL,
    EventKind.RELEASE_APPROVED: ReleaseState.APPROVED,
    EventKind.RELEASE_REJECTED: ReleaseState.REJECTED,
    EventKind.RELEASE_DEPLOYED: ReleaseState.DEPLOYED,
    EventKind.RELEASE_FAILED: ReleaseState.FAILED,
    EventKind.RELEASE_EXPIRED: ReleaseState.EXPIRED,
}


class Signal(BaseModel):
    """One transition of one run or release, as its target reported it."""

    model_config = ConfigDict(frozen=True)

    target: TargetKind
    scope: str
    release_id: str
    kind: EventKind
    #: What the target said, in its words ("run completed: failed", "approval timedOut").
    status: str
    #: The source's own event type (``ms.vss-pipelines.run-state-changed-event``, ``github:workflow_run``).
    source_type: str
    notification: str | None = None
    actor: str | None = None
    comment: str | None = None
    link: str | None = None
    #: The stage/environment the signal is about, where the payload names it (checked against the record's).
    environment: str | None = None


class Ignored(BaseModel):
    """A notification that is not a transition of a release (answered 200, so the sender does not retry)."""

    model_config = ConfigDict(frozen=True)

    reason: str
    source_type: str = ""


_BUILD_LINK = re.compile(r"_build/results\?buildId=(\d+)")


def _get(obj: object, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str) and str(value).strip():
        return str(value).strip()
    return None


def _id(value: object) -> str | None:
    """Run and release ids are positive integers; ``0`` is what the documented samples put where none is known."""
    text = _text(value)
    return text if text is not None and text.isdigit() and int(text) > 0 else None


def _who(*people: object) -> str | None:
    for person in people:
        name = _text(_get(person, "displayName")) or _text(_get(person, "login")) or _text(_get(person, "name"))
        if name:
            return name
    return None


# Azure DevOps -------------------------------------------------------------------------------------------------
_RUN_FAILED = {"failed", "canceled", "partiallysucceeded"}


def parse_azure_devops(body: object, organization: str) -> Signal | Ignored:
    """A service-hooks notification (Web Hooks consumer, ``resourceVersion`` 5.1-preview.1 / 3.0-preview.1)."""
    if not isinstance(body, Mapping):
        return Ignored(reason="the notification is not a JSON object")
    event_type = _text(body.get("eventType")) or ""
    resource = body.get("resource")
    if not isinstance(resource, Mapping):
        return Ignored(reason=f"{event_type or 'notification'} without a resource", source_type=event_type)
    common = {"scope": organization.lower(), "source_type": event_type, "notification": _text(body.get("id"))}
    if event_type.startswith(("ms.vss-pipelines.", "ms.vss-pipelinechecks-events.")):
        signal = _yaml_run(event_type, resource, body, common)
    elif event_type.startswith("ms.vss-release."):
        signal = _classic(event_type, resource, common)
    else:
        signal = None
    if signal is None:
        return Ignored(reason=f"{event_type or 'an event without eventType'} is not a release transition "
                              "mlreactor follows", source_type=event_type)
    return signal


def _yaml_run(event_type: str, resource: Mapping[str, Any], body: Mapping[str, Any],
              common: dict[str, Any]) -> Signal | Ignored | None:
    run_id = _id(_get(resource, "run", "id")) or _run_from_links(body)
    web = _text(_get(resource, "run", "_links", "web", "href"))
    if run_id is None:
        return Ignored(reason=f"{event_type} names no pipeline run", source_type=event_type)
    made = {**common, "target": TargetKind.AZURE_DEVOPS_PIPELINE, "release_id": run_id, "link": web}
    if event_type == "ms.vss-pipelines.run-state-changed-event":
        state, result = (_text(_get(resource, "run", k)) or "" for k in ("state", "result"))
        if state.lower() != "completed":
            return None
        kind = EventKind.RELEASE_DEPLOYED if result.lower() == "succeeded" else (
            EventKind.RELEASE_FAILED if result.lower() in _RUN_FAILED else None)
        return None if kind is None else Signal(**made, kind=kind, status=f"run completed: {result}")
    if event_type == "ms.vss-pipelines.stage-state-changed-event":
        stage = _text(_get(resource, "stage", "name")) or "?"
        state, result = (_text(_get(resource, "stage", k)) or "" for k in ("state", "result"))
        if state.lower() == "waiting":
            return Signal(**made, kind=EventKind.RELEASE_AWAITING_APPROVAL, status=f"stage {stage} waiting")
        if state.lower() == "completed" and result.lower() == "rejected":
            return Signal(**made, kind=EventKind.RELEASE_REJECTED, status=f"stage {stage} rejected")
        return None
    approval = resource.get("approval")
    if not isinstance(approval, Mapping):
        return None
    status = (_text(approval.get("status")) or "").lower()
    steps = [s for s in approval.get("steps") or [] if isinstance(s, Mapping)]
    acted = next((s for s in steps if (_text(s.get("status")) or "").lower() == status), steps[0] if steps else {})
    who = _who(acted.get("actualApprover"), acted.get("assignedApprover"))
    why = _text(acted.get("comment"))
    if event_type == "ms.vss-pipelinechecks-events.approval-pending":
        return Signal(**made, kind=EventKind.RELEASE_AWAITING_APPROVAL, status="approval pending",
                      comment=_text(approval.get("instructions")))
    if event_type == "ms.vss-pipelinechecks-events.approval-completed":
        kind = {"approved": EventKind.RELEASE_APPROVED, "rejected": EventKind.RELEASE_REJECTED,
                "timedout": EventKind.RELEASE_EXPIRED}.get(status)
        if kind is None:
            return None
        return Signal(**made, kind=kind, status=f"approval {approval.get('status')}", actor=who, comment=why)
    return None


def _run_from_links(body: Mapping[str, Any]) -> str | None:
    """The documented YAML approval samples name the run only in their message's ``buildId=N`` link."""
    for part in ("message", "detailedMessage"):
        for form in ("html", "markdown", "text"):
            match = _BUILD_LINK.search(_text(_get(body, part, form)) or "")
            if match:
                return match[1]
    return None


def _classic(event_type: str, resource: Mapping[str, Any], common: dict[str, Any]) -> Signal | None:
    made = {**common, "target": TargetKind.AZURE_DEVOPS_RELEASE}
    if event_type == "ms.vss-release.deployment-completed-event":
        environment = resource.get("environment")
        release_id = _id(_get(environment, "release", "id")) or _id(_get(environment, "releaseId"))
        status = _text(_get(environment, "status")) or ""
        if release_id is None:
            return None
        kind = {"succeeded": EventKind.RELEASE_DEPLOYED, "rejected": EventKind.RELEASE_REJECTED}.get(
            status.lower(), EventKind.RELEASE_FAILED if status.lower() in _RUN_FAILED else None)
        if kind is None:
            return None
        return Signal(**made, release_id=release_id, kind=kind, status=f"deployment {status}",
                      environment=_text(_get(environment, "name")),
                      link=_text(_get(environment, "release", "_links", "web", "href")))
    approval = resource.get("approval")
    release_id = _id(_get(approval, "release", "id")) or _id(_get(resource, "release", "id"))
    if not isinstance(approval, Mapping) or release_id is None:
        return None
    if (_text(approval.get("approvalType")) or "").lower() != "predeploy":
        return None  # a post-deployment approval comes after the deployment itself
    status = (_text(approval.get("status")) or "").lower()
    where = {"environment": _text(_get(approval, "releaseEnvironment", "name")),
             "link": _text(_get(resource, "release", "_links", "web", "href"))}
    if event_type == "ms.vss-release.deployment-approval-pending-event":
        return Signal(**made, **where, release_id=release_id, kind=EventKind.RELEASE_AWAITING_APPROVAL,
                      status="pre-deployment approval pending", actor=_who(approval.get("approver")))
    if event_type == "ms.vss-release.deployment-approval-completed-event":
        kind = {"approved": EventKind.RELEASE_APPROVED, "rejected": EventKind.RELEASE_REJECTED}.get(status)
        if kind is None:
            return None
        return Signal(**made, **where, release_id=release_id, kind=kind, status=f"pre-deployment approval {status}",
                      actor=_who(approval.get("approvedBy"), approval.get("approver")),
                      comment=_text(approval.get("comments")))
    return None


# GitHub -------------------------------------------------------------------------------------------------------
#: The conclusions of a completed workflow run that end a release as failed — the ``workflow_run`` hook and the
#: reconciler (``adapters/github/state.py``) read them alike, so both tell the same transition.
GITHUB_FAILED = frozenset({"failure", "cancelled", "timed_out", "startup_failure", "action_required", "stale"})


def parse_github(event: str, delivery: str | None, body: object) -> Signal | Ignored:
    """A GitHub webhook (``X-GitHub-Event``: ``workflow_run``, ``deployment_status``, ``deployment_review``)."""
    source_type = f"github:{event}"
    if not isinstance(body, Mapping):
        return Ignored(reason="the webhook body is not a JSON object", source_type=source_type)
    repository = _text(_get(body, "repository", "full_name"))
    run = body.get("workflow_run")
    run_id = _id(_get(run, "id"))
    if repository is None or run_id is None:
        return Ignored(reason=f"{event} names no workflow run of a repository", source_type=source_type)
    made = {"target": TargetKind.GITHUB_ACTIONS, "scope": repository.lower(), "release_id": run_id,
            "source_type": source_type, "notification": delivery, "link": _text(_get(run, "html_url"))}
    action = (_text(body.get("action")) or "").lower()
    signal: Signal | None = None
    if event == "workflow_run":
        status, conclusion = ((_text(_get(run, k)) or "").lower() for k in ("status", "conclusion"))
        if action == "completed" and conclusion == "success":
            signal = Signal(**made, kind=EventKind.RELEASE_DEPLOYED, status="workflow run completed: success")
        elif action == "completed" and conclusion in GITHUB_FAILED:
            signal = Signal(**made, kind=EventKind.RELEASE_FAILED, status=f"workflow run completed: {conclusion}")
        elif status == "waiting":
            signal = Signal(**made, kind=EventKind.RELEASE_AWAITING_APPROVAL, status="workflow run waiting")
    elif event == "deployment_status":
        state = (_text(_get(body, "deployment_status", "state")) or "").lower()
        kind = {"success": EventKind.RELEASE_DEPLOYED, "failure": EventKind.RELEASE_FAILED,
                "error": EventKind.RELEASE_FAILED, "waiting": EventKind.RELEASE_AWAITING_APPROVAL}.get(state)
        if kind is not None:
            signal = Signal(**made, kind=kind, status=f"deployment {state}",
                            environment=_text(_get(body, "deployment_status", "environment")),
                            actor=_who(_get(body, "deployment_status", "creator")))
    elif event == "deployment_review":
        environment = _text(body.get("environment")) or _text(_get(body, "workflow_job_run", "environment"))
        kind = {"requested": EventKind.RELEASE_AWAITING_APPROVAL, "approved": EventKind.RELEASE_APPROVED,
                "rejected": EventKind.RELEASE_REJECTED}.get(action)
        if kind is not None:
            signal = Signal(**made, kind=kind, status=f"deployment review {action}", environment=environment,
                            actor=_who(body.get("approver")) if action != "requested" else None,
                            comment=_text(body.get("comment")))
    if signal is None:
        what = f"{event} {action}" if action else event
        return Ignored(reason=f"{what} is not a release transition mlreactor follows", source_type=source_type)
    return signal
