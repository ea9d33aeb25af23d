"""Launch the offline-test or retraining pipeline, exactly once per action, whatever the service answers.

Three sources, one per rule: a pipeline job YAML shipped with the rules (``load_job`` + input overrides), a
registered pipeline component (``name:version``, ``name@label`` or ``name`` for the latest), or a batch endpoint
whose deployment is a pipeline component.

**Exactly once.** The job name is derived from the action's idempotency key and the job carries the whole key as tag
``mlreactor.action``, so every attempt for one action PUTs (or POSTs) the same name and can tell its own job from
another's. A second PUT of an existing name is not a 409 on the real service: it is an update whose tags replace the
job's, or a 400 ``UserError`` "A job with this name already exists" (MicrosoftDocs/azure-docs#122250); azure-core
itself re-sends a PUT whose answer was lost (read timeout, reset, 5xx). So:

- a resumed attempt (an earlier one recorded its intent but not its result) reads the job first and never PUTs an
  existing job again — its tags, set later by ``tag_run`` or a person, are never replaced by a re-PUT;
- after *any* error from the PUT (retried or not) the job is read by name: it carries this action's key → launched
  (``done``); another key → a permanent error naming both; not there → the PUT's own error stands. A 400 "already
  exists" whose job cannot be read yet (ARM reads lag writes) is transient: the redelivery finds it.

A first attempt's PUT can meet an existing job only through azure-core's own re-send inside that one call, which
carries the very same definition and tags a fraction of a second later — nothing else can have tagged the job yet.
A batch job gets its tags only after the POST (invoke takes none), so a job of the action's name without any key
was made by this action's POST and is taken as its own (its name holds 96 bits of the key).

Every write first passes the instance's ARM write budget (``throttle``): a short wait for a token happens inside
the delivery, a long one fails the event at once with the Retry-After in the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from shared.actions import ActionResult, PlannedAction, RunPipelineParams
from shared.adapters.azureml import runs
from shared.adapters.azureml.errors import calling, describe, said
from shared.adapters.azureml.throttle import ThrottledError, WriteBudget
from shared.adapters.azureml.timing import Timing
from shared.errors import MlreactorError, PermanentError, TransientError
from shared.events import CORRELATION_TAG, Workspace

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Job, PipelineJob

#: The job tag holding the idempotency key of the action that launched it.
ACTION_TAG = "mlreactor.action"
#: Reads of a job the service says exists but does not show yet, before leaving it to the redelivery.
_LAG_READS = (0.2, 0.5, 1.0)
#: Input types whose value is a path or asset id (everything else is a literal).
ASSET_INPUT_TYPES = frozenset({"uri_file", "uri_folder", "mltable", "mlflow_model", "custom_model", "triton_model"})
_COMPONENT_REF = re.compile(r"^(?:azureml:)?(?P<name>[A-Za-z0-9_.-]+)(?:(?::(?P<version>[A-Za-z0-9_.-]+))|"
                            r"(?:@(?P<label>[A-Za-z0-9_.-]+)))?$")


def job_name(action: PlannedAction, purpose: str) -> str:
    """``mlreactor-offline-test-3f2a…``: stable per action (96 bits of its key), valid as an Azure ML job name."""
    slug = re.sub(r"[^a-z0-9]+", "-", purpose.lower()).strip("-")[:40] or "pipeline"
    return f"mlreactor-{slug}-{action.key[:24]}"


def job_tags(action: PlannedAction, params: RunPipelineParams) -> dict[str, str]:
    """The rule's tags plus the chain's: correlation, event, reaction, purpose and the model under test."""
    tags = dict(params.tags)
    tags.update({
        CORRELATION_TAG: action.correlation_id,
        "mlreactor.event": action.event.id,
        "mlreactor.reaction": action.rule,
        "mlreactor.purpose": params.purpose,
        ACTION_TAG: action.key,
    })
    model = action.event.context().get("model")
    if isinstance(model, dict) and model.get("name"):
        tags["mlreactor.model_name"] = str(model["name"])
        tags["mlreactor.model_version"] = str(model["version"])
    return tags


def run_pipeline(
    ml: MLClient, workspace: Workspace, action: PlannedAction, params: RunPipelineParams, base_dir: Path,
    budget: WriteBudget, timing: Timing,
) -> ActionResult:
    name = job_name(action, params.purpose)
    tags = job_tags(action, params)
    experiment = params.experiment_name or f"mlreactor-{params.purpose}"
    submit = Submission(ml, workspace, action, name, timing)
    if action.resumed:
        existing = find_job(ml, workspace, name)
        if existing is not None:
            submit.check_owner(existing)
            if params.batch_endpoint:  # the earlier attempt may have died between the POST and the PATCH
                _annotate_batch_job(ml, workspace, existing.experiment_name or experiment, name, tags, params)
            return _launched(workspace, existing, "already launched by an earlier attempt")
    if params.batch_endpoint:
        return _invoke_batch_endpoint(ml, workspace, submit, budget, experiment, tags, params)
    job = _yaml_job(params, base_dir, workspace) if params.job_yaml else _component_job(ml, workspace, params)
    job.name = name
    job.experiment_name = params.experiment_name or job.experiment_name or experiment
    job.display_name = params.display_name or job.display_name or name
    job.tags = {**(job.tags or {}), **tags}
    try:
        with budget.write(workspace.subscription_id, f"PUT pipeline job {name}"), \
                calling(workspace, f"PUT pipeline job {name}"):
            # The service validates the definition itself; the SDK's client-side pass costs ~50 ms a launch.
            created = ml.jobs.create_or_update(job, skip_validation=True)
    except MlreactorError as exc:
        return _launched(workspace, submit.after_failed(exc), "already launched (the PUT's answer was lost or refused; "
                         "the job carries this action's key)")
    return _launched(workspace, created, f"launched pipeline job {name}")


@dataclass(frozen=True)
class Submission:
    """One action's job name and key: reads the job back after a failed submission and tells whose it is."""

    ml: MLClient
    workspace: Workspace
    action: PlannedAction
    name: str
    timing: Timing

    def after_failed(self, exc: MlreactorError) -> Job:
        """The job the failed PUT/POST may have made, if it is this action's; else ``exc`` (or why not) is raised."""
        if isinstance(exc, ThrottledError):
            raise exc  # refused before anything was sent
        exists = _says_exists(exc)
        existing = find_job(self.ml, self.workspace, self.name)
        for pause in _LAG_READS if exists else ():
            if existing is not None or not self.timing.has_left(pause):
                break
            self.timing.sleep(pause)
            existing = find_job(self.ml, self.workspace, self.name)
        if existing is None:
            if exists:
                raise TransientError(
                    f"Azure ML {describe(self.workspace)}: job {self.name}: the service says it exists but does not "
                    "show it yet (reads lag writes); the redelivery reads it again"
                ) from exc
            raise exc
        self.check_owner(existing)
        return existing

    def check_owner(self, job: Job) -> None:
        owner = (job.tags or {}).get(ACTION_TAG)
        if owner is not None and owner != self.action.key:
            raise PermanentError(
                f"Azure ML {describe(self.workspace)}: job {self.name} belongs to action {owner}, not to this "
                f"action {self.action.key} (rule {self.action.rule!r}, event {self.action.event.id}): its name was "
                "taken by another submission; nothing was launched for this one"
            )


