"""Per-key tags of a workspace's model versions through the workspace's MLflow endpoint: no whole-body write.

Routes (mlflow's ``model_registry.proto``, the same on Azure ML — Microsoft's "Manage models registries in Azure
Machine Learning with MLflow"), under the workspace's tracking URI with ``/mlflow/v2.0`` (what azureml-mlflow 1.62
sends for mlflow ≥ 2, ``azureml/mlflow/_store/azureml_reststore.py``)::

    POST   {host}/mlflow/v2.0/subscriptions/…/workspaces/{ws}/api/2.0/mlflow/model-versions/set-tag
           {"name", "version", "key", "value"}              one key set, the others untouched
    DELETE …/api/2.0/mlflow/model-versions/delete-tag {"name", "version", "key"}
    GET    …/api/2.0/mlflow/model-versions/get?name=&version=   {"model_version": {"tags": [{"key", "value"}]}}

**Why azure-core and not the mlflow client.** Measured on this machine (Python 3.11, median of 2): ``import mlflow``
(mlflow-skinny 3.15) 1.1-1.2 s, ``import azureml.mlflow`` 0.4-0.45 s more, on top of azure-ai-ml; both clients send
one request per key, exactly as here. The requests below go through the workspace ``MLClient``'s own azure-core
pipeline — already loaded, its bearer token (the ARM scope, as azureml-mlflow uses), and the retry policy bounded by
the action's deadline and fed to the write budget — so a warm tag costs no import and the same requests.

The host comes from the workspace's ``mlFlowTrackingUri`` (``azureml://{region}.api.azureml.ms/mlflow/v1.0/…``),
read once per workspace and process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from shared.adapters.azureml.errors import calling
from shared.errors import PermanentError
from shared.events import Workspace

if TYPE_CHECKING:
    from azure.ai.ml import MLClient


def tracking_base(ml: MLClient, workspace: Workspace) -> str:
    """``https://{host}/mlflow/v2.0/subscriptions/…/workspaces/{ws}`` from the workspace's tracking URI (one GET)."""
    with calling(workspace, "GET workspace (MLflow tracking URI)"):
        uri = ml.workspaces.get(workspace.name).mlflow_tracking_uri
    if not uri or not str(uri).startswith("azureml://"):
        raise PermanentError(f"Azure ML workspace {workspace.name} reports no MLflow tracking URI ({uri!r})")
    return "https://" + str(uri).removeprefix("azureml://").replace("/mlflow/v1.0/", "/mlflow/v2.0/", 1)


@dataclass(frozen=True)
class MlflowModelTags:
    """One workspace's model-version tags, key by key."""

    ml: MLClient
    workspace: Workspace
    base: str

    def set(self, name: str, version: str, key: str, value: str) -> None:
        self._send("POST", "set-tag", {"name": name, "version": version, "key": key, "value": value},
                   f"set tag {key} on model {name}:{version}")

    def delete(self, name: str, version: str, key: str) -> None:
        self._send("DELETE", "delete-tag", {"name": name, "version": version, "key": key},
                   f"delete tag {key} of model {name}:{version}")

    def get(self, name: str, version: str) -> dict[str, str]:
        query = urlencode({"name": name, "version": version})
        answer = self._send("GET", f"get?{query}", None, f"GET model {name}:{version} (MLflow)")
        found = answer.get("model_version") or {}
        return {str(t["key"]): str(t.get("value", "")) for t in found.get("tags") or [] if "key" in t}

    def _send(self, method: str, route: str, body: Mapping[str, str] | None, what: str) -> dict[str, Any]:
        from azure.core.rest import HttpRequest  # noqa: PLC0415 - the SDK loads on first use

        # The model-versions client's azure-core pipeline (private, pinned by tests/azureml/test_tags.py).
        client = self.ml.models._model_versions_operation._client
        request = HttpRequest(method, f"{self.base}/api/2.0/mlflow/model-versions/{route}", json=body)
        with calling(self.workspace, f"MLflow {what}"):
            response = client.send_request(request)
            response.raise_for_status()
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) else {}
