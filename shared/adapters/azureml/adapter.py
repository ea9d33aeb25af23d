"""The live adapter for ``run_pipeline``, ``tag_model`` and ``tag_run``: routes each action to its workspace.

One instance serves the three kinds (they share the per-workspace clients and the model-version locks). The
workspace is the one the event came from unless the rule names another, so one deployment serves every allowed
workspace. ``tag_model`` may also name a registry (models shared across workspaces); a registry holds no jobs, so
``run_pipeline`` and ``tag_run`` refuse one. Errors leave as ``TransientError`` / ``PermanentError`` (see ``errors``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shared.actions import (
    ActionKind,
    ActionResult,
    PlannedAction,
    RunPipelineParams,
    TagModelParams,
    TagRunParams,
)
from shared.adapters.azureml.clients import WorkspaceClients, target_workspace
from shared.adapters.azureml.mlflow_tags import MlflowModelTags, tracking_base
from shared.adapters.azureml.pipelines import run_pipeline
from shared.adapters.azureml.tags import KeyedLocks, ModelTagger, tag_run
from shared.errors import PermanentError
from shared.events import Registry, Workspace

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

KINDS = (ActionKind.RUN_PIPELINE, ActionKind.TAG_MODEL, ActionKind.TAG_RUN)


class AzureMLAdapter:
    """Carries out Azure ML actions through azure-ai-ml (imported on the first action, not before)."""

    live = True

    def __init__(self, clients: WorkspaceClients, base_dir: Path) -> None:
        self.clients = clients
        self.base_dir = base_dir
        self._locks = KeyedLocks()
        self._mlflow_bases: dict[str, str] = {}  # workspace resource id (lower) → its MLflow endpoint

    def _mlflow(self, ml: MLClient, workspace: Workspace) -> Callable[[], MlflowModelTags]:
        """The workspace's MLflow endpoint, its tracking URI read on first use only (one GET per process)."""

        def endpoint() -> MlflowModelTags:
            key = workspace.resource_id.lower()
            base = self._mlflow_bases.get(key)
            if base is None:
                base = self._mlflow_bases[key] = tracking_base(ml, workspace)
            return MlflowModelTags(ml, workspace, base)

        return endpoint

    def execute(self, action: PlannedAction) -> ActionResult:
        params = action.params
        if not isinstance(params, RunPipelineParams | TagModelParams | TagRunParams):
            raise TypeError(f"AzureMLAdapter cannot carry out {action.kind.value}")
        target = target_workspace(params.workspace, action.event)
        if isinstance(target, Registry) and not isinstance(params, TagModelParams):
            # A literal registry is refused when the rules are loaded; this is one a template rendered to.
            raise PermanentError(
                f"rule {action.rule!r} do[{action.index}].{action.kind.value}: workspace {params.workspace!r} is "
                "an Azure ML registry, which holds models and components, not jobs: name a workspace"
            )
        settings = self.clients.settings
        with self.clients.timing.action_deadline(settings.azureml_action_budget_seconds):
            ml = self.clients.get(target)  # a registry's first use asks its discovery: inside the deadline
            if isinstance(params, TagModelParams):
                mlflow = None if isinstance(target, Registry) else self._mlflow(ml, target)
                return ModelTagger(ml, target, self._locks, settings.azureml_tag_settle_seconds, self.clients.timing,
                                   self.clients.budget, mlflow).tag(params)
            assert isinstance(target, Workspace)
            if isinstance(params, RunPipelineParams):
                return run_pipeline(ml, target, action, params, self.base_dir, self.clients.budget,
                                    self.clients.timing)
            return tag_run(ml, target, action, params)