def _says_exists(exc: MlreactorError) -> bool:
    """The service's answer to a second job of a name: 409, or 400 UserError "A job with this name already exists"."""
    from azure.core.exceptions import HttpResponseError  # noqa: PLC0415 - the SDK loads on first use

    cause = exc.__cause__
    if not isinstance(cause, HttpResponseError):
        return False
    return cause.status_code == 409 or (cause.status_code == 400 and "already exists" in str(cause.message))


def find_job(ml: MLClient, workspace: Workspace, name: str) -> Job | None:
    from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415 - the SDK loads on first use

    try:
        with calling(workspace, f"GET job {name}"):
            job: Job = ml.jobs.get(name)
            return job
    except PermanentError as exc:
        if isinstance(exc.__cause__, ResourceNotFoundError):
            return None
        raise


def _launched(workspace: Workspace, job: Job, detail: str) -> ActionResult:
    status = getattr(job.status, "value", job.status)
    return ActionResult(
        external_id=job.name,
        detail=f"{detail} in {describe(workspace)} (experiment {job.experiment_name}, status {status})",
        url=job.studio_url,
        data={"workspace": workspace.resource_id, "job": job.name, "experiment": job.experiment_name},
    )


def _yaml_job(params: RunPipelineParams, base_dir: Path, workspace: Workspace) -> PipelineJob:
    """``load_job`` on a YAML shipped with the rules, inputs overridden; the path may not leave the rules' folder.

    The declared input types are read from the YAML first, so an asset input gets its ``path`` overridden
    (``inputs.model.path``) and a literal input its value (``inputs.monitor``).
    """
    from azure.ai.ml import load_job  # noqa: PLC0415 - the SDK loads on first use
    from azure.ai.ml.entities import PipelineJob  # noqa: PLC0415 - the SDK loads on first use

    root = base_dir.resolve()
    path = (root / str(params.job_yaml)).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise PermanentError(f"job_yaml {params.job_yaml!r}: no such file under the rules folder {root}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        declared = {
            str(key): str(value.get("type")) if isinstance(value, dict) else "literal"
            for key, value in (document.get("inputs") or {}).items()
        }
        overrides = [
            {f"inputs.{key}.path": value} if kind in ASSET_INPUT_TYPES else {f"inputs.{key}": value}
            for key, (kind, value) in _checked_inputs(params, declared, f"pipeline {params.job_yaml}").items()
        ]
        if params.compute:
            compute = params.compute
            if compute != "serverless" and not compute.startswith("azureml:"):
                compute = f"azureml:{compute}"  # YAML jobs name a workspace compute as azureml:<name>
            overrides.append({"settings.default_compute": compute})
        with calling(workspace, f"load {params.job_yaml}"):
            job = load_job(path, params_override=overrides)
    except PermanentError:
        raise
    except Exception as exc:  # YAML / marshmallow errors: the shipped file itself is wrong, retrying cannot help
        raise PermanentError(f"job_yaml {params.job_yaml!r} is not a valid pipeline job: {said(exc)}") from exc
    if not isinstance(job, PipelineJob):
        raise PermanentError(f"job_yaml {params.job_yaml!r} is a {job.type} job, not a pipeline")
    return job


