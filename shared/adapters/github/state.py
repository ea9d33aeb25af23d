"""Read the state of a workflow run mlreactor dispatched on GitHub Actions — one GET — for the release reconciler.

``GET /repos/{owner}/{repo}/actions/runs/{run_id}`` (GitHub REST "Get a workflow run",
https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run) through the release adapter's
client, credentials (App installation token or fine-grained token) and retries (``GitHubReleaseAdapter.read``). The
run's ``status`` is one of ``queued``, ``in_progress``, ``waiting``, ``requested``, ``pending``, ``completed``; once
completed its ``conclusion`` is one of ``success``, ``failure``, ``cancelled``, ``timed_out``, ``action_required``,
``neutral``, ``skipped``, ``stale`` (the hook's set below also counts ``startup_failure``).

* completed + success → deployed; completed + a failing conclusion (the set the ``workflow_run`` hook uses,
  ``signals.GITHUB_FAILED``: failure, cancelled, timed_out, startup_failure, action_required, stale) → failed;
* status ``waiting`` → awaiting approval: a job whose environment needs a required reviewer holds the run as
  ``waiting`` (also a wait timer or another deployment protection rule does — the run does not say which);
* anything else (queued, in progress, neutral, skipped) → nothing to tell.

What one GET cannot tell: who approved or rejected — a rejected review fails the job, so the run ends ``failure``
and is reported as failed without the reviewer (the ``deployment_review`` hook carries them); nor why a run ended
``timed_out``. GitHub documents that a job waiting for a required reviewer fails after 30 days, so a ``timed_out``
run may be an approval that expired, or a job past its ``timeout-minutes``: the run does not say which (unverified
against GitHub: which conclusion the 30-day expiry shows), so both are reported as failed, never as expired.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.github import GitHubReleaseAdapter
from shared.errors import PermanentError
from shared.events import EventKind
from shared.ledger.port import ReleaseRecord
from shared.releases.signals import GITHUB_FAILED, Signal, TargetKind

SOURCE_TYPE = "github:get-run"


class GitHubStateReader:
    targets = (TargetKind.GITHUB_ACTIONS.value,)

    def __init__(self, adapter: GitHubReleaseAdapter) -> None:
        self._adapter = adapter

    def read(self, record: ReleaseRecord) -> Signal | None:
        owner, _, repo = record.scope.partition("/")
        if not owner or not repo or "/" in repo or not record.release_id.isdigit():
            raise PermanentError(f"run {record.release_id} of {record.scope!r}: not a repository's workflow run; "
                                 "cannot read it")
        run = self._adapter.read(record.scope, f"/repos/{owner}/{repo}/actions/runs/{record.release_id}",
                                 f"reading run {record.release_id} of {record.scope}")
        if not isinstance(run, dict):
            raise PermanentError(f"run {record.release_id} of {record.scope}: GitHub answered no run")
        return run_signal(record, run)


def run_signal(record: ReleaseRecord, run: dict[str, Any]) -> Signal | None:
    """What a workflow run's ``status``/``conclusion`` say (see the module docstring)."""
    status, conclusion = (str(run.get(k) or "").lower() for k in ("status", "conclusion"))
    common = {"target": TargetKind.GITHUB_ACTIONS, "scope": record.scope, "release_id": record.release_id,
              "source_type": SOURCE_TYPE, "link": str(run.get("html_url") or record.url or "") or None}
    if status == "completed" and conclusion == "success":
        return Signal(**common, kind=EventKind.RELEASE_DEPLOYED, status="workflow run completed: success")
    if status == "completed" and conclusion in GITHUB_FAILED:
        return Signal(**common, kind=EventKind.RELEASE_FAILED, status=f"workflow run completed: {conclusion}")
    if status == "waiting":
        return Signal(**common, kind=EventKind.RELEASE_AWAITING_APPROVAL, status="workflow run waiting")
    return None
