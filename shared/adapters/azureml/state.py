"""What the quality gate reads from Azure ML: job state, a run's tags (with its step runs'), model versions' tags.

``AzureMLState`` is the live ``shared.adapters.gate.ModelState``: the gate takes a run's metrics from the
RunCompleted event first (no call) and asks ``run_tags`` only for what the event lacks; the champion's recorded
metrics are its ``mlreactor.metric.*`` tags, found with ``find_model_by_tag``. Azure ML itself keeps metrics in
MLflow, which azure-ai-ml does not read: the offline-test pipeline writes them as run tags/properties.

Model reads also take a registry (its resource id or ``azureml://registries/NAME``): a champion may live in the
registry the chain promotes to. Jobs and runs live in workspaces only.

Errors are ``TransientError`` / ``PermanentError`` like the actions'; "no such model version" is ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from shared.adapters.azureml import runs
from shared.adapters.azureml.errors import calling
from shared.errors import PermanentError
from shared.events import Registry, Workspace

if TYPE_CHECKING:
    from shared.adapters.azureml.clients import WorkspaceClients

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled", "NotResponding"})


class JobState(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    status: str  # Azure ML's PascalCase: Running, Completed, Failed ...
    experiment_name: str | None
    display_name: str | None
    tags: dict[str, str]
    properties: dict[str, str]
    studio_url: str | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "Completed"


class AzureMLState:
    """Reads for the gate through the adapter's per-workspace clients; ``workspace`` is a resource id (for model
    reads, a registry too)."""

    authoritative = True

    def __init__(self, clients: WorkspaceClients) -> None:
        self.clients = clients

    def job(self, workspace: str, name: str) -> JobState:
        """``GET …/jobs/{name}``: one request."""
        ws = _workspace(workspace)
        with calling(ws, f"GET job {name}"):
            job = self.clients.get(ws).jobs.get(name)
        return _job_state(job)

    def run_tags(self, workspace: str, run_id: str) -> Mapping[str, str]:
        """The run's tags and properties, then its step runs' (earlier wins): ``GET`` the job, list its children."""
        ws = _workspace(workspace)
        run = self.job(workspace, run_id)
        with calling(ws, f"list step runs of {run_id}"):
            steps = [_job_state(job) for job in runs.children(self.clients.get(ws), run_id)]
        merged: dict[str, str] = {}
        for source in (run.tags, run.properties, *(m for step in steps for m in (step.tags, step.properties))):
            for key, value in source.items():
                merged.setdefault(key, value)
        return merged

    def model_tags(self, workspace: str, name: str, version: str) -> Mapping[str, str] | None:
        """``GET …/models/{name}/versions/{version}``; ``None`` when there is no such version."""
        from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 - the SDK loads on first use

        target = _model_home(workspace)
        ml = self.clients.get(target)  # outside the try: a registry that does not exist is an error, not "no model"
        try:
            with calling(target, f"GET model {name}:{version}"):
                model = ml.models.get(name, version=version)
        except PermanentError as exc:
            if isinstance(exc.__cause__, ResourceNotFoundError):
                return None
            raise
        return _strings(model.tags)

    def find_model_by_tag(
        self, workspace: str, name: str, key: str, value: str
    ) -> tuple[str, Mapping[str, str]] | None:
        """The newest active version of ``name`` tagged ``key=value``: one (paged) list of its versions."""
        target = _model_home(workspace)
        with calling(target, f"list versions of model {name}"):
            versions = [(str(m.version), _strings(m.tags)) for m in self.clients.get(target).models.list(name=name)]
        tagged = [(version, tags) for version, tags in versions if tags.get(key) == value]
        return max(tagged, key=lambda found: _version_order(found[0]), default=None)


def _workspace(resource_id: str) -> Workspace:
    workspace = Workspace.parse(resource_id)
    if workspace is None:
        raise PermanentError(f"{resource_id!r} is not an Azure ML workspace resource id")
    return workspace


def _model_home(value: str) -> Workspace | Registry:
    target = Workspace.parse(value) or Registry.parse(value)
    if target is None:
        raise PermanentError(f"{value!r} is neither an Azure ML workspace resource id nor a registry")
    return target


def _job_state(job: Any) -> JobState:
    status = job.status
    return JobState(
        name=job.name,
        status=str(getattr(status, "value", status) or "Unknown"),
        experiment_name=job.experiment_name,
        display_name=job.display_name,
        tags=_strings(job.tags),
        properties=_strings(job.properties),
        studio_url=job.studio_url,
    )


def _strings(values: Mapping[Any, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (values or {}).items()}


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)
