"""Run-history calls: merge tags into a job (and set its display name) without rewriting the job.

``jobs.update()`` costs seven requests (four GETs of the job, the workspace, the discovery document, the PATCH); the
PATCH alone is what merges. Both calls below go straight to the run-history operations of the ``MLClient`` (the
same client ``jobs.update`` uses), which resolves the run-history host once per client from the workspace's
discovery document and then costs one request per call. They need the job's experiment name, which run events
carry; otherwise one ``jobs.get`` finds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shared.events import Workspace

if TYPE_CHECKING:
    from azure.ai.ml import MLClient


def _operations(ml: MLClient) -> Any:
    # The run-history client of azure-ai-ml's JobOperations (private): the one public wrapper, jobs.update(),
    # re-reads the job four times around the PATCH. Pinned by the contract tests in tests/azureml.
    return ml.jobs._runs_operations._operation


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
