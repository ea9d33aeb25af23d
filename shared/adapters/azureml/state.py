"""What the quality gate reads from Azure ML: job state, a completed run's metrics, a model's recorded metrics.

Metrics travel as tags/properties named ``mlreactor.metric.<name>`` with numeric string values: the offline-test
pipeline writes them on its run (so they arrive in the RunCompleted event's ``runTags``/``runProperties`` and cost no
call), and the gate copies a passing model's metrics onto its model version (so the champion's are one read away).
Azure ML itself keeps metrics in MLflow, which azure-ai-ml does not read.

Every reader returns a frozen pydantic model; errors are ``TransientError`` / ``PermanentError`` like the actions'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.adapters.azureml import runs
from shared.adapters.azureml.errors import calling, describe
from shared.errors import PermanentError
from shared.events import RunCompleted, Workspace

if TYPE_CHECKING:
    from shared.adapters.azureml.clients import WorkspaceClients

METRIC_PREFIX = "mlreactor.metric."
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled", "NotResponding"})


def metrics_in(*maps: Mapping[str, str], prefix: str = METRIC_PREFIX) -> dict[str, float]:
    """``{"mlreactor.metric.auc": "0.91"}`` → ``{"auc": 0.91}``; a non-numeric value is an error, not a zero."""
    found: dict[str, float] = {}
    for values in maps:
        for key, raw in values.items():
            if not key.startswith(prefix) or key[len(prefix):] in found:
                continue
            try:
                found[key[len(prefix):]] = float(raw)
            except ValueError:
                raise PermanentError(f"metric {key} is not a number: {raw!r}") from None
    return found


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


class RunMetrics(BaseModel):
    """A run's metrics and where they were found: the event, the run itself, or its pipeline step runs."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    source: Literal["event", "run", "steps", "none"]
    values: dict[str, float]
    steps: tuple[str, ...] = ()


class ModelState(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    tags: dict[str, str]
    properties: dict[str, str]
    archived: bool

    @property
    def metrics(self) -> dict[str, float]:
        return metrics_in(self.tags, self.properties)


class AzureMLState:
    """Typed reads for the gate, sharing the adapter's per-workspace clients."""

    def __init__(self, clients: WorkspaceClients) -> None:
        self.clients = clients

    def job(self, workspace: Workspace, name: str) -> JobState:
        """``GET …/jobs/{name}``: one request."""
        with calling(workspace, f"GET job {name}"):
            job = self.clients.get(workspace).jobs.get(name)
        return _job_state(job)

    def run_metrics(self, event: RunCompleted, *, workspace: Workspace | None = None) -> RunMetrics:
        """The event's tags/properties first (no call); else the run (one GET); else its step runs (one more)."""
        run_id = event.run_id
        values = metrics_in(event.run_tags, event.run_properties)
        if values:
            return RunMetrics(run_id=run_id, source="event", values=values)
        ws = workspace or event.workspace
        if ws is None:
            raise PermanentError(f"event {event.id}: source {event.source!r} is not an Azure ML workspace")
        run = self.job(ws, run_id)
        values = metrics_in(run.tags, run.properties)
        if values:
            return RunMetrics(run_id=run_id, source="run", values=values)
        with calling(ws, f"list step runs of {run_id}"):
            children = [_job_state(job) for job in runs.children(self.clients.get(ws), run_id)]
        return _from_steps(ws, run_id, children)

    def model(self, workspace: Workspace, name: str, version: str) -> ModelState:
        """``GET …/models/{name}/versions/{version}``: one request."""
        with calling(workspace, f"GET model {name}:{version}"):
            model = self.clients.get(workspace).models.get(name, version=version)
        return _model_state(model)

    def champion(
        self, workspace: Workspace, name: str, *, tag: str = "mlreactor.stage", value: str = "champion"
    ) -> ModelState | None:
        """The newest active version of ``name`` tagged ``tag=value`` (one paged list of versions), if any."""
        with calling(workspace, f"list versions of model {name}"):
            versions = [_model_state(m) for m in self.clients.get(workspace).models.list(name=name)]
        tagged = [m for m in versions if m.tags.get(tag) == value and not m.archived]
        return max(tagged, key=lambda m: _version_order(m.version), default=None)


def _from_steps(workspace: Workspace, run_id: str, steps: Iterable[JobState]) -> RunMetrics:
    values: dict[str, float] = {}
    found: list[str] = []
    for step in steps:
        step_values = metrics_in(step.tags, step.properties)
        clashes = sorted(k for k, v in step_values.items() if k in values and values[k] != v)
        if clashes:
            raise PermanentError(
                f"Azure ML {describe(workspace)}: run {run_id}: steps disagree on {', '.join(clashes)}"
            )
        if step_values:
            values.update(step_values)
            found.append(step.name)
    return RunMetrics(run_id=run_id, source="steps" if values else "none", values=values, steps=tuple(found))


def _job_state(job: Any) -> JobState:
    status = job.status
    return JobState(
        name=job.name,
        status=str(getattr(status, "value", status) or "Unknown"),
        experiment_name=job.experiment_name,
        display_name=job.display_name,
        tags={str(k): str(v) for k, v in (job.tags or {}).items()},
        properties={str(k): str(v) for k, v in (job.properties or {}).items()},
        studio_url=job.studio_url,
    )


def _model_state(model: Any) -> ModelState:
    return ModelState(
        name=model.name,
        version=str(model.version),
        tags={str(k): str(v) for k, v in (model.tags or {}).items()},
        properties={str(k): str(v) for k, v in (model.properties or {}).items()},
        archived=bool(getattr(model, "_is_archived", False)),
    )


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)