def _component_job(ml: MLClient, workspace: Workspace, params: RunPipelineParams) -> PipelineJob:
    from azure.ai.ml import Input  # noqa: PLC0415 - the SDK loads on first use
    from azure.ai.ml.entities import PipelineJob, PipelineJobSettings  # noqa: PLC0415

    match = _COMPONENT_REF.match(str(params.component))
    if match is None:
        raise PermanentError(f"component {params.component!r}: use name:version, name@label or name")
    name, version, label = match["name"], match["version"], match["label"]
    ref = f"{name}:{version}" if version else f"{name}@{label or 'latest'}"
    with calling(workspace, f"GET pipeline component {ref}"):
        component = ml.components.get(name, version=version, label=None if version else label or "latest")
    declared = {key: getattr(value, "type", None) for key, value in (component.inputs or {}).items()}
    inputs: dict[str, Input | str | bool | int | float] = {
        key: Input(type=kind, path=value) if kind in ASSET_INPUT_TYPES else value
        for key, (kind, value) in _checked_inputs(params, declared, f"component {ref}").items()
    }
    settings = PipelineJobSettings(default_compute=params.compute) if params.compute else None
    return PipelineJob(component=component, inputs=inputs, settings=settings)


def _checked_inputs(
    params: RunPipelineParams, declared: Mapping[str, str | None], owner: str
) -> dict[str, tuple[str | None, str]]:
    """``{input: (type, value)}`` for the rendered inputs; an input the pipeline does not declare is an error."""
    unknown = sorted(set(params.inputs) - set(declared))
    if unknown:
        raise PermanentError(f"{owner} declares no input {', '.join(unknown)} (it has: {', '.join(declared)})")
    return {key: (params.input_types.get(key) or declared[key], value) for key, value in params.inputs.items()}


def _invoke_batch_endpoint(
    ml: MLClient, workspace: Workspace, submit: Submission, budget: WriteBudget, experiment: str,
    tags: dict[str, str], params: RunPipelineParams,
) -> ActionResult:
    """POST to the endpoint's scoring URI with the job name, then tag the job (invoke takes no tags).

    A model input of type ``mlflow_model``/``custom_model`` is resolved by the SDK as a *data* asset (a bug in
    ``batch_endpoints.invoke``), so every input is sent as a literal unless ``input_types`` names a data type.
    """
    from azure.ai.ml import Input  # noqa: PLC0415 - the SDK loads on first use

    data_types = ASSET_INPUT_TYPES - {"mlflow_model", "custom_model"}
    inputs = {
        key: Input(type=kind, path=value) if kind in data_types else Input(type="string", default=value)
        for key, value in params.inputs.items()
        for kind in [params.input_types.get(key, "string")]
    }
    endpoint, name = str(params.batch_endpoint), submit.name
    try:
        with budget.write(workspace.subscription_id, f"POST batch endpoint {endpoint}"), \
                calling(workspace, f"POST batch endpoint {endpoint} (job {name})"):
            ml.batch_endpoints.invoke(
                endpoint, deployment_name=params.batch_deployment, inputs=inputs, job_name=name,
                experiment_name=experiment,
            )
    except MlreactorError as exc:
        submit.after_failed(exc)
    _annotate_batch_job(ml, workspace, experiment, name, tags, params)
    return ActionResult(
        external_id=name,
        detail=f"launched batch job {name} on endpoint {endpoint} in {describe(workspace)} (experiment {experiment})",
        url=f"https://ml.azure.com/runs/{name}?wsid={workspace.resource_id}",
        data={"workspace": workspace.resource_id, "job": name, "experiment": experiment, "endpoint": endpoint},
    )


def _annotate_batch_job(
    ml: MLClient, workspace: Workspace, experiment: str, name: str, tags: dict[str, str], params: RunPipelineParams
) -> None:
    with calling(workspace, f"PATCH run {name} (tags)"):
        runs.annotate(ml, workspace, experiment, name, tags=tags, display_name=params.display_name)
