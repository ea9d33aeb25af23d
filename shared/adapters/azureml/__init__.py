"""Azure ML through azure-ai-ml: pipelines, model and run tags, job and model state.

Nothing in this package imports ``azure.ai.ml`` at module level: the SDK costs ~1.6 s of cold start and is loaded by
the first Azure ML action (or state read) only.
"""

from __future__ import annotations

from shared.adapters.azureml.adapter import KINDS, AzureMLAdapter
from shared.adapters.azureml.clients import WorkspaceClients
from shared.adapters.azureml.state import AzureMLState, JobState

__all__ = ["KINDS", "AzureMLAdapter", "AzureMLState", "JobState", "WorkspaceClients"]
