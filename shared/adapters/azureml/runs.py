"""Run-history calls: merge tags into a job (and set its display name) without rewriting it; list step runs.

``jobs.update()`` costs seven requests (four GETs of the job, the workspace, the discovery document, the PATCH); the
PATCH alone is what merges. ``jobs.list(parent_job_name=…)`` GETs the parent before listing. The calls below go
straight to the run-history operations of the ``MLClient`` (the same ones those public methods use), which resolve
the run-history host once per client from the workspace's discovery document and then cost one request per call.
The PATCHes need the job's experiment name, which run events carry; otherwise one ``jobs.get`` finds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shared.events import Workspace

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Job


def _runs(ml: MLClient) -> Any:
    # The run-history client of azure-ai-ml's JobOperations (private): its public wrappers re-read the job around
    # the call (see the module docstring). Pinned by the contract tests in tests/azureml.
    return ml.jobs._runs_operations


def _operations(ml: MLClient) -> Any:
    return _runs(ml)._operation


def children(ml: MLClient, run_id: str) -> list[Job]:
    """``GET …/runs/{run}/children``: the step runs of a pipeline run, as Job entities."""
    return [job for job in _runs(ml).get_run_children(run_id) if job is not None]


def merge_tags(
    ml: MLClient, workspace: Workspace, experiment: str, run_id: str, *, set_tags: Mapping[str, str],
    remove: Sequence[str] = (),
) -> dict[str, str]:
    """``PATCH …/experiments/{experiment}/runs/{run}/tags``: the service merges; returns the run's tags after."""
    from azure.ai.ml._restclient.runhistory.models import DeleteOrModifyTags  # noqa: PLC0415 - the SDK loads on first use

    run = _operations(ml).modify_or_delete_tags_by_experiment_name(
        subscription_id=workspace.subscription_id,
        resource_group_name=workspace.resource_group,
        workspace_name=workspace.name,
        experiment_name=experiment,
        run_id=run_id,
        body=DeleteOrModifyTags(tags_to_modify=dict(set_tags) or None, tags_to_delete=list(remove) or None),
    )
    return dict(run.tags or {})


def annotate(
    ml: MLClient, workspace: Workspace, experiment: str, run_id: str, *, tags: Mapping[str, str],
    display_name: str | None,
) -> dict[str, str]:
    """``PATCH …/experiments/{experiment}/runs/{run}``: merge tags and set the display name in one request."""
    from azure.ai.ml._restclient.runhistory.models import CreateRun  # noqa: PLC0415 - the SDK loads on first use

    run = _operations(ml).add_or_modify_by_experiment_name(
        subscription_id=workspace.subscription_id,
        resource_group_name=workspace.resource_group,
        workspace_name=workspace.name,
        experiment_name=experiment,
        run_id=run_id,
        body=CreateRun(display_name=display_name, tags=dict(tags)),
    )
    return dict(run.tags or {})
