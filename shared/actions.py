"""Action kinds, their parameters, and the port adapters implement.

A rule's ``do`` list holds actions such as ``{run_pipeline: {...}}``. Parameters are validated when the rules file is
loaded (structure, template syntax) and rendered per event at plan time (values). Every planned action carries an
idempotency key derived from the rule, its position and the event, so a redelivered event maps to the same key and
an action already done is skipped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from shared import templates
from shared.clock import bounded_duration
from shared.events import AzureMLEvent, Registry, as_text
from shared.gate import MetricRule
from shared.jsontext import canonical
from shared.ledger.port import ActionRecord


class ActionKind(StrEnum):
    RUN_PIPELINE = "run_pipeline"
    TAG_MODEL = "tag_model"
    TAG_RUN = "tag_run"
    QUEUE_RELEASE = "queue_release"
    NOTIFY = "notify"
    PUBLISH_EVENT = "publish_event"
    QUALITY_GATE = "quality_gate"


_CONDITION = re.compile(r"^(?:not\s+)?[A-Za-z_][\w.-]*$")


class Params(BaseModel):
    """Base of every action's parameters: unknown keys are errors, strings are templates.

    Two keys work on every action: ``id`` names the action's result for the rule's later actions (a quality gate's
    verdict is ``{{ gate.passed }}``), and ``if`` runs the action only when a path is truthy (``if: gate.passed``,
    ``if: not gate.passed``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w-]*$")
    if_: str | None = Field(default=None, alias="if")

    @field_validator("if_")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None and not _CONDITION.match(value.strip()):
            raise ValueError(f"{value!r} is not a condition: use a path such as gate.passed or 'not gate.passed'")
        return value

    def condition_holds(self, context: Mapping[str, Any]) -> bool:
        """Whether ``if`` holds; a path the context lacks is false."""
        if self.if_ is None:
            return True
        text = self.if_.strip()
        negate = text.startswith("not ")
        try:
            value = bool(templates.lookup(context, text.removeprefix("not ").strip()))
        except KeyError:
            value = False
        return value != negate

    #: Parameters that decide where a request and its credential go. They are the rules' decision, never the
    #: event's: literal (or left out: a setting, the event's own workspace), not templates — ``_literal_destination``
    #: refuses a template on load and in ``rules check``; the engine re-checks the rendered value. An adapter
    #: adding a destination parameter (a GitHub repository ...) names it here.
    destinations: ClassVar[tuple[str, ...]] = ()

    @field_validator("workspace", "organization", "repository", "channels", check_fields=False)
    @classmethod
    def _literal_destination(cls, value: object, info: ValidationInfo) -> object:
        rendered = bool(info.context and info.context.get("rendered"))
        if rendered or info.field_name not in cls.destinations:
            return value
        for _, text in strings_at(value, ""):
            if "{{" in text or "{%" in text:
                raise ValueError(
                    f"{info.field_name} decides where the request and its credential go, so it must be literal or "
                    f"come from settings, not from event data: {text!r} is a template"
                )
        return value

    @model_validator(mode="after")
    def _templates_well_formed(self, info: ValidationInfo) -> Params:
        if info.context and info.context.get("rendered"):
            return self  # rendered values are event data: "{{ 7*7 }}" in a model name is not a template
        problems = [
            f"{where}: {p}" for where, s in strings_at(self.model_dump(by_alias=True), "") for p in templates.check(s)
        ]
        if problems:  # one line per problem, each led by its field (rules check turns that into a line and column)
            raise ValueError("\n".join(problems))
        return self


def _jobs_need_a_workspace(value: str | None, info: ValidationInfo) -> str | None:
    """A registry holds models and components, not jobs: a rule naming one for a job action is refused on load.

    A template that renders to a registry is refused by the adapter, with the rule's name (rendered values are not
    checked here: a validation error at render time would lose which rule and action it was).
    """
    rendered = bool(info.context and info.context.get("rendered"))
    if value is not None and not rendered and Registry.parse(value) is not None:
        raise ValueError(f"{value!r} is an Azure ML registry, which holds models and components, not jobs: "
                         "name a workspace resource id (or leave it out: the event's workspace)")
    return value


