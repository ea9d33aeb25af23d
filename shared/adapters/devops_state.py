"""Read the state of a run or release mlreactor queued in Azure DevOps — one GET — for the release reconciler.

Uses the release adapter's SDK clients, credentials and retries (``DevOpsReleaseAdapter.read``). What each state
means is in ``shared/releases/reconciler.py``; the wire routes are the SDK's ``get_run`` and ``get_release``.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.devops import DevOpsReleaseAdapter
from shared.errors import PermanentError
from shared.events import EventKind
from shared.ledger.port import ReleaseRecord
from shared.releases.signals import Signal, TargetKind
from shared.releases.tracking import organization_name

_FAILED = {"failed", "canceled", "partiallysucceeded"}


class DevOpsStateReader:
    targets = (TargetKind.AZURE_DEVOPS_PIPELINE.value, TargetKind.AZURE_DEVOPS_RELEASE.value)

    def __init__(self, adapter: DevOpsReleaseAdapter, organization_url: str) -> None:
        self._adapter = adapter
        self._organization_url = organization_url.rstrip("/")

    def _organization(self, record: ReleaseRecord) -> str:
        """The configured organization's URL when the record is of it, else the service's default host."""
        if organization_name(self._organization_url) == record.scope:
            return self._organization_url
        return f"https://dev.azure.com/{record.scope}"

    def read(self, record: ReleaseRecord) -> Signal | None:
        if not record.project or not record.release_id.isdigit():
            raise PermanentError(f"release {record.release_id}: no project recorded; cannot read it")
        base = {"target": TargetKind(record.target), "scope": record.scope, "release_id": record.release_id,
                "link": record.url or None}
        if record.target == TargetKind.AZURE_DEVOPS_PIPELINE:
            if not record.definition.isdigit():
                raise PermanentError(f"run {record.release_id}: no pipeline id recorded; cannot read it")
            run = self._adapter.read(
                self._organization(record), "pipelines", f"reading run {record.release_id} of {record.project}",
                lambda c: c.get_run(record.project, int(record.definition), int(record.release_id)),
            )
            return run_signal(base, str(run.state or ""), str(run.result or ""))
        release = self._adapter.read(
            self._organization(record), "release", f"reading release {record.release_id} of {record.project}",
            lambda c: c.get_release(record.project, int(record.release_id)),
        )
        return _release_signal(base, record.environment, release)


def run_signal(base: dict[str, Any], state: str, result: str) -> Signal | None:
    """What a YAML run's ``state``/``result`` say (also how ``mlreactor simulate`` reads its simulated runs)."""
    common = {**base, "source_type": "azure-devops:get-run"}
    if state.lower() != "completed":
        return None
    if result.lower() == "succeeded":
        return Signal(**common, kind=EventKind.RELEASE_DEPLOYED, status="run completed: succeeded")
    if result.lower() in _FAILED:
        return Signal(**common, kind=EventKind.RELEASE_FAILED, status=f"run completed: {result}")
    return None


def _release_signal(base: dict[str, Any], environment: str, release: Any) -> Signal | None:
    common = {**base, "source_type": "azure-devops:get-release"}
    stages = list(release.environments or [])
    # The stage mlreactor waits for, by name; with none recorded, the last stage (production comes last).
    fallback = None if environment else (stages[-1] if stages else None)
    stage = next((s for s in stages if (s.name or "").lower() == environment.lower()), fallback)
    if stage is None:
        return None
    status = str(stage.status or "")
    approvals = [a for a in stage.pre_deploy_approvals or [] if not a.is_automated]
    decided = next((a for a in approvals if str(a.status or "").lower() in ("rejected", "approved")), None)
    who = getattr(getattr(decided, "approved_by", None), "display_name", None) if decided else None
    why = (decided.comments or None) if decided else None
    where = {**common, "environment": stage.name}
    if status.lower() == "succeeded":
        return Signal(**where, kind=EventKind.RELEASE_DEPLOYED, status="deployment succeeded", actor=who)
    if status.lower() == "rejected" or (decided is not None and str(decided.status).lower() == "rejected"):
        return Signal(**where, kind=EventKind.RELEASE_REJECTED, status="pre-deployment approval rejected",
                      actor=who, comment=why)
    if status.lower() in _FAILED:
        return Signal(**where, kind=EventKind.RELEASE_FAILED, status=f"deployment {status}")
    if decided is not None:
        return Signal(**where, kind=EventKind.RELEASE_APPROVED, status="pre-deployment approval approved",
                      actor=who, comment=why)
    if any(str(a.status or "").lower() == "pending" for a in approvals):
        return Signal(**where, kind=EventKind.RELEASE_AWAITING_APPROVAL, status="pre-deployment approval pending")
    return None
