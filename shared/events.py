"""Typed Azure ML events: raw Event Grid / CloudEvents JSON in, frozen models out.

This is the only place raw JSON is interpreted. Everything downstream works on the models below.
Real deliveries are messier than the docs (see ``docs`` in the README and azure-docs
``event-schema-machine-learning.md``), so parsing is deliberately tolerant where Azure is inconsistent and strict
where a value would otherwise be guessed:

* data keys are read case-insensitively (``ModelName`` in the doc samples, ``modelName`` from live workspaces,
  ``RunTags`` in at least one capture);
* ``modelVersion`` arrives as ``20`` or ``"3"``; it is always a string here;
* ``runType`` may be null, ``runStatus`` any casing, extra fields are ignored;
* both envelopes (Event Grid schema and CloudEvents 1.0, ``specversion`` or ``specVersion``) and dead-lettered
  copies (``deadLetterReason`` ...) are accepted;
* an event type we do not know becomes an ``UnknownEvent`` (ignored, not an error).

A payload that cannot be parsed raises ``EventParseError`` naming the field and the bad value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from shared.errors import EventParseError
from shared.jsontext import canonical, dumps

EVENT_TYPE_PREFIX = "Microsoft.MachineLearningServices."
MONITOR_BREACH_TAG = "azureml_modelmonitor_threshold_breached"
CORRELATION_TAG = "mlreactor.correlation"


class EventKind(StrEnum):
    """What an event means to mlreactor; rules name these in ``on``."""

    MODEL_REGISTERED = "ModelRegistered"
    MODEL_DEPLOYED = "ModelDeployed"
    RUN_COMPLETED = "RunCompleted"
    RUN_STATUS_CHANGED = "RunStatusChanged"
    DATASET_DRIFT_DETECTED = "DatasetDriftDetected"
    MODEL_MONITOR_SIGNAL = "ModelMonitorSignal"
    # What a release target (Azure DevOps, GitHub Actions) says about a release mlreactor queued (shared/releases/).
    RELEASE_AWAITING_APPROVAL = "ReleaseAwaitingApproval"
    RELEASE_APPROVED = "ReleaseApproved"
    RELEASE_REJECTED = "ReleaseRejected"
    RELEASE_DEPLOYED = "ReleaseDeployed"
    RELEASE_FAILED = "ReleaseFailed"
    RELEASE_EXPIRED = "ReleaseExpired"
    UNKNOWN = "Unknown"


# Azure ML run statuses are PascalCase; events carry any casing ("failed" in the docs).
RUN_STATUSES = (
    "NotStarted", "Queued", "Preparing", "Provisioning", "Starting", "Running", "Finalizing",
    "CancelRequested", "Completed", "Failed", "Canceled", "NotResponding", "Paused", "Unknown",
)
_STATUS_BY_LOWER = {s.lower(): s for s in RUN_STATUSES}

_WORKSPACE_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)$",
    re.IGNORECASE,
)
_REGISTRY_ID_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/registries/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
_REGISTRY_URI_RE = re.compile(r"^azureml://registries/(?P<name>[^/]+)/?$", re.IGNORECASE)
#: A model version's ARM id, in a workspace or a registry (what the SDK sends for an ``azureml:name:version`` input).
_MODEL_VERSION_ID_RE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/"
    r"(?:workspaces|registries)/[^/]+/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$",
    re.IGNORECASE,
)
_SIGNAL_RE = re.compile(r"signal\s+'(?P<name>[^']+)'", re.IGNORECASE)
_FRACTION_RE = re.compile(r"(\.\d{6})\d+")


def as_text(value: object) -> str:
    """Tag and property values are strings in Azure ML; tolerate scalars, keep objects as JSON.

    Also how values become Azure DevOps template parameters and variables (``true``, not Python's ``True``).
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return canonical(value)


def _string_map(value: object) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object of string values, got {type(value).__name__}")
    return {str(k): as_text(v) for k, v in value.items()}


def _version(value: object) -> str:
    """``modelVersion`` is ``20`` in some payloads and ``"3"`` in others; both mean the same version."""
    if isinstance(value, bool) or value is None:
        raise ValueError("expected a version number or string")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError("expected a version number or string")


def _required_text(value: object) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError("expected a non-empty string")


def _optional_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError("expected a string or null")


def _timestamp(value: object) -> datetime | None:
    """ISO 8601 with up to 7 fractional digits (Azure's own format); always timezone-aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(_FRACTION_RE.sub(r"\1", value.strip()).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expected an ISO 8601 timestamp") from None
    else:
        raise ValueError("expected an ISO 8601 timestamp")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


Tags = Annotated[
    Mapping[str, str],
    BeforeValidator(_string_map),
    AfterValidator(_frozen),
    PlainSerializer(dict, return_type=dict[str, str]),
]
Version = Annotated[str, BeforeValidator(_version)]
Text = Annotated[str, BeforeValidator(_required_text)]
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]
Subject = Annotated[str, BeforeValidator(lambda v: _optional_text(v) or "")]


class Workspace(BaseModel):
    """An Azure ML workspace, parsed from the event's topic / source."""

    model_config = ConfigDict(frozen=True)

    resource_id: str
    subscription_id: str
    resource_group: str
    name: str

    @classmethod
    def parse(cls, resource_id: str) -> Workspace | None:
        match = _WORKSPACE_RE.match(resource_id.strip())
        if match is None:
            return None
        return cls(
            resource_id=resource_id.strip(),
            subscription_id=match["sub"],
            resource_group=match["rg"],
            name=match["ws"],
        )


class Registry(BaseModel):
    """An Azure ML registry: models shared by several workspaces, a target a rule may name for model actions.

    Named by its resource id (which pins the subscription and resource group: checked against what the registry's
    discovery reports) or by ``azureml://registries/NAME`` (registry names are unique; discovery finds the rest).
    """

    model_config = ConfigDict(frozen=True)

    resource_id: str
    name: str
    subscription_id: str | None = None
    resource_group: str | None = None

    @classmethod
    def parse(cls, value: str) -> Registry | None:
        text = value.strip()
        match = _REGISTRY_ID_RE.match(text)
        if match is not None:
            return cls(resource_id=text, name=match["name"], subscription_id=match["sub"], resource_group=match["rg"])
        match = _REGISTRY_URI_RE.match(text)
        return None if match is None else cls(resource_id=text.rstrip("/"), name=match["name"])


class ModelRef(BaseModel):
    """A model version: ``name:version``."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def asset_id(self) -> str:
        return f"azureml:{self.name}:{self.version}"


class DeadLetter(BaseModel):
    """What Event Grid adds to an event it gave up on (``deadLetterReason`` ...)."""

    model_config = ConfigDict(frozen=True)

    reason: str
    delivery_attempts: int | None = None
    last_delivery_outcome: str | None = None
    publish_time: Timestamp = None
    last_delivery_attempt_time: Timestamp = None


class AzureMLEvent(BaseModel):
    """The envelope every event shares. Subclasses add the typed ``data`` fields of one event type."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, defer_build=True)

    kind: ClassVar[EventKind] = EventKind.UNKNOWN
    #: Every kind a rule's ``on`` may name to select this event (a monitor signal is also a RunStatusChanged).
    kinds: ClassVar[frozenset[EventKind]] = frozenset()

    id: Text
    source: Text
    subject: Subject = ""
    event_type: Text
    time: Timestamp = None
    envelope: Literal["eventgrid", "cloudevents"] = "eventgrid"
    dead_letter: DeadLetter | None = None
    data: Any = Field(default=None, repr=False)

    def raw(self) -> dict[str, Any]:
        """The event as an Event Grid schema object, with its data exactly as received (for quarantine/redrive)."""
        return {
            "id": self.id,
            "topic": self.source,
            "subject": self.subject,
            "eventType": self.event_type,
            "eventTime": self.time.isoformat() if self.time else None,
            "data": self.data,
            "dataVersion": "",
        }

    @property
    def key(self) -> str:
        """Deduplication key: the same source and id is the same event (CloudEvents spec)."""
        return f"{self.source.lower()}|{self.id}"

    @property
    def workspace(self) -> Workspace | None:
        return Workspace.parse(self.source)

    @property
    def tags(self) -> Mapping[str, str]:
        """The tags this event carries (model or run tags); empty where the event has none."""
        return {}

    @property
    def correlation_id(self) -> str:
        """The chain this event belongs to: carried in tags, or this event starts a new chain."""
        return self.tags.get(CORRELATION_TAG) or self.id

    def context(self) -> dict[str, Any]:
        """Plain values for templates, ``group_by`` paths and criteria; see the README's template reference."""
        ws = self.workspace
        return {
            "event": {
                "id": self.id,
                "type": self.event_type,
                "kind": self.kind.value,
                "subject": self.subject,
                "source": self.source,
                "time": self.time.isoformat() if self.time else "",
            },
            "workspace": {
                "id": self.source,
                "name": ws.name if ws else "",
                "resource_group": ws.resource_group if ws else "",
                "subscription_id": ws.subscription_id if ws else "",
            },
            "correlation_id": self.correlation_id,
            "tags": dict(self.tags),
        }


class UnknownEvent(AzureMLEvent):
    """An event type mlreactor has no model for: recognised, recorded as ignored, never an error."""


class ModelRegistered(AzureMLEvent):
    kind: ClassVar[EventKind] = EventKind.MODEL_REGISTERED
    kinds: ClassVar[frozenset[EventKind]] = frozenset({EventKind.MODEL_REGISTERED})

    model_name: Text = Field(alias="data.modelname")
    model_version: Version = Field(alias="data.modelversion")
    model_tags: Tags = Field(default_factory=dict, alias="data.modeltags")
    model_properties: Tags = Field(default_factory=dict, alias="data.modelproperties")

    @property
    def model(self) -> ModelRef:
        return ModelRef(name=self.model_name, version=self.model_version)

    @property
    def tags(self) -> Mapping[str, str]:
        return self.model_tags

    def context(self) -> dict[str, Any]:
        ctx = super().context()
        ctx["model"] = _model_context(self.model, self.model_tags, self.model_properties)
        return ctx


class ModelDeployed(AzureMLEvent):
    kind: ClassVar[EventKind] = EventKind.MODEL_DEPLOYED
    kinds: ClassVar[frozenset[EventKind]] = frozenset({EventKind.MODEL_DEPLOYED})

    service_name: Text = Field(alias="data.servicename")
    service_compute_type: OptionalText = Field(default=None, alias="data.servicecomputetype")
    model_ids: tuple[ModelRef, ...] = Field(default=(), alias="data.modelids")
    service_tags: Tags = Field(default_factory=dict, alias="data.servicetags")
    service_properties: Tags = Field(default_factory=dict, alias="data.serviceproperties")

    @property
    def tags(self) -> Mapping[str, str]:
        return self.service_tags

    def context(self) -> dict[str, Any]:
        ctx = super().context()
        models = [_model_context(m, {}, {}) for m in self.model_ids]
        ctx["deployment"] = {
            "service_name": self.service_name,
            "compute_type": self.service_compute_type or "",
            "tags": dict(self.service_tags),
            "properties": dict(self.service_properties),
            "models": models,
        }
        # The first deployed model is "the" model for single-model rules; ``deployment.models`` has them all.
        if models:
            ctx["model"] = models[0]
        return ctx


class RunCompleted(AzureMLEvent):
    kind: ClassVar[EventKind] = EventKind.RUN_COMPLETED
    kinds: ClassVar[frozenset[EventKind]] = frozenset({EventKind.RUN_COMPLETED})

    experiment_id: OptionalText = Field(default=None, alias="data.experimentid")
    experiment_name: OptionalText = Field(default=None, alias="data.experimentname")
    run_id: Text = Field(alias="data.runid")
    run_type: OptionalText = Field(default=None, alias="data.runtype")
    run_tags: Tags = Field(default_factory=dict, alias="data.runtags")
    run_properties: Tags = Field(default_factory=dict, alias="data.runproperties")

    @property
    def tags(self) -> Mapping[str, str]:
        return self.run_tags

    @property
    def run_status(self) -> str:
        return "Completed"

    def studio_url(self) -> str:
        return f"https://ml.azure.com/runs/{self.run_id}?wsid={self.source}"

    def context(self) -> dict[str, Any]:
        ctx = super().context()
        ctx["run"] = {
            "id": self.run_id,
            "experiment_id": self.experiment_id or "",
            "experiment_name": self.experiment_name or "",
            "type": self.run_type or "",
            "status": self.run_status,
            "tags": dict(self.run_tags),
            "properties": dict(self.run_properties),
            "studio_url": self.studio_url(),
        }
        return ctx


class RunStatusChanged(RunCompleted):
    kind: ClassVar[EventKind] = EventKind.RUN_STATUS_CHANGED
    kinds: ClassVar[frozenset[EventKind]] = frozenset({EventKind.RUN_STATUS_CHANGED})

    raw_run_status: Text = Field(alias="data.runstatus")

    @property
    def run_status(self) -> str:
        """The status in Azure ML's own casing (``failed`` → ``Failed``); unknown values kept as sent."""
        return _STATUS_BY_LOWER.get(self.raw_run_status.lower(), self.raw_run_status)


class ModelMonitorSignal(RunStatusChanged):
    """Azure ML v2 drift: a monitoring run whose tags carry ``azureml_modelmonitor_threshold_breached``.

    The run itself does not fail; the breach is only in that tag, with a message like
    ``The signal '<monitor>_<signal>' has failed due to one or more features violating metric thresholds.``
    (azure-ai-docs ``how-to-monitor-model-performance.md``).
    """

    kind: ClassVar[EventKind] = EventKind.MODEL_MONITOR_SIGNAL
    kinds: ClassVar[frozenset[EventKind]] = frozenset(
        {EventKind.MODEL_MONITOR_SIGNAL, EventKind.RUN_STATUS_CHANGED}
    )

    @property
    def breach_message(self) -> str:
        return self.run_tags.get(MONITOR_BREACH_TAG, "")

    @property
    def signal_name(self) -> str:
        match = _SIGNAL_RE.search(self.breach_message)
        return match["name"] if match else ""

    @property
    def monitor_name(self) -> str:
        """Signals are named ``<monitor-name>_<signal>``; the monitoring run's experiment is the monitor."""
        experiment = self.experiment_name or ""
        if experiment and self.signal_name.startswith(experiment):
            return experiment
        return experiment or self.signal_name

    def context(self) -> dict[str, Any]:
        ctx = super().context()
        ctx["monitor"] = {"name": self.monitor_name, "signal": self.signal_name, "message": self.breach_message}
        return ctx


class DatasetDriftDetected(AzureMLEvent):
    """The legacy v1 dataset-monitor event (retired 2025-09-01 but still delivered by old monitors)."""

    kind: ClassVar[EventKind] = EventKind.DATASET_DRIFT_DETECTED
    kinds: ClassVar[frozenset[EventKind]] = frozenset({EventKind.DATASET_DRIFT_DETECTED})

    data_drift_id: Text = Field(alias="data.datadriftid")
    data_drift_name: Text = Field(alias="data.datadriftname")
    run_id: Text = Field(alias="data.runid")
    base_dataset_id: OptionalText = Field(default=None, alias="data.basedatasetid")
    target_dataset_id: OptionalText = Field(default=None, alias="data.targetdatasetid")
    drift_coefficient: float = Field(alias="data.driftcoefficient", allow_inf_nan=False)
    start_time: Timestamp = Field(default=None, alias="data.starttime")
    end_time: Timestamp = Field(default=None, alias="data.endtime")

    def context(self) -> dict[str, Any]:
        ctx = super().context()
        ctx["drift"] = {
            "id": self.data_drift_id,
            "name": self.data_drift_name,
            "run_id": self.run_id,
            "base_dataset_id": self.base_dataset_id or "",
            "target_dataset_id": self.target_dataset_id or "",
            "coefficient": self.drift_coefficient,
            "start_time": self.start_time.isoformat() if self.start_time else "",
            "end_time": self.end_time.isoformat() if self.end_time else "",
        }
        ctx["monitor"] = {"name": self.data_drift_name, "signal": "data_drift", "message": ""}
        return ctx


class ReleaseEvent(AzureMLEvent):
    """A release mlreactor queued changed state, as its target (Azure DevOps, GitHub Actions) reported it.

    Built by ``shared/releases/intake.py`` from a verified hook or the reconciler's read, with the model, version,
    correlation id and workspace taken from what mlreactor recorded when it queued the release — never from the
    target's payload. ``source`` is that workspace, so the allowlist and model actions work as for Azure ML events.
    """

    target: Text = Field(alias="data.target")
    scope: Text = Field(alias="data.scope")
    project: OptionalText = Field(default=None, alias="data.project")
    release_id: Text = Field(alias="data.releaseid")
    model_name: Text = Field(alias="data.model")
    model_version: Version = Field(alias="data.version")
    correlation: Text = Field(alias="data.correlationid")
    environment: OptionalText = Field(default=None, alias="data.environment")
    url: OptionalText = Field(default=None, alias="data.url")
    approval_url: OptionalText = Field(default=None, alias="data.approvalurl")
    actor: OptionalText = Field(default=None, alias="data.actor")
    comment: OptionalText = Field(default=None, alias="data.comment")
    status: OptionalText = Field(default=None, alias="data.status")
    via: OptionalText = Field(default=None, alias="data.via")
    reminder: int = Field(default=0, ge=0, alias="data.reminder")
    waiting_since: Timestamp = Field(default=None, alias="data.waitingsince")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Each release kind is selected by its own name only."""
        super().__pydantic_init_subclass__(**kwargs)
        cls.kinds = frozenset({cls.kind})

    @property
    def model(self) -> ModelRef:
        return ModelRef(name=self.model_name, version=self.model_version)

    @property
    def tags(self) -> Mapping[str, str]:
        return {CORRELATION_TAG: self.correlation}

    def context(self) -> dict[str, Any]:
        """``model`` as for ModelRegistered (``tag_model`` defaults work) and ``release`` (README, per-kind table)."""
        ctx = super().context()
        ctx["model"] = _model_context(self.model, {}, {})
        waited = (self.time - self.waiting_since) if self.time and self.waiting_since else None
        ctx["release"] = {
            "target": self.target,
            "scope": self.scope,
            "project": self.project or "",
            "id": self.release_id,
            "url": self.url or "",
            "approval_url": self.approval_url or self.url or "",
            "environment": self.environment or "",
            "transition": self.kind.value,
            "actor": self.actor or "",
            "comment": self.comment or "",
            "status": self.status or "",
            "via": self.via or "",
            "reminder": self.reminder,
            "waiting_since": self.waiting_since.isoformat() if self.waiting_since else "",
            "waiting_hours": round(waited.total_seconds() / 3600, 1) if waited else 0,
        }
        return ctx


class ReleaseAwaitingApproval(ReleaseEvent):
    """The release waits for a person (``release.reminder`` > 0: still waiting, past the reminder time)."""

    kind: ClassVar[EventKind] = EventKind.RELEASE_AWAITING_APPROVAL


class ReleaseApproved(ReleaseEvent):
    kind: ClassVar[EventKind] = EventKind.RELEASE_APPROVED


class ReleaseRejected(ReleaseEvent):
    kind: ClassVar[EventKind] = EventKind.RELEASE_REJECTED


class ReleaseDeployed(ReleaseEvent):
    kind: ClassVar[EventKind] = EventKind.RELEASE_DEPLOYED


class ReleaseFailed(ReleaseEvent):
    kind: ClassVar[EventKind] = EventKind.RELEASE_FAILED


class ReleaseExpired(ReleaseEvent):
    kind: ClassVar[EventKind] = EventKind.RELEASE_EXPIRED


RELEASE_EVENTS: dict[EventKind, type[ReleaseEvent]] = {
    cls.kind: cls
    for cls in (ReleaseAwaitingApproval, ReleaseApproved, ReleaseRejected, ReleaseDeployed, ReleaseFailed,
                ReleaseExpired)
}


def _model_context(model: ModelRef, tags: Mapping[str, str], properties: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "id": str(model),
        "asset": model.asset_id,
        "tags": dict(tags),
        "properties": dict(properties),
    }


_MODELS: dict[str, type[AzureMLEvent]] = {
    EventKind.MODEL_REGISTERED.value.lower(): ModelRegistered,
    EventKind.MODEL_DEPLOYED.value.lower(): ModelDeployed,
    EventKind.RUN_COMPLETED.value.lower(): RunCompleted,
    EventKind.RUN_STATUS_CHANGED.value.lower(): RunStatusChanged,
    EventKind.DATASET_DRIFT_DETECTED.value.lower(): DatasetDriftDetected,
}
_RELEASE_MODELS: dict[str, type[AzureMLEvent]] = {kind.value.lower(): cls for kind, cls in RELEASE_EVENTS.items()}


_DOCUMENTED_KEYS = {
    key.lower(): key
    for key in (
        "modelName", "modelVersion", "modelTags", "modelProperties", "serviceName", "serviceComputeType",
        "modelIds", "serviceTags", "serviceProperties", "experimentId", "experimentName", "runId", "runType",
        "runTags", "runProperties", "runStatus", "dataDriftId", "dataDriftName", "baseDatasetId",
        "targetDatasetId", "driftCoefficient", "startTime", "endTime", "target", "scope", "project", "releaseId",
        "model", "version", "correlationId", "environment", "url", "approvalUrl", "actor", "comment", "status", "via",
        "reminder", "waitingSince",
    )
}


class _Keys:
    """Case-insensitive view of a JSON object that remembers the original spelling for error messages."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self._by_lower: dict[str, tuple[str, Any]] = {}
        for key, value in obj.items():
            self._by_lower.setdefault(str(key).lower(), (str(key), value))

    def get(self, *names: str) -> Any:
        for name in names:
            found = self._by_lower.get(name.lower())
            if found is not None:
                return found[1]
        return None

    def spelling(self, name: str) -> str:
        """The key as the payload spelled it, else as the docs spell it."""
        found = self._by_lower.get(name.lower())
        return found[0] if found else _DOCUMENTED_KEYS.get(name.lower(), name)

    def items(self) -> Iterator[tuple[str, Any]]:
        for lower, (_, value) in self._by_lower.items():
            yield lower, value


def _parse_model_ids(value: object) -> tuple[dict[str, str], ...]:
    """``"name:1,other:2"`` (documented) or a JSON list; each item ``name:version``, ``azureml:name:version`` or a
    model version's ARM id (``/subscriptions/…/models/NAME/versions/V``)."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("expected 'name:version,...'")
    return tuple(parse_model_id(str(item)) for item in items)


def parse_model_id(text: str) -> dict[str, str]:
    """One model version in any of the three forms Azure ML writes it, as ``{"name", "version"}``."""
    item = text.strip()
    match = _MODEL_VERSION_ID_RE.match(item)
    if match is not None:
        return {"name": match["name"], "version": match["version"]}
    name, sep, version = item.removeprefix("azureml:").rpartition(":")
    if not sep or not name or not version or "/" in name or ":" in name:
        raise ValueError(
            f"expected 'name:version', 'azureml:name:version' or a model version ARM id "
            f"(/subscriptions/…/models/NAME/versions/V) (bad item {item!r})"
        )
    return {"name": name, "version": version}


def _short(value: object) -> str:
    text = dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def parse_event(obj: object) -> AzureMLEvent:
    """Turn one event object (either schema, possibly dead-lettered) into its typed model."""
    if not isinstance(obj, Mapping):
        if isinstance(obj, list | tuple):
            # Python 3.11's json raises RecursionError on ~1,000 levels, 3.13's reads them: name the depth on both.
            _check_values(obj)
        raise EventParseError(
            f"an event must be a JSON object, got {type(obj).__name__} {_short(obj)}", field="$", value=obj
        )
    _check_values(obj)
    env = _Keys(obj)
    is_cloudevent = env.get("specversion") is not None
    if is_cloudevent:
        fields = {"id": "id", "source": "source", "event_type": "type", "time": "time"}
    else:
        fields = {"id": "id", "source": "topic", "event_type": "eventType", "time": "eventTime"}
    values: dict[str, Any] = {name: env.get(key) for name, key in fields.items()}
    values["subject"] = env.get("subject")
    values["envelope"] = "cloudevents" if is_cloudevent else "eventgrid"
    data = env.get("data")
    values["data"] = data
    if env.get("deadLetterReason") is not None:
        values["dead_letter"] = {
            "reason": as_text(env.get("deadLetterReason")),
            "delivery_attempts": env.get("deliveryAttempts"),
            "last_delivery_outcome": env.get("lastDeliveryOutcome"),
            "publish_time": env.get("publishTime"),
            "last_delivery_attempt_time": env.get("lastDeliveryAttemptTime"),
        }

    event_type = values["event_type"]
    model: type[AzureMLEvent] = UnknownEvent
    if isinstance(event_type, str) and event_type.lower().startswith(EVENT_TYPE_PREFIX.lower()):
        model = _MODELS.get(event_type[len(EVENT_TYPE_PREFIX) :].lower(), UnknownEvent)
    elif isinstance(event_type, str):  # mlreactor's own release events: the type is the kind (``ReleaseDeployed``)
        model = _RELEASE_MODELS.get(event_type.lower(), UnknownEvent)

    data_keys: _Keys | None = None
    if model is not UnknownEvent:
        if not isinstance(data, Mapping):
            raise EventParseError(
                f"{event_type} event {values['id']!r}: field 'data' must be an object, got {_short(data)}",
                field="data",
                value=data,
            )
        data_keys = _Keys(data)
        for lower, value in data_keys.items():
            values[f"data.{lower}"] = value
        if model is ModelDeployed:
            try:
                values["data.modelids"] = _parse_model_ids(data_keys.get("modelIds"))
            except ValueError as exc:
                raise _field_error(event_type, values["id"], "data." + data_keys.spelling("modelIds"),
                                   data_keys.get("modelIds"), str(exc)) from None
        run_tags = data_keys.get("runTags")
        breached = isinstance(run_tags, Mapping) and MONITOR_BREACH_TAG in {str(k).lower() for k in run_tags}
        if model is RunStatusChanged and breached:
            model = ModelMonitorSignal

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(p) for p in error["loc"]]
        head = loc[0] if loc else "$"
        if head.startswith("data.") and data_keys is not None:
            field = "data." + data_keys.spelling(head[len("data."):])
            bad = error.get("input")
        else:
            envelope_key = fields.get(head, head)
            field = envelope_key if not head.startswith("dead_letter") else "deadLetter"
            bad = error.get("input")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required but missing"
            bad = None
        raise _field_error(event_type, values.get("id"), ".".join([field, *loc[1:]]), bad, message) from None


#: Deeper than any Azure ML event (they nest 3-4 levels); bounds every recursive step after parsing.
MAX_DEPTH = 32


def _check_values(obj: object) -> None:
    """Refuse what no Azure ML event holds and later steps cannot store or compare, naming where it is: nesting
    deeper than ``MAX_DEPTH``, lone surrogates (invalid Unicode: no ledger can store them), NaN and ±Infinity (not
    JSON numbers; a NaN drift coefficient must not be compared into a retrain). Iterative: a deep payload cannot
    exhaust the stack here. A first pass without paths keeps the common case cheap; only a bad payload is walked
    again to name the field."""
    if _values_fine(obj):
        return
    stack: list[tuple[Any, tuple[str, ...]]] = [(obj, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise _value_error(path[:MAX_DEPTH], f"is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            for key, item in value.items():
                where = (*path, str(key))
                if isinstance(key, str) and _has_lone_surrogate(key):
                    raise _value_error(where, "has a name that is not valid Unicode (a lone surrogate)")
                stack.append((item, where))
        elif isinstance(value, list | tuple):
            stack.extend((item, (*path, f"[{i}]")) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise _value_error(path, f"is {value}, which is not a number")
        elif isinstance(value, str) and _has_lone_surrogate(value):
            raise _value_error(path, "is not valid Unicode (a lone surrogate)")


#: What ``_values_fine`` looks into, commonest first: a tuple, as ``isinstance`` with a union is several times slower.
_WALKED = (str, dict, list, float, tuple, Mapping)


def _values_fine(obj: object) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if type(value) is str:  # the common case first: most values are plain ASCII strings
            if not value.isascii() and _has_lone_surrogate(value):
                return False
        elif type(value) is dict or isinstance(value, Mapping):  # the ABC check costs more than a dict's walk
            if depth >= MAX_DEPTH and value:
                return False
            for key, item in value.items():
                if isinstance(key, str) and not key.isascii() and _has_lone_surrogate(key):
                    return False
                if isinstance(item, _WALKED):
                    push((item, depth + 1))
        elif isinstance(value, (list, tuple)):
            if depth >= MAX_DEPTH and value:
                return False
            stack.extend((item, depth + 1) for item in value)
        elif (isinstance(value, float) and not math.isfinite(value)) or (
                isinstance(value, str) and _has_lone_surrogate(value)):
            return False
    return True


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _value_error(path: tuple[str, ...], message: str) -> EventParseError:
    field = ".".join(path).replace(".[", "[").encode("utf-8", "backslashreplace").decode("utf-8") or "$"
    return EventParseError(f"field '{field}' {message}", field=field)


def _field_error(event_type: object, event_id: object, field: str, value: object, message: str) -> EventParseError:
    what = f"{event_type} event {event_id!r}" if event_type else f"event {event_id!r}"
    shown = "" if value is None and message.endswith("missing") else f" (got {_short(value)})"
    return EventParseError(f"{what}: field '{field}' {message}{shown}", field=field, value=value)


class ParseFailure(BaseModel):
    """One element of a delivery that could not be parsed; quarantined with the reason."""

    model_config = ConfigDict(frozen=True)

    index: int
    reason: str
    raw: Any = Field(default=None, repr=False)

    @property
    def event_id(self) -> str | None:
        if isinstance(self.raw, Mapping):
            value = _Keys(self.raw).get("id")
            return value if isinstance(value, str) else None
        return None


def parse_delivery(payload: str | bytes | object) -> list[AzureMLEvent | ParseFailure]:
    """Parse a whole delivery: a JSON array of events or a single event object.

    Each element is parsed on its own, so one poison event does not sink the others. Raises
    ``EventParseError`` only when the delivery as a whole is not JSON or not an object/array.
    """
    if isinstance(payload, str | bytes | bytearray):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventParseError(f"the delivery is not valid JSON: {exc}", field="$", value=None) from None
        except RecursionError:
            raise EventParseError("the delivery is nested too deep to be an event", field="$") from None
    if isinstance(payload, Mapping):
        items: list[Any] = [payload]
    elif isinstance(payload, list):
        items = payload
    else:
        raise EventParseError(
            f"a delivery must be a JSON array or object, got {type(payload).__name__}", field="$", value=payload
        )
    results: list[AzureMLEvent | ParseFailure] = []
    for index, item in enumerate(items):
        try:
            results.append(parse_event(item))
        except EventParseError as exc:
            results.append(ParseFailure(index=index, reason=str(exc), raw=item))
    return results
