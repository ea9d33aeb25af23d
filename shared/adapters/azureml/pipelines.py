"""Launch the offline-test or retraining pipeline, exactly once per action.

Three sources, one per rule: a pipeline job YAML shipped with the rules (``load_job`` + input overrides), a
registered pipeline component (``name:version``, ``name@label`` or ``name`` for the latest), or a batch endpoint
whose deployment is a pipeline component.

**Exactly once.** The job name is derived from the action's idempotency key, so every attempt for one action PUTs
(or POSTs) the same name. A first attempt sends the job at once; a resumed attempt (an earlier one recorded its
intent but not its result) first asks whether the job exists. A job that already exists — found, or refused by the
service with 409 — counts as done.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from shared.actions import ActionResult, PlannedAction, RunPipelineParams
from shared.adapters.azureml import runs
from shared.adapters.azureml.errors import calling, describe, said
from shared.errors import PermanentError
from shared.events import CORRELATION_TAG, Workspace

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Job, PipelineJob

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
    })
    model = action.event.context().get("model")
    if isinstance(model, dict) and model.get("name"):
        tags["mlreactor.model_name"] = str(model["name"])
        tags["mlreactor.model_version"] = str(model["version"])
    return tags


def run_pipeline(
    ml: MLClient, workspace: Workspace, action: PlannedAction, params: RunPipelineParams, base_dir: Path
) -> ActionResult:
    from azure.core.exceptions import ResourceExistsError  # noqa: PLC0415 - the SDK loads on first use

    name = job_name(action, params.purpose)
    tags = job_tags(action, params)
    experiment = params.experiment_name or f"mlreactor-{params.purpose}"
    if action.resumed:
        existing = find_job(ml, workspace, name)
        if existing is not None:
            if params.batch_endpoint:  # the earlier attempt may have died between the POST and the PATCH
                _annotate_batch_job(ml, workspace, existing.experiment_name or experiment, name, tags, params)
            return _launched(workspace, existing, "already launched by an earlier attempt")
    if params.batch_endpoint:
        return _invoke_batch_endpoint(ml, workspace, name, experiment, tags, params)
    job = _yaml_job(params, base_dir, workspace) if params.job_yaml else _component_job(ml, workspace, params)
    job.name = name
    job.experiment_name = params.experiment_name or job.experiment_name or experiment
    job.display_name = params.display_name or job.display_name or name
    job.tags = {**(job.tags or {}), **tags}
    try:
        with calling(workspace, f"PUT pipeline job {name}"):
            created = ml.jobs.create_or_update(job)
    except PermanentError as exc:
        if not isinstance(exc.__cause__, ResourceExistsError):
            raise
        existing = find_job(ml, workspace, name)
        if existing is None:
            raise
        return _launched(workspace, existing, "already launched (the service refused a second job of that name)")
    return _launched(workspace, created, f"launched pipeline job {name}")


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
    ml: MLClient, workspace: Workspace, name: str, experiment: str, tags: dict[str, str], params: RunPipelineParams
) -> ActionResult:
    """POST to the endpoint's scoring URI with the job name, then tag the job (invoke takes no tags).

    A model input of type ``mlflow_model``/``custom_model`` is resolved by the SDK as a *data* asset (a bug in
    ``batch_endpoints.invoke``), so every input is sent as a literal unless ``input_types`` names a data type.
    """
    from azure.ai.ml import Input  # noqa: PLC0415 - the SDK loads on first use
    from azure.core.exceptions import ResourceExistsError  # noqa: PLC0415 - the SDK loads on first use

    data_types = ASSET_INPUT_TYPES - {"mlflow_model", "custom_model"}
    inputs = {
        key: Input(type=kind, path=value) if kind in data_types else Input(type="string", default=value)
        for key, value in params.inputs.items()
        for kind in [params.input_types.get(key, "string")]
    }
    endpoint = str(params.batch_endpoint)
    try:
        with calling(workspace, f"POST batch endpoint {endpoint} (job {name})"):
            ml.batch_endpoints.invoke(
                endpoint, deployment_name=params.batch_deployment, inputs=inputs, job_name=name,
                experiment_name=experiment,
            )
    except PermanentError as exc:
        if not isinstance(exc.__cause__, ResourceExistsError):
            raise
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