class RunPipelineParams(Params):
    """Launch an Azure ML pipeline (offline test, retraining) from exactly one source."""

    destinations = ("workspace",)

    purpose: str = "pipeline"
    workspace: str | None = Field(default=None, description="Workspace resource id; default: the event's.")
    job_yaml: str | None = Field(default=None, description="Pipeline job YAML, relative to the rules file.")
    component: str | None = Field(
        default=None, description="Registered pipeline component: name:version or name@label."
    )
    batch_endpoint: str | None = None
    batch_deployment: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    input_types: dict[str, str] = Field(
        default_factory=dict,
        description="Azure ML type of an input (uri_folder, mlflow_model ...) where the source does not declare it "
        "(batch endpoints: inputs are literals unless typed here).",
    )
    experiment_name: str | None = None
    display_name: str | None = None
    compute: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    _workspace = field_validator("workspace")(_jobs_need_a_workspace)

    @model_validator(mode="after")
    def _one_source(self) -> RunPipelineParams:
        sources = [n for n in ("job_yaml", "component", "batch_endpoint") if getattr(self, n)]
        if len(sources) != 1:
            raise ValueError(
                f"name exactly one of job_yaml, component or batch_endpoint (got {', '.join(sources) or 'none'})"
            )
        return self


class TagModelParams(Params):
    """Merge tags into a model version (keys not named are kept; removals are explicit).

    ``workspace`` is a workspace resource id or a registry (its resource id or ``azureml://registries/NAME``).

    ``set`` is a mapping of templates, or one placeholder that renders to a mapping (``"{{ gate.tags }}"``).
    """

    destinations = ("workspace",)

    workspace: str | None = None
    model: str = "{{ model.name }}"
    version: str = "{{ model.version }}"
    set: dict[str, str] | str = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
    archive: bool = False
    #: Tags only one version of the model may hold (e.g. ``{mlreactor.stage: champion}``): other versions holding
    #: one of them get ``demote_to``'s value for that key (the previous champion becomes ``former-champion``).
    exclusive: dict[str, str] = Field(default_factory=dict)
    demote_to: dict[str, str] = Field(default_factory=dict)

    @field_validator("set")
    @classmethod
    def _mapping_when_rendered(cls, value: dict[str, str] | str, info: ValidationInfo) -> dict[str, str] | str:
        if isinstance(value, str) and info.context and info.context.get("rendered"):
            raise ValueError(f"set must render to a mapping of tags, got {value!r}")
        return value

    @property
    def tags(self) -> dict[str, str]:
        """The tags to set, once rendered."""
        return self.set if isinstance(self.set, dict) else {}


class TagRunParams(Params):
    """Merge tags into a job (run) through the run-history merge API."""

    destinations = ("workspace",)

    workspace: str | None = None
    run: str = "{{ run.id }}"
    experiment: str | None = Field(
        default=None, description="The run's experiment; default: the event's if it is about this run, else looked up."
    )
    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)

    _workspace = field_validator("workspace")(_jobs_need_a_workspace)


def _text_map(value: object) -> object:
    """Azure DevOps takes template parameters and variables as strings: JSON for objects, ``true``/``false``.

    The SDK would ``str()`` them (``True`` → ``"True"``, a list → its Python repr), which no pipeline expects.
    """
    return {str(k): as_text(v) for k, v in value.items()} if isinstance(value, Mapping) else value


TextMap = Annotated[dict[str, str], BeforeValidator(_text_map)]

