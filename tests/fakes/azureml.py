"""A local HTTPS fake of the Azure ML REST surface that azure-ai-ml 1.35.2 talks to.

Speaks the wire protocol the real SDK sends (recorded by running the SDK against it): ARM job PUT/GET, component,
model-version and batch-endpoint resources, workspace discovery, the RunHistory PATCH that merges job tags, and the
batch scoring POST. Every request is recorded (method, path, api-version, headers, JSON body); faults can be queued
per route (status + Retry-After, slow answer, connection reset). State is kept per resource so a second PUT of the
same job name finds the first.

Usage (no pytest needed)::

    fake = FakeAzureML(tmp_dir).start()
    env = {"AZUREML_DEV_URL_MFE": fake.base_url}      # the SDK's own override for the ARM host
    MLClient(FakeCredential(), SUB, RG, WS, connection_verify=str(fake.cert.cert_path))
    ...
    fake.stop()
"""

from __future__ import annotations

import base64
import copy
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.tls import SelfSignedCert, make_cert

ARM_AUDIENCE = "https://management.azure.com"
AML_AUDIENCE = "https://ml.azure.com"
_WS = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"


# --- credential --------------------------------------------------------------------------------------------------
def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A JWT with ``alg: none``: the SDK decodes it without verifying (it only checks ``aud``)."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class FakeCredential:
    """Stands in for ``DefaultAzureCredential``: a token whose ``aud`` matches the scope asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        with self._lock:
            self.scopes.append(scopes)
        audience = scopes[0].removesuffix("/.default").rstrip("/") if scopes else ARM_AUDIENCE
        now = int(time.time())
        token = unsigned_jwt({"aud": audience, "tid": "00000000-0000-0000-0000-0000000000aa", "iat": now,
                              "exp": now + 3600, "oid": "fake"})
        return AccessToken(token, now + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        token = self.get_token(*scopes)
        return AccessTokenInfo(token.token, token.expires_on)

    def close(self) -> None:
        """Nothing to release."""


# --- recording and faults ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")

    def __str__(self) -> str:
        return f"{self.method} {self.path}" + (f"?api-version={self.api_version}" if self.api_version else "")


@dataclass
class Fault:
    """What to do instead of answering normally, ``times`` times, for requests matching ``method`` and ``path``."""

    method: str
    path: str  # regex searched in the path
    status: int = 503
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.0  # sleep before answering (past the client's read timeout = a timeout)
    reset: bool = False  # close the connection with a TCP RST instead of answering
    message: str = "injected fault"
    code: str | None = None
    then: Callable[[], None] | None = None  # called when the fault fires (e.g. to let another writer in)

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., tuple[int, Any]]


@dataclass
class _State:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by lower-case job name
    models: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (name, version)
    components: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    batch_endpoints: dict[str, list[str]] = field(default_factory=dict)  # endpoint → deployment names


class FakeAzureML:
    """One Azure ML "cloud" on a loopback port: any subscription / resource group / workspace path is served."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.cert: SelfSignedCert = make_cert(folder, host)
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.state = _State()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._build_routes()

    # lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> FakeAzureML:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                """Quiet: the recording is the log."""

            def do_GET(self) -> None:
                fake._serve(self)

            do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

        server = ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        server.socket = self.cert.server_context().wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-azureml", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"https://{self.host}:{self._server.server_address[1]}"

    # test helpers ------------------------------------------------------------------------------------------------
    def fail(self, method: str, path: str, **kwargs: Any) -> Fault:
        fault = Fault(method, path, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def add_model(self, name: str, version: str, *, tags: dict[str, str] | None = None, sub: str = "sub",
                  rg: str = "rg", ws: str = "ws") -> None:
        body = {
            "properties": {
                "description": None, "tags": dict(tags or {}), "properties": {}, "isArchived": False,
                "isAnonymous": False, "modelType": "mlflow_model", "flavors": {},
                "modelUri": f"azureml://subscriptions/{sub}/resourcegroups/{rg}/workspaces/{ws}/datastores/"
                            f"workspaceartifactstore/paths/ExperimentRun/dcid.run1/model",
                "jobName": "run1", "stage": "Development",
            }
        }
        path = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
        with self._lock:
            self.state.models[(name, version)] = self._arm(body, f"{path}/models/{name}/versions/{version}",
                                                           version, "Microsoft.MachineLearningServices/workspaces/models/versions")

    def add_component(self, name: str, version: str, *, labels: tuple[str, ...] = (), sub: str = "sub",
                      rg: str = "rg", ws: str = "ws") -> None:
        path = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
        spec = {
            "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json",
            "name": name, "version": version, "type": "pipeline", "display_name": name,
            "inputs": {"model": {"type": "mlflow_model"}, "test_data": {"type": "uri_folder", "optional": True}},
            "outputs": {},
            "jobs": {},
        }
        body = {"properties": {"componentSpec": spec, "description": None, "tags": {}, "properties": {},
                               "isAnonymous": False, "isArchived": False}}
        with self._lock:
            stored = self._arm(body, f"{path}/components/{name}/versions/{version}", version,
                               "Microsoft.MachineLearningServices/workspaces/components/versions")
            stored["_labels"] = list(labels)
            self.state.components[(name, version)] = stored

    def add_batch_endpoint(self, name: str, deployments: tuple[str, ...] = ("default",)) -> None:
        with self._lock:
            self.state.batch_endpoints[name] = list(deployments)

    def job(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.state.jobs.get(name.lower())
            return copy.deepcopy(found) if found else None

    def model_tags(self, name: str, version: str) -> dict[str, str]:
        with self._lock:
            return dict(self.state.models[(name, version)]["properties"]["tags"])

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or re.search(path, r.path))]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # serving -----------------------------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        request = Request(handler.command, url.path, query, dict(handler.headers.items()), body, time.monotonic())
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.then is not None:
                fault.then()
            if fault.delay:
                time.sleep(fault.delay)
            if fault.reset:
                _reset(handler)
                return
            if fault.status:
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                self._answer(handler, fault.status, _error(fault.code or _code(fault.status), fault.message), headers)
                return
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if route.method == request.method and match is not None:
                with self._lock:
                    status, answer = route.handler(request, **match.groupdict())
                self._answer(handler, status, answer)
                return
        self._answer(handler, 404, _error("NotFound", f"fake: no route for {request}"))

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.send_header("x-ms-request-id", str(uuid.uuid4()))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the client gave up (timeout test): nothing to answer to

    # routes ------------------------------------------------------------------------------------------------------
    def _build_routes(self) -> list[Route]:
        r = [
            ("GET", _WS, self._workspace),
            ("GET", r"/discovery/(?P<ws>[^/]+)", self._discovery),
            ("PUT", _WS + r"/jobs/(?P<name>[^/]+)", self._put_job),
            ("GET", _WS + r"/jobs/(?P<name>[^/]+)", self._get_job),
            ("GET", _WS + r"/components/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_component),
            ("GET", _WS + r"/components/(?P<name>[^/]+)/versions", self._list_components),
            ("GET", _WS + r"/components/(?P<name>[^/]+)", self._component_container),
            ("GET", _WS + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_model),
            ("PUT", _WS + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._put_model),
            ("GET", _WS + r"/models/(?P<name>[^/]+)/versions", self._list_models),
            ("GET", _WS + r"/models/(?P<name>[^/]+)", self._model_container),
            ("GET", _WS + r"/batchEndpoints/(?P<name>[^/]+)", self._get_batch_endpoint),
            ("GET", _WS + r"/batchEndpoints/(?P<name>[^/]+)/deployments", self._list_batch_deployments),
            ("POST", r"/score/(?P<sub>[^/]+)/(?P<rg>[^/]+)/(?P<ws>[^/]+)/(?P<name>[^/]+)/jobs", self._invoke_batch),
            ("PATCH", r"/history/v1\.0" + _WS + r"/experiments/(?P<exp>[^/]+)/runs/(?P<name>[^/]+)", self._patch_run),
            ("POST", r"/history/v1\.0" + _WS + r"/experimentids/(?P<exp>[^/]+)/runs/(?P<name>[^/]+)/children",
             self._run_children),
            ("POST", r"/history/v1\.0" + _WS + r"/runs/(?P<name>[^/]+)/children", self._run_children),
            ("GET", r"/history/v1\.0" + _WS + r"/runs/(?P<name>[^/]+)", self._get_run),
        ]
        return [Route(m, re.compile(p), h) for m, p, h in r]

    def _ws_path(self, sub: str, rg: str, ws: str) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"

    @staticmethod
    def _arm(body: dict[str, Any], rid: str, name: str, rtype: str) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        out = copy.deepcopy(body)
        out.update({"id": rid, "name": name, "type": rtype,
                    "systemData": {"createdAt": now, "createdBy": "fake", "createdByType": "User",
                                   "lastModifiedAt": now}})
        return out

    def _workspace(self, req: Request, sub: str, rg: str, ws: str) -> tuple[int, Any]:
        return 200, {
            "id": self._ws_path(sub, rg, ws), "name": ws, "type": "Microsoft.MachineLearningServices/workspaces",
            "location": "westeurope", "kind": "Default", "tags": {},
            "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
            "properties": {"friendlyName": ws, "discoveryUrl": f"{self.base_url}/discovery/{ws}",
                           "workspaceId": str(uuid.uuid5(uuid.NAMESPACE_URL, ws)), "mlFlowTrackingUri": None,
                           "provisioningState": "Succeeded", "hbiWorkspace": False, "publicNetworkAccess": "Enabled"},
        }

    def _discovery(self, req: Request, ws: str) -> tuple[int, Any]:
        base = self.base_url
        return 200, {"api": base, "catalog": base, "experimentation": base, "gallery": base, "history": base,
                     "hyperdrive": base, "labeling": base, "modelmanagement": base, "pipelines": base,
                     "studiohost": base}

    # jobs
    def _put_job(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        existing = self.state.jobs.get(name.lower())
        if existing is not None:
            # Azure ML jobs are immutable once created: a second PUT of the same name is refused.
            return 409, _error("UserError", f"A job with name '{name}' already exists in workspace '{ws}'.")
        body = copy.deepcopy(req.body or {})
        props = body.setdefault("properties", {})
        props["status"] = "NotStarted"
        props.setdefault("tags", {})
        props.setdefault("properties", {})
        props["services"] = {"Studio": {"endpoint": f"https://ml.azure.com/runs/{name}?wsid={self._ws_path(sub, rg, ws)}",
                                        "jobServiceType": "Studio"}}
        stored = self._arm(body, f"{self._ws_path(sub, rg, ws)}/jobs/{name}", name,
                           "Microsoft.MachineLearningServices/workspaces/jobs")
        self.state.jobs[name.lower()] = stored
        return 201, stored

    def _get_job(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        job = self.state.jobs.get(name.lower())
        if job is None:
            return 404, _error("UserError", f"Job {name} not found in workspace {ws}.")
        return 200, job

    def _run_body(self, job: dict[str, Any]) -> dict[str, Any]:
        props = job["properties"]
        return {"runId": job["name"], "status": props.get("status"), "tags": props.get("tags", {}),
                "properties": props.get("properties", {}), "displayName": props.get("displayName"),
                "experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, props.get("experimentName") or "Default")),
                "parentRunId": props.get("_parent")}

    def _patch_run(self, req: Request, sub: str, rg: str, ws: str, exp: str, name: str) -> tuple[int, Any]:
        job = self.state.jobs.get(name.lower())
        if job is None:
            return 404, _error("UserError", f"Run {name} not found.")
        props = job["properties"]
        patch = req.body or {}
        props.setdefault("tags", {}).update(patch.get("tags") or {})  # RunHistory merges tags
        props.setdefault("properties", {}).update(patch.get("properties") or {})
        if patch.get("displayName"):
            props["displayName"] = patch["displayName"]
        return 200, self._run_body(job)

    def _get_run(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        job = self.state.jobs.get(name.lower())
        return (200, self._run_body(job)) if job else (404, _error("UserError", f"Run {name} not found."))

    def _run_children(self, req: Request, sub: str, rg: str, ws: str, name: str, exp: str = "") -> tuple[int, Any]:
        children = [self._run_body(j) for j in self.state.jobs.values()
                    if (j["properties"].get("_parent") or "").lower() == name.lower()]
        return 200, {"value": children, "continuationToken": None, "nextLink": None}

    # components
    def _get_component(self, req: Request, sub: str, rg: str, ws: str, name: str, version: str) -> tuple[int, Any]:
        found = self.state.components.get((name, version))
        if found is None:
            return 404, _error("UserError", f"Component {name}:{version} not found in workspace {ws}.")
        return 200, {k: v for k, v in found.items() if not k.startswith("_")}

    def _list_components(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        versions = [c for (n, _), c in self.state.components.items() if n == name]
        versions.sort(key=lambda c: c["systemData"]["createdAt"], reverse=True)
        return 200, {"value": [{k: v for k, v in c.items() if not k.startswith("_")} for c in versions]}

    def _component_container(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        versions = sorted((c for (n, _), c in self.state.components.items() if n == name),
                          key=lambda c: c["systemData"]["createdAt"])
        if not versions:
            return 404, _error("UserError", f"Component {name} not found in workspace {ws}.")
        latest = versions[-1]["name"]
        return 200, self._arm({"properties": {"latestVersion": latest, "nextVersion": None, "isArchived": False}},
                              f"{self._ws_path(sub, rg, ws)}/components/{name}", name,
                              "Microsoft.MachineLearningServices/workspaces/components")

    # models
    def _get_model(self, req: Request, sub: str, rg: str, ws: str, name: str, version: str) -> tuple[int, Any]:
        found = self.state.models.get((name, version))
        if found is None:
            return 404, _error("UserError", f"Model {name}:{version} not found in workspace {ws}.")
        return 200, found

    def _put_model(self, req: Request, sub: str, rg: str, ws: str, name: str, version: str) -> tuple[int, Any]:
        existing = self.state.models.get((name, version))
        body = copy.deepcopy(req.body or {})
        if existing is not None:
            old_uri = existing["properties"].get("modelUri")
            if body.get("properties", {}).get("modelUri") not in (None, old_uri):
                return 400, _error("UserError", "Cannot change the path of an existing model version.")
        stored = self._arm(body, f"{self._ws_path(sub, rg, ws)}/models/{name}/versions/{version}", version,
                           "Microsoft.MachineLearningServices/workspaces/models/versions")
        self.state.models[(name, version)] = stored  # a full-body PUT replaces the whole version, tags included
        return 200, stored

    def _list_models(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        versions = [m for (n, _), m in self.state.models.items() if n == name]
        versions.sort(key=lambda m: int(m["name"]) if m["name"].isdigit() else 0, reverse=True)
        return 200, {"value": versions}

    def _model_container(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        versions = [v for (n, v) in self.state.models if n == name]
        if not versions:
            return 404, _error("UserError", f"Model {name} not found in workspace {ws}.")
        latest = max(versions, key=lambda v: int(v) if v.isdigit() else 0)
        return 200, self._arm({"properties": {"latestVersion": latest, "nextVersion": str(int(latest) + 1),
                                              "isArchived": False}},
                              f"{self._ws_path(sub, rg, ws)}/models/{name}", name,
                              "Microsoft.MachineLearningServices/workspaces/models")

    # batch endpoints
    def _get_batch_endpoint(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        if name not in self.state.batch_endpoints:
            return 404, _error("UserError", f"Batch endpoint {name} not found in workspace {ws}.")
        return 200, self._arm({
            "location": "westeurope", "tags": {}, "identity": {"type": "SystemAssigned"},
            "properties": {"authMode": "AADToken", "provisioningState": "Succeeded",
                           "scoringUri": f"{self.base_url}/score/{sub}/{rg}/{ws}/{name}/jobs",
                           "defaults": {"deploymentName": self.state.batch_endpoints[name][0]}}},
            f"{self._ws_path(sub, rg, ws)}/batchEndpoints/{name}", name,
            "Microsoft.MachineLearningServices/workspaces/batchEndpoints")

    def _list_batch_deployments(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        deployments = self.state.batch_endpoints.get(name)
        if deployments is None:
            return 404, _error("UserError", f"Batch endpoint {name} not found in workspace {ws}.")
        return 200, {"value": [self._arm({"location": "westeurope", "properties": {"provisioningState": "Succeeded"}},
                                         f"{self._ws_path(sub, rg, ws)}/batchEndpoints/{name}/deployments/{d}", d,
                                         "Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments")
                               for d in deployments]}

    def _invoke_batch(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        props = copy.deepcopy((req.body or {}).get("properties") or {})
        job_name = props.get("name") or str(uuid.uuid4())
        if job_name.lower() in self.state.jobs:
            return 409, _error("UserError", f"A job with name '{job_name}' already exists in workspace '{ws}'.")
        experiment = (props.get("properties") or {}).get("experimentName") or name
        job = {"properties": {"jobType": "Pipeline", "experimentName": experiment, "status": "NotStarted",
                              "tags": {}, "properties": {"azureml.batchrun": "true"}, "displayName": job_name,
                              "inputs": {}, "outputs": {}, "jobs": {}, "settings": {}}}
        self.state.jobs[job_name.lower()] = self._arm(job, f"{self._ws_path(sub, rg, ws)}/jobs/{job_name}", job_name,
                                                      "Microsoft.MachineLearningServices/workspaces/jobs")
        return 200, {"id": f"{self._ws_path(sub, rg, ws)}/batchEndpoints/{name}/jobs/{job_name}", "name": job_name,
                     "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs",
                     "properties": {**props, "name": job_name, "status": "NotStarted",
                                    "interactionEndpoints": {}}}


def _code(status: int) -> str:
    return {400: "UserError", 403: "AuthorizationFailed", 404: "NotFound", 408: "RequestTimeout",
            409: "Conflict", 429: "TooManyRequests"}.get(status, "ServiceError")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": [], "additionalInfo": []}}


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Abort the TCP connection (RST): the client sees 'connection reset by peer'."""
    sock = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
    handler.close_connection = True