#: Template parameters mlreactor passes to every release pipeline run; the pipeline must declare them (all of type
#: string). ``releaseKey`` is how a resumed attempt recognises a run it may already have queued.
RELEASE_PARAMETERS = ("modelName", "modelVersion", "correlationId", "sourceEvent", "releaseKey")
#: Inputs mlreactor passes to every GitHub Actions release workflow (``workflow_dispatch``, all strings); the
#: workflow's ``run-name`` must carry ``release_key`` (GitHub's runs list returns the run name, not the inputs).
GITHUB_INPUTS = ("model", "version", "correlation_id", "release_key")


class QueueReleaseParams(Params):
    """Queue a gated release; production waits for a person, verified before every queue. The app never approves.

    ``flavour``: ``pipeline`` (Azure DevOps YAML run), ``classic`` (Azure DevOps release definition) or ``github``
    (a GitHub Actions ``workflow_dispatch``). ``environment`` names what holds the release — the YAML pipeline's or
    the workflow job's environment, the classic definition's stage — and is required: mlreactor reads its approvals
    before it queues anything.

    ``model``/``version`` name what is released: a release is queued at most once per model version and rule, however
    many events ask for it.
    """

    destinations = ("organization", "repository")

    flavour: Literal["pipeline", "classic", "github"] = "pipeline"
    organization: str | None = Field(default=None, description="https://dev.azure.com/ORG; default: a setting.")
    project: str | None = None
    pipeline_id: int | None = None
    definition_id: int | None = None
    repository: str | None = Field(default=None, description="GitHub: OWNER/REPO.")
    workflow: str | None = Field(default=None, description="GitHub: the workflow file name (release.yml) or id.")
    model: str = "{{ model.name }}"
    version: str = "{{ model.version }}"
    branch: str | None = Field(default=None, description="The ref to run (GitHub: required, e.g. main).")
    parameters: TextMap = Field(default_factory=dict)
    variables: TextMap = Field(default_factory=dict)
    stages_to_skip: list[str] = Field(default_factory=list)
    artifacts: list[dict[str, str]] = Field(
        default_factory=list, description="Classic: [{alias, version_id, version_name?}] of the build artifacts."
    )
    description: str | None = None
    environment: str = Field(description="The environment (classic: stage) whose approval holds the release.")

    @model_validator(mode="after")
    def _target(self) -> QueueReleaseParams:
        needs = {"pipeline": ("project", "pipeline_id"), "classic": ("project", "definition_id"),
                 "github": ("repository", "workflow", "branch")}[self.flavour]
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"flavour {self.flavour!r} needs {' and '.join(missing)}")
        unused = {"github": ("project", "pipeline_id", "definition_id", "variables", "stages_to_skip", "artifacts"),
                  "pipeline": ("repository", "workflow", "definition_id", "artifacts"),
                  "classic": ("repository", "workflow", "pipeline_id", "stages_to_skip")}[self.flavour]
        given = [n for n in unused if getattr(self, n)]
        if given:
            raise ValueError(f"flavour {self.flavour!r} does not use {', '.join(given)}")
        if self.flavour == "github" and self.repository and not re.fullmatch(r"[\w.-]+/[\w.-]+|\{\{.*\}\}",
                                                                               self.repository):
            raise ValueError(f"repository {self.repository!r} is not OWNER/REPO")
        reserved = sorted(set(self.parameters) & set(GITHUB_INPUTS if self.flavour == "github" else RELEASE_PARAMETERS))
        if reserved:
            raise ValueError(f"parameters {reserved} are set by mlreactor itself (use model/version)")
        for artifact in self.artifacts:
            missing = [k for k in ("alias", "version_id") if not artifact.get(k)]
            if missing:
                raise ValueError(f"artifact {artifact} needs {' and '.join(missing)}")
        return self


MessageKind = Literal[
    "generic", "run_failed", "chain_failed", "drift_detected", "offline_test", "release_queued", "model_deployed",
    "event_quarantined",
]


class NotifyParams(Params):
    """Tell Ops on one or more channels declared under ``channels:`` in the rules file.

    ``message`` picks the built-in layout (title, facts, links) for the situation; ``title``/``text``/``facts``/
    ``links`` add to or override it. ``throttle_key`` folds repeats inside ``throttle_window`` into one digest.
    """

    destinations = ("channels",)

    channels: list[str] = Field(min_length=1)
    message: MessageKind = "generic"
    title: str | None = None
    text: str | None = None
    facts: dict[str, str] = Field(default_factory=dict)
    links: dict[str, str] = Field(default_factory=dict, description="Button label -> https:// URL.")
    throttle_key: str | None = None
    throttle_window: str = "10m"

    @field_validator("channels", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("throttle_window")
    @classmethod
    def _window(cls, value: str) -> str:
        bounded_duration(value, timedelta(seconds=1), timedelta(days=31))
        return value


class PublishEventParams(Params):
    """Publish one of mlreactor's own events (CloudEvents 1.0) to an Event Grid custom topic."""

    type: str
    subject: str = "{{ event.subject }}"
    data: dict[str, Any] = Field(default_factory=dict)


class QualityGateParams(Params):
    """Judge an offline-test run's metrics against thresholds and the champion; the verdict is this step's result.

    Later actions of the rule read it as ``{{ gate.passed }}``, ``{{ gate.verdict }}``, ``{{ gate.summary }}``,
    ``{{ gate.tags }}`` (verdict and metrics as model tags) — see ``shared/gate.py``.
    """

    destinations = ("workspace",)

    id: str | None = "gate"
    workspace: str | None = None
    model: str = "{{ run.tags.mlreactor.model_name }}"
    version: str = "{{ run.tags.mlreactor.model_version }}"
    run: str = "{{ run.id }}"
    metrics: dict[str, MetricRule] = Field(min_length=1)
    required: list[str] | None = Field(default=None, description="Metrics that must be present; default: all named.")
    champion_tag: str = Field(default="mlreactor.stage=champion", pattern=r"^[^=]+=.+$")
    candidate_tag: str | None = Field(
        default="mlreactor.stage=candidate", pattern=r"^[^=]+=.+$",
        description="The chain's mark on a registered model; the gate waits for it (out-of-order delivery).",
    )
    wait_for_candidate: str = Field(default="1h", description="How long to wait for that mark before giving up.")

    @field_validator("wait_for_candidate")
    @classmethod
    def _duration(cls, value: str) -> str:
        bounded_duration(value, timedelta(0), timedelta(days=7))
        return value


PARAMS: dict[ActionKind, type[Params]] = {
    ActionKind.RUN_PIPELINE: RunPipelineParams,
    ActionKind.TAG_MODEL: TagModelParams,
    ActionKind.TAG_RUN: TagRunParams,
    ActionKind.QUEUE_RELEASE: QueueReleaseParams,
    ActionKind.NOTIFY: NotifyParams,
    ActionKind.PUBLISH_EVENT: PublishEventParams,
    ActionKind.QUALITY_GATE: QualityGateParams,
}

#: What each action kind's result holds for the rule's later actions, under the action's ``id`` (``if: release.url``,
#: ``{{ gate.summary }}``): the keys of ``ActionResult.data`` its live adapter returns. ``.*`` marks a mapping with
#: free keys; the first field is the one that says the action happened (``if: retrain.job``). ``rules check`` checks
#: paths against this; tests compare it with what the adapters return.
RESULT_FIELDS: dict[ActionKind, tuple[str, ...]] = {
    ActionKind.RUN_PIPELINE: ("job", "workspace", "experiment", "endpoint"),
    ActionKind.TAG_MODEL: ("model", "workspace", "tags.*", "writes", "demoted"),
    ActionKind.TAG_RUN: ("run", "workspace", "experiment"),
    ActionKind.QUEUE_RELEASE: (
        "id", "url", "target", "environment", "model", "version", "release_key", "status", "auth", "gate",
        # Azure DevOps only
        "name", "flavour", "organization", "project", "pipeline_id", "definition_id",
        # GitHub Actions only
        "repository", "workflow", "ref",
    ),
    ActionKind.NOTIFY: ("channels.*", "digest"),
    ActionKind.PUBLISH_EVENT: ("id", "source", "type"),
    ActionKind.QUALITY_GATE: (
        "passed", "verdict", "summary", "reasons", "champion_version", "table", "metrics.*", "tags.*", "model",
        "version", "notes",
    ),
}


def stand_in_result(kind: ActionKind, rendered: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """What a live adapter's result would hold, for actions that are recorded instead of sent (dry-run, rule tests).

    A field the rendered parameters also have takes their value (``model``, ``environment``); any other is
    ``"<prefix>:<kind>.<field>"`` (truthy, so ``if: release.id`` runs the actions that follow a release as live);
    a free-keyed mapping is empty.
    """
    return {
        name.removesuffix(".*"): {} if name.endswith(".*") else rendered.get(name) or f"{prefix}:{kind.value}.{name}"
        for name in RESULT_FIELDS[kind]
    }


def strings_at(value: Any, where: str) -> list[tuple[str, str]]:
    """Every string inside a parameter value with its dotted path (``inputs.monitor``); keys count as strings."""
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, Mapping):
        found = []
        for k, v in value.items():
            path = f"{where}.{k}" if where else str(k)
            found.extend([(path, k)] if isinstance(k, str) else [])
            found.extend(strings_at(v, path))
        return found
    if isinstance(value, list | tuple):
        return [s for i, v in enumerate(value) for s in strings_at(v, f"{where}[{i}]")]
    return []


def derived_key(fields: Mapping[str, Any]) -> str:
    """sha256 over canonical JSON (sorted keys) of the fields that make a thing that thing (Powertools' scheme)."""
    return hashlib.sha256(canonical(fields).encode()).hexdigest()


def idempotency_key(rule: str, index: int, kind: ActionKind, event: AzureMLEvent) -> str:
    """The key of one action of one event.

    The event's dedup key (source + id) pins it to one event; the rule name and position pin it to one action of
    that rule. Redelivery of the same event therefore always yields the same keys.
    """
    return derived_key({"event": event.key, "rule": rule, "index": index, "kind": kind.value})


@dataclass(frozen=True)
class PlannedAction:
    """One concrete action: rendered parameters plus everything an adapter needs to act exactly once."""

    key: str
    rule: str
    index: int
    kind: ActionKind
    params: Params
    event: AzureMLEvent
    correlation_id: str
    #: True when an earlier attempt recorded its intent but not its result: the adapter must look for what that
    #: attempt may already have created before creating it again.
    resumed: bool = False
    #: Results of the rule's earlier actions by ``id`` (e.g. ``{"gate": {...}}``), for rich messages.
    steps: Mapping[str, Any] = field(default_factory=dict)
    #: What earlier attempts recorded under this event's claim, by key (the claim read it; empty on a first claim):
    #: adapters that track sub-steps look here instead of reading the ledger again.
    earlier: Mapping[str, ActionRecord] = field(default_factory=dict)

    @property
    def short_key(self) -> str:
        return self.key[:16]


@dataclass(frozen=True)
class ActionResult:
    """What an adapter did: the id of what it created (job name, release id ...), where to see it, and ``data``
    it found out that later actions of the rule may use (recorded, so a redelivery sees the same)."""

    external_id: str | None = None
    detail: str = ""
    url: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    #: Results of the adapter's own sub-steps (e.g. each notification channel), stored in the same write as this
    #: action's result.
    records: tuple[ActionRecord, ...] = ()


class ActionAdapter(Protocol):
    """Carries out one kind of action. Raises ``TransientError`` or ``PermanentError``; anything else is a bug."""

    @property
    def live(self) -> bool:
        """False for dry-run adapters (the action is recorded, not sent)."""
        ...

    def execute(self, action: PlannedAction) -> ActionResult: ...
