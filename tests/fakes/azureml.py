"""A local HTTPS fake of the Azure ML REST surface that azure-ai-ml 1.35.2 talks to.

Speaks the wire protocol the real SDK sends (recorded by running the SDK against it): ARM job PUT/GET, component,
data, model-version and batch-endpoint resources, the workspace and its discovery document, the run-history PATCHes
that merge job tags, step-run listing and the batch scoring POST; the workspace's MLflow endpoint for model-version
tags; for registries, the registry's discovery document (the cloud's global host) and model versions under its
region's ``/mferp/managementfrontend/…/registries/{name}``. Every request is recorded (method, path, api-version,
headers, JSON body). Faults are queued per method and path: a status (with Retry-After), a slow answer (``delay``), a
stale one (``hold`` / ``wait_for``), a reset connection, an answer lost after the request was applied (``lost``),
hooks to order concurrent clients; ``injector`` picks faults per request (seeded chaos). State is kept per workspace
(and registry), as the service does.

Where the service's answer is unusual, the fake gives that answer (each with its source):

- **A second PUT of an existing job name** is not a 409. ``job_reput="update"``: 200, an update whose tags *replace*
  the job's tags (the REST spec of Jobs - Create Or Update, azure-rest-api-specs
  ``machinelearningservices/.../mfe.json``: "For update case, the Tags in the definition passed in will replace Tags
  in the existing job"). ``job_reput="refuse"`` (default): 400 ``UserError`` "A job with this name already exists …
  Only description, tags, displayName, properties, and isArchived can be updated" — what users report when the
  re-sent definition differs (MicrosoftDocs/azure-docs#122250). A second batch-endpoint invocation with the same job
  name answers the same way; *that* is not documented anywhere we could find (unverified).
- **An api-version the service does not know** → 400 ``NoRegisteredProviderFound`` "No registered resource provider
  found for location … and API version …; the supported api-versions are …" (ARM's answer, e.g. gbowerman/azurerm#14).
  ``API_VERSIONS`` holds the ones azure-ai-ml 1.35.2 sends.
- **Read-after-write lag**: with ``read_lag`` > 0 a job GET within that long after its PUT is a 404 (ARM resource
  reads are eventually consistent across its front ends; "Azure Resource Manager … eventual consistency", the ARM
  async-operations and resource-provider contract docs; the size of the lag is not documented — a test picks one).
- **ARM throttling**: writes and reads to ``/subscriptions/…`` draw from per-subscription token buckets with the
  sizes of Microsoft's "Understand how Azure Resource Manager throttles requests" (checked 2026-12: writes bucket 200,
  refill 10/s; reads 250, 25/s). Every answer carries ``x-ms-ratelimit-remaining-subscription-writes`` (or
  ``-reads``); an empty bucket answers 429 ``TooManyRequests`` with ``Retry-After`` (seconds until a token). The
  run-history, MLflow, registry data-plane and scoring hosts are not ARM and are not drawn from. ``clock`` (seconds)
  is injectable so a benchmark can run the bucket in simulated time.
- **MLflow model-version tags** (``POST …/api/2.0/mlflow/model-versions/set-tag``, ``DELETE …/delete-tag``, ``GET
  …/get``) under the workspace's tracking URI ``azureml://HOST/mlflow/v1.0/subscriptions/…/workspaces/WS`` (as the
  workspace GET reports it; azureml-mlflow 1.62 sends ``/mlflow/v2.0`` for mlflow ≥ 2, see its
  ``_store/azureml_reststore.py``): one key set or removed on the service side, nothing else touched (Microsoft's
  "Manage models registries in Azure Machine Learning with MLflow"; routes from mlflow's ``model_registry.proto``).
  Error bodies use MLflow's ``{"error_code", "message"}``; the Azure ML front end's exact error body is unverified.

Usage (no pytest needed)::

    fake = FakeAzureML(tmp_dir).start()                 # a self-signed certificate is made in tmp_dir
    os.environ["AZUREML_DEV_URL_MFE"] = fake.base_url   # the SDK's own switch for its ARM host (HTTPS only)
    ml = MLClient(FakeCredential(), SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE,
                  connection_verify=str(fake.cert.cert_path))
    fake.add_model("credit", "7", tags={...}); fake.fail("PUT", "/jobs/", status=429, retry_after=1)
    ...
    fake.calls("PUT", "/jobs/"); fake.stop()

Registries: the SDK asks its cloud's ``registry_discovery_endpoint`` (no env var redirects it): register a cloud whose
endpoint is ``base_url`` (``cloud_metadata()``) and select it with ``AZUREML_CURRENT_CLOUD``, then
``fake.add_registry("shared"); fake.add_model("credit", "7", registry="shared")``.
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
from http import HTTPMethod
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from tests.fakes.server import LoopbackServer
from tests.fakes.tls import SelfSignedCert, make_cert

ARM_AUDIENCE = "https://management.azure.com"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-mlops"
WORKSPACE = "mlw-prod"
AML_AUDIENCE = "https://ml.azure.com"
_WS = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
       r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)")
#: A registry's assets are served by its region's management front end (the discovery document names the host).
_REG = (r"/mferp/managementfrontend/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
        r"/providers/Microsoft\.MachineLearningServices/registries/(?P<reg>[^/]+)")
#: Registry keys in the fake's state are kept apart from workspace names by this prefix.
_REGISTRY = "registry:"
#: The api-versions azure-ai-ml 1.35.2 sends (recorded); the service answers any other with a 400.
API_VERSIONS = frozenset({
    "2021-10-01-dataplanepreview", "2023-04-01-preview", "2023-08-01-preview", "2023-10-01", "2024-01-01-preview",
    "2024-10-01-preview", "v1.0",
})
_MLFLOW = r"/mlflow/v[12]\.0" + _WS + r"/api/2\.0/mlflow/model-versions"


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
    hold: float = 0.0  # answer normally, but only after this long: the answer is stale by the time it arrives
    reset: bool = False  # close the connection with a TCP RST instead of answering
    message: str = "injected fault"
    code: str | None = None
    then: Callable[[], None] | None = None  # called when the fault fires, before answering (e.g. to let another in)
    done: Callable[[], None] | None = None  # called once the request has been applied (state changed, not answered)
    wait_for: threading.Event | None = None  # answer only once this is set: the answer is stale when it arrives
    lost: bool = False  # apply the request, then reset the connection: it happened, the client never heard

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., tuple[int, Any]]


@dataclass
class _State:
    # Keys start with the lower-case workspace name: each workspace has its own assets.
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (ws, lower-case job name)
    models: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (ws, name, version)
    components: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    batch_endpoints: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (ws, endpoint) → deployments
    registries: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower-case name → (subscription, rg)


class TokenBucket:
    """ARM's per-subscription bucket for one kind of request: ``size`` tokens, refilled at ``refill`` per second."""

    def __init__(self, size: int, refill: float, clock: Callable[[], float]) -> None:
        self.size = size
        self.refill = refill
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._at: dict[str, float] = {}

    def take(self, subscription: str) -> tuple[bool, int, float]:
        """(allowed, remaining after this request, seconds until the next token when refused)."""
        now = self._clock()
        key = subscription.lower()
        tokens = min(float(self.size), self._tokens.get(key, float(self.size))
                     + max(now - self._at.get(key, now), 0.0) * self.refill)
        self._at[key] = max(now, self._at.get(key, now))
        if tokens < 1.0:
            self._tokens[key] = tokens
            return False, 0, (1.0 - tokens) / self.refill
        self._tokens[key] = tokens - 1.0
        return True, int(tokens - 1.0), 0.0


class FakeAzureML:
    """One Azure ML "cloud" on a loopback port: any subscription / resource group / workspace path is served."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", subscription: str = SUBSCRIPTION,
                 resource_group: str = RESOURCE_GROUP, clock: Callable[[], float] = time.monotonic,
                 job_reput: Literal["refuse", "update"] = "refuse", read_lag: float = 0.0) -> None:
        self.host = host
        #: How the service answers a second PUT of a job name (see the module docstring).
        self.job_reput = job_reput
        #: Seconds after a job PUT during which a GET of it still answers 404.
        self.read_lag = read_lag
        self.clock = clock
        self.writes = TokenBucket(200, 10.0, clock)
        self.reads = TokenBucket(250, 25.0, clock)
        self._created: dict[tuple[str, str], float] = {}
        self.subscription = subscription
        self.resource_group = resource_group
        self.cert: SelfSignedCert = make_cert(folder, host)
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        #: Consulted for every request no queued fault matches: a fault to apply to it, or None (random faults).
        self.injector: Callable[[Request], Fault | None] | None = None
        self.state = _State()
        self._lock = threading.RLock()
        self._server: LoopbackServer | None = None
        self._routes = self._build_routes()

    # lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> FakeAzureML:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                """Quiet: the recording is the log."""

            def do_GET(self) -> None:
                fake._serve(self)

            do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

        self._server = LoopbackServer(Handler, tls=self.cert.server_context(), host=self.host, name="fake-azureml")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self._port}"

    @property
    def _port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.port

    # test helpers ------------------------------------------------------------------------------------------------
    def fail(self, method: str, path: str, **kwargs: Any) -> Fault:
        fault = Fault(method, path, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def add_registry(self, name: str, *, subscription: str | None = None, resource_group: str | None = None) -> None:
        """An Azure ML registry its discovery document can be asked about (it lives in this fake's region)."""
        with self._lock:
            self.state.registries[name.lower()] = (subscription or self.subscription,
                                                   resource_group or self.resource_group)

    def add_model(self, name: str, version: str, *, tags: dict[str, str] | None = None,
                  workspace: str = WORKSPACE, registry: str | None = None) -> None:
        """A model version in a workspace, or in ``registry`` (added with ``add_registry`` first)."""
        if registry is not None:
            self._add_registry_model(registry, name, version, tags or {})
            return
        ws_path = self._ws_path(self.subscription, self.resource_group, workspace)
        body = {
            "properties": {
                "description": None, "tags": dict(tags or {}), "properties": {}, "isArchived": False,
                "isAnonymous": False, "modelType": "mlflow_model", "flavors": {"python_function": {"data": {}}},
                "modelUri": f"azureml://subscriptions/{self.subscription}/resourcegroups/{self.resource_group}/"
                            f"workspaces/{workspace}/datastores/workspaceartifactstore/paths/ExperimentRun/dcid.run1/model",
                "jobName": "run1", "stage": "Development",
            }
        }
        with self._lock:
            self.state.models[(workspace.lower(), name, version)] = self._arm(
                body, f"{ws_path}/models/{name}/versions/{version}", version,
                "Microsoft.MachineLearningServices/workspaces/models/versions")

    def _add_registry_model(self, registry: str, name: str, version: str, tags: dict[str, str]) -> None:
        with self._lock:
            if registry.lower() not in self.state.registries:
                raise KeyError(f"add_registry({registry!r}) first")
            body = {"properties": {
                "description": None, "tags": dict(tags), "properties": {}, "isArchived": False, "isAnonymous": False,
                "modelType": "mlflow_model", "flavors": {"python_function": {"data": {}}},
                "modelUri": f"azureml://registries/{registry}/models/{name}/versions/{version}",
                "jobName": "run1", "stage": "Development",
            }}
            self.state.models[(_REGISTRY + registry.lower(), name, version)] = self._arm(
                body, _registry_asset_id(registry, name, version), version,
                "Microsoft.MachineLearningServices/registries/models/versions")

    def add_component(self, name: str, version: str, *, inputs: dict[str, str] | None = None,
                      workspace: str = WORKSPACE) -> None:
        """A registered pipeline component; ``inputs`` maps input name → Azure ML type."""
        ws_path = self._ws_path(self.subscription, self.resource_group, workspace)
        spec = {
            "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json",
            "name": name, "version": version, "type": "pipeline", "display_name": name,
            "inputs": {k: {"type": t} for k, t in (inputs or {"model": "mlflow_model"}).items()},
            "outputs": {}, "jobs": {},
        }
        body = {"properties": {"componentSpec": spec, "description": None, "tags": {}, "properties": {},
                               "isAnonymous": False, "isArchived": False}}
        with self._lock:
            self.state.components[(workspace.lower(), name, version)] = self._arm(
                body, f"{ws_path}/components/{name}/versions/{version}", version,
                "Microsoft.MachineLearningServices/workspaces/components/versions")

    def add_data(self, name: str, version: str, *, workspace: str = WORKSPACE) -> None:
        """A registered data asset (a uri_folder), e.g. the training data a retrain pipeline names ``@latest``."""
        ws_path = self._ws_path(self.subscription, self.resource_group, workspace)
        body = {"properties": {"dataType": "uri_folder", "dataUri": f"azureml://datastores/blob/paths/{name}/{version}/",
                               "tags": {}, "properties": {}, "isAnonymous": False, "isArchived": False}}
        with self._lock:
            self.state.data[(workspace.lower(), name, version)] = self._arm(
                body, f"{ws_path}/data/{name}/versions/{version}", version,
                "Microsoft.MachineLearningServices/workspaces/data/versions")

    def add_batch_endpoint(self, name: str, deployments: tuple[str, ...] = ("default",), *,
                           workspace: str = WORKSPACE) -> None:
        with self._lock:
            self.state.batch_endpoints[(workspace.lower(), name)] = list(deployments)

    def add_job(self, name: str, *, experiment: str, status: str = "Completed", tags: dict[str, str] | None = None,
                properties: dict[str, str] | None = None, parent: str | None = None,
                workspace: str = WORKSPACE) -> None:
        """A job that exists already (a finished run, a pipeline step run when ``parent`` is given)."""
        ws_path = self._ws_path(self.subscription, self.resource_group, workspace)
        body = {"properties": {"jobType": "Pipeline" if parent is None else "Command", "experimentName": experiment,
                               "status": status, "tags": dict(tags or {}), "properties": dict(properties or {}),
                               "displayName": name, "inputs": {}, "outputs": {}, "jobs": {}, "settings": {},
                               "_parent": parent}}
        if parent is not None:
            body["properties"].update({"command": "python eval.py", "environmentId": "azureml:env:1", "jobs": None,
                                       "settings": None})
        with self._lock:
            self.state.jobs[(workspace.lower(), name.lower())] = self._arm(
                body, f"{ws_path}/jobs/{name}", name, "Microsoft.MachineLearningServices/workspaces/jobs")

    def finish_job(self, name: str, *, status: str = "Completed", tags: dict[str, str] | None = None,
                   workspace: str = WORKSPACE) -> dict[str, Any]:
        """The job ends (as the service would report it): its status changes, ``tags`` are merged into its tags."""
        with self._lock:
            props = self.state.jobs[(workspace.lower(), name.lower())]["properties"]
            props["status"] = status
            props.setdefault("tags", {}).update(tags or {})
            return copy.deepcopy(self.state.jobs[(workspace.lower(), name.lower())])

    def model_versions(self, name: str, workspace: str = WORKSPACE, *, registry: str | None = None) -> list[str]:
        scope = _scope(workspace, registry)
        with self._lock:
            found = [v for (ws, n, v) in self.state.models if ws == scope and n == name]
        return sorted(found, key=_order)

    def job(self, name: str, workspace: str = WORKSPACE) -> dict[str, Any] | None:
        with self._lock:
            found = self.state.jobs.get((workspace.lower(), name.lower()))
            return copy.deepcopy(found) if found else None

    def jobs(self, workspace: str = WORKSPACE) -> list[str]:
        with self._lock:
            return sorted(j["name"] for (ws, _), j in self.state.jobs.items() if ws == workspace.lower())

    def model_version(self, name: str, version: str, workspace: str = WORKSPACE, *,
                      registry: str | None = None) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.state.models[(_scope(workspace, registry), name, version)])

    def model_tags(self, name: str, version: str, workspace: str = WORKSPACE, *,
                   registry: str | None = None) -> dict[str, str]:
        return dict(self.model_version(name, version, workspace, registry=registry)["properties"]["tags"])

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or re.search(path, r.path))]

    def cloud_metadata(self) -> dict[str, str]:
        """Azure's public cloud, except that registry discovery is asked of this fake."""
        return {"azure_portal": "https://portal.azure.com/", "resource_manager": "https://management.azure.com/",
                "active_directory": "https://login.microsoftonline.com/", "aml_resource_id": "https://ml.azure.com/",
                "storage_endpoint": "core.windows.net", "registry_discovery_endpoint": f"{self.base_url}/"}

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
            elif self.injector is not None:
                fault = self.injector(request)
        refused = self._refuse(request)
        if refused is not None:
            self._answer(handler, *refused)
            return
        headers = self._throttle(request)
        if headers.get("Retry-After"):
            self._answer(handler, 429, _error("TooManyRequests", "The request is being throttled."), headers)
            return
        if fault is not None:
            if fault.then is not None:
                fault.then()
            if fault.delay:
                time.sleep(fault.delay)
            if fault.reset:
                _reset(handler)
                return
            if fault.status and not fault.lost:
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                self._answer(handler, fault.status, _error(fault.code or _code(fault.status), fault.message), headers)
                return
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if route.method == request.method and match is not None:
                with self._lock:
                    status, answer = route.handler(request, **match.groupdict())
                    answer = copy.deepcopy(answer)
                if fault is not None and fault.done is not None:
                    fault.done()
                if fault is not None and fault.wait_for is not None:
                    fault.wait_for.wait(10)
                if fault is not None and fault.hold:
                    time.sleep(fault.hold)
                if fault is not None and fault.lost:
                    _reset(handler)
                    return
                self._answer(handler, status, answer, headers)
                return
        self._answer(handler, 404, _error("NotFound", f"fake: no route for {request}"))

    def _refuse(self, request: Request) -> tuple[int, Any, dict[str, str]] | None:
        """An ARM request with an api-version the service does not know: 400, as ARM answers it."""
        version = request.api_version
        if version is None or version in API_VERSIONS or not request.path.startswith("/subscriptions/"):
            return None
        message = (f"No registered resource provider found for location 'westeurope' and API version '{version}' "
                   f"for type 'workspaces'. The supported api-versions are '{', '.join(sorted(API_VERSIONS))}'.")
        return 400, _error("NoRegisteredProviderFound", message), {}

    def _throttle(self, request: Request) -> dict[str, str]:
        """ARM's headers for a request to ``/subscriptions/…``; ``Retry-After`` set when its bucket is empty."""
        match = re.match(r"/subscriptions/([^/]+)/", request.path)
        if match is None:
            return {}
        write = request.method != "GET"
        bucket, kind = (self.writes, "writes") if write else (self.reads, "reads")
        with self._lock:
            allowed, remaining, wait = bucket.take(match[1])
        headers = {f"x-ms-ratelimit-remaining-subscription-{kind}": str(remaining)}
        if not allowed:
            headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return headers

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
        history = r"/history/v1\.0" + _WS
        run = r"/experiments/(?P<exp>[^/]+)/runs/(?P<name>[^/]+)"
        r = [
            ("GET", _WS, self._workspace),
            ("GET", r"/discovery/(?P<ws>[^/]+)", self._discovery),
            ("PUT", _WS + r"/jobs/(?P<name>[^/]+)", self._put_job),
            ("GET", _WS + r"/jobs/(?P<name>[^/]+)", self._get_job),
            ("GET", _WS + r"/components/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_component),
            ("GET", _WS + r"/components/(?P<name>[^/]+)/versions", self._list_components),
            ("GET", _WS + r"/data/(?P<name>[^/]+)", self._data_container),
            ("GET", _WS + r"/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_data),
            ("GET", _WS + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_model),
            ("PUT", _WS + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._put_model),
            ("GET", _WS + r"/models/(?P<name>[^/]+)/versions", self._list_models),
            ("GET", _WS + r"/batchEndpoints/(?P<name>[^/]+)", self._get_batch_endpoint),
            ("GET", _WS + r"/batchEndpoints/(?P<name>[^/]+)/deployments", self._list_batch_deployments),
            ("POST", r"/score/(?P<sub>[^/]+)/(?P<rg>[^/]+)/(?P<ws>[^/]+)/(?P<name>[^/]+)/jobs", self._invoke_batch),
            (HTTPMethod.PATCH, history + run, self._patch_run),  # merge tags, set the display name
            (HTTPMethod.PATCH, history + run + "/tags", self._patch_run_tags),  # merge and delete tags
            ("GET", history + r"/runs/(?P<name>[^/]+)/children", self._run_children),
            ("POST", _MLFLOW + r"/set-tag", self._mlflow_set_tag),
            ("DELETE", _MLFLOW + r"/delete-tag", self._mlflow_delete_tag),
            ("GET", _MLFLOW + r"/get", self._mlflow_get),
            ("GET", r"/registrymanagement/v1\.0/registries/(?P<reg>[^/]+)/discovery", self._registry_discovery),
            ("GET", _REG + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_registry_model),
            ("PUT", _REG + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._put_registry_model),
            ("GET", _REG + r"/models/(?P<name>[^/]+)/versions", self._list_registry_models),
        ]
        return [Route(m, re.compile(p), h) for m, p, h in r]

    def _ws_path(self, sub: str, rg: str, ws: str) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"

    def _reg_path(self, sub: str, rg: str, reg: str) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/registries/{reg}"

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
                           "workspaceId": str(uuid.uuid5(uuid.NAMESPACE_URL, ws)),
                           "mlFlowTrackingUri":
                               f"azureml://{self.host}:{self._port}/mlflow/v1.0{self._ws_path(sub, rg, ws)}",
                           "provisioningState": "Succeeded", "hbiWorkspace": False, "publicNetworkAccess": "Enabled"},
        }

    def _discovery(self, req: Request, ws: str) -> tuple[int, Any]:
        base = self.base_url
        return 200, {"api": base, "catalog": base, "experimentation": base, "gallery": base, "history": base,
                     "hyperdrive": base, "labeling": base, "modelmanagement": base, "pipelines": base,
                     "studiohost": base}

    # jobs
    def _put_job(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        existing = self.state.jobs.get((ws.lower(), name.lower()))
        if existing is not None:
            if self.job_reput == "refuse":
                return 400, _error("UserError", _JOB_EXISTS)
            # An update: tags (and description, displayName, properties) in the definition replace the job's.
            sent = (req.body or {}).get("properties") or {}
            props = existing["properties"]
            props["tags"] = dict(sent.get("tags") or {})
            for key in ("description", "displayName", "properties"):
                if key in sent:
                    props[key] = sent[key]
            return 200, _public(existing)
        body = copy.deepcopy(req.body or {})
        props = body.setdefault("properties", {})
        props["status"] = "NotStarted"
        props.setdefault("tags", {})
        props.setdefault("properties", {})
        studio = f"https://ml.azure.com/runs/{name}?wsid={self._ws_path(sub, rg, ws)}"
        props["services"] = {"Studio": {"jobServiceType": "Studio", "endpoint": studio}}
        stored = self._arm(body, f"{self._ws_path(sub, rg, ws)}/jobs/{name}", name,
                           "Microsoft.MachineLearningServices/workspaces/jobs")
        self.state.jobs[(ws.lower(), name.lower())] = stored
        self._created[(ws.lower(), name.lower())] = self.clock()
        return 201, _public(stored)

    def _get_job(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        key = (ws.lower(), name.lower())
        job = self.state.jobs.get(key)
        if job is None or self.clock() - self._created.get(key, float("-inf")) < self.read_lag:
            return 404, _error("UserError", f"Job {name} not found in workspace {ws}.")
        return 200, _public(job)

    def _run_body(self, job: dict[str, Any]) -> dict[str, Any]:
        props = job["properties"]
        experiment = props.get("experimentName") or "Default"
        return {"runId": job["name"], "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, job["id"])),
                "status": props.get("status"), "tags": props.get("tags", {}),
                "properties": props.get("properties", {}), "displayName": props.get("displayName"),
                "name": props.get("displayName"), "experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, experiment)),
                "parentRunId": props.get("_parent"), "runType": "azureml.StepRun" if props.get("_parent") else None,
                "createdUtc": job["systemData"]["createdAt"], "target": "cpu-cluster"}

    def _run(self, ws: str, exp: str, name: str) -> dict[str, Any] | None:
        job = self.state.jobs.get((ws.lower(), name.lower()))
        if job is None or (job["properties"].get("experimentName") or "").lower() != exp.lower():
            return None
        return job

    def _patch_run(self, req: Request, sub: str, rg: str, ws: str, exp: str, name: str) -> tuple[int, Any]:
        job = self._run(ws, exp, name)
        if job is None:
            return 404, _error("UserError", f"Run {name} not found in experiment {exp}.")
        props = job["properties"]
        patch = req.body or {}
        props.setdefault("tags", {}).update(patch.get("tags") or {})  # RunHistory merges, never replaces
        props.setdefault("properties", {}).update(patch.get("properties") or {})
        if patch.get("displayName"):
            props["displayName"] = patch["displayName"]
        return 200, self._run_body(job)

    def _patch_run_tags(self, req: Request, sub: str, rg: str, ws: str, exp: str, name: str) -> tuple[int, Any]:
        job = self._run(ws, exp, name)
        if job is None:
            return 404, _error("UserError", f"Run {name} not found in experiment {exp}.")
        tags = job["properties"].setdefault("tags", {})
        tags.update((req.body or {}).get("tagsToModify") or {})
        for key in (req.body or {}).get("tagsToDelete") or []:
            tags.pop(key, None)
        return 200, self._run_body(job)

    def _run_children(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        children = [self._run_body(j) for (w, _), j in self.state.jobs.items()
                    if w == ws.lower() and (j["properties"].get("_parent") or "").lower() == name.lower()]
        return 200, {"value": children, "continuationToken": None, "nextLink": None}

    # components
    def _get_component(self, req: Request, sub: str, rg: str, ws: str, name: str, version: str) -> tuple[int, Any]:
        found = self.state.components.get((ws.lower(), name, version))
        if found is None:
            return 404, _error("UserError", f"Component {name}:{version} not found in workspace {ws}.")
        return 200, found

    def _list_components(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        versions = [c for (w, n, _), c in self.state.components.items() if w == ws.lower() and n == name]
        versions.sort(key=lambda c: _order(c["name"]), reverse=True)  # newest first, as $orderBy=createdtime desc
        return 200, {"value": versions}

    # data
    def _data_container(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        versions = [v for (w, n, v) in self.state.data if w == ws.lower() and n == name]
        if not versions:
            return 404, _error("UserError", f"Data {name} not found in workspace {ws}.")
        latest = max(versions, key=_order)
        return 200, self._arm({"properties": {"dataType": "uri_folder", "latestVersion": latest,
                                              "nextVersion": str(_order(latest) + 1), "isArchived": False}},
                              f"{self._ws_path(sub, rg, ws)}/data/{name}", name,
                              "Microsoft.MachineLearningServices/workspaces/data")

    def _get_data(self, req: Request, sub: str, rg: str, ws: str, name: str, version: str) -> tuple[int, Any]:
        found = self.state.data.get((ws.lower(), name, version))
        if found is None:
            return 404, _error("UserError", f"Data {name}:{version} not found in workspace {ws}.")
        return 200, found

    # models
    def _get_model(self, req: Request, sub: str, rg: str, ws: str, name: str, version: str) -> tuple[int, Any]:
        found = self.state.models.get((ws.lower(), name, version))
        if found is None:
            return 404, _error("UserError", f"Model {name}:{version} not found in workspace {ws}.")
        return 200, found

    def _put_model(self, req: Request, sub: str, rg: str, ws: str, name: str, version: str) -> tuple[int, Any]:
        existing = self.state.models.get((ws.lower(), name, version))
        body = copy.deepcopy(req.body or {})
        if existing is not None:
            old_uri = existing["properties"].get("modelUri")
            if body.get("properties", {}).get("modelUri") not in (None, old_uri):
                return 400, _error("UserError", "Cannot change the path of an existing model version.")
        body.setdefault("properties", {}).setdefault("flavors", {})
        stored = self._arm(body, f"{self._ws_path(sub, rg, ws)}/models/{name}/versions/{version}", version,
                           "Microsoft.MachineLearningServices/workspaces/models/versions")
        self.state.models[(ws.lower(), name, version)] = stored  # a full-body PUT: the tag map is replaced whole
        return 200, stored

    def _list_models(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        versions = [m for (w, n, _), m in self.state.models.items() if w == ws.lower() and n == name]
        if req.query.get("listViewType", "ActiveOnly") == "ActiveOnly":
            versions = [m for m in versions if not m["properties"].get("isArchived")]
        versions.sort(key=lambda m: _order(m["name"]), reverse=True)
        return 200, {"value": versions}

    # MLflow: one model-version tag at a time, on the same versions the ARM routes serve
    def _mlflow_version(self, ws: str, name: str, version: str) -> dict[str, Any] | None:
        return self.state.models.get((ws.lower(), name, str(version)))

    def _mlflow_set_tag(self, req: Request, sub: str, rg: str, ws: str) -> tuple[int, Any]:
        body = req.body or {}
        found = self._mlflow_version(ws, str(body.get("name")), str(body.get("version")))
        if found is None:
            return 404, _mlflow_error(f"Model Version (name={body.get('name')}, version={body.get('version')}) "
                                      "not found")
        found["properties"].setdefault("tags", {})[str(body["key"])] = str(body.get("value", ""))
        return 200, {}

    def _mlflow_delete_tag(self, req: Request, sub: str, rg: str, ws: str) -> tuple[int, Any]:
        body = req.body or {}
        found = self._mlflow_version(ws, str(body.get("name")), str(body.get("version")))
        if found is None:
            return 404, _mlflow_error(f"Model Version (name={body.get('name')}, version={body.get('version')}) "
                                      "not found")
        found["properties"].setdefault("tags", {}).pop(str(body.get("key")), None)
        return 200, {}

    def _mlflow_get(self, req: Request, sub: str, rg: str, ws: str) -> tuple[int, Any]:
        name, version = req.query.get("name", ""), req.query.get("version", "")
        found = self._mlflow_version(ws, name, version)
        if found is None:
            return 404, _mlflow_error(f"Model Version (name={name}, version={version}) not found")
        tags = found["properties"].get("tags") or {}
        return 200, {"model_version": {"name": name, "version": version, "current_stage": "None",
                                       "tags": [{"key": k, "value": v} for k, v in tags.items()]}}

    # registries: discovery on the global host, then model versions on the registry's region (this fake)
    def _registry_discovery(self, req: Request, reg: str) -> tuple[int, Any]:
        found = self.state.registries.get(reg.lower())
        if found is None:
            return 404, _error("UserError", f"Registry {reg} not found.")
        sub, rg = found
        return 200, {"registryName": reg, "tenantId": "00000000-0000-0000-0000-0000000000aa",
                     "primaryRegion": "westeurope", "regions": ["westeurope"], "subscriptionId": sub,
                     "resourceGroup": rg, "workspaceName": None,
                     "primaryRegionResourceProviderUri": f"{self.base_url}/"}

    def _registry_scope(self, sub: str, rg: str, reg: str) -> str | None:
        """The state key of the registry the path names, or None if it names no registry of this fake."""
        found = self.state.registries.get(reg.lower())
        if found is None or (found[0].lower(), found[1].lower()) != (sub.lower(), rg.lower()):
            return None
        return _REGISTRY + reg.lower()

    def _get_registry_model(self, req: Request, sub: str, rg: str, reg: str, name: str,
                            version: str) -> tuple[int, Any]:
        scope = self._registry_scope(sub, rg, reg)
        found = self.state.models.get((scope, name, version)) if scope else None
        if found is None:
            return 404, _error("UserError", f"Model {name}:{version} not found in registry {reg}.")
        return 200, found

    def _put_registry_model(self, req: Request, sub: str, rg: str, reg: str, name: str,
                            version: str) -> tuple[int, Any]:
        scope = self._registry_scope(sub, rg, reg)
        if scope is None:
            return 404, _error("UserError", f"Registry {reg} not found.")
        existing = self.state.models.get((scope, name, version))
        body = copy.deepcopy(req.body or {})
        if existing is not None and body.get("properties", {}).get("modelUri") not in (
                None, existing["properties"].get("modelUri")):
            return 400, _error("UserError", "Cannot change the path of an existing model version.")
        stored = self._arm(body, _registry_asset_id(reg, name, version), version,
                           "Microsoft.MachineLearningServices/registries/models/versions")
        self.state.models[(scope, name, version)] = stored  # a full-body PUT, as in a workspace
        return 200, stored

    def _list_registry_models(self, req: Request, sub: str, rg: str, reg: str, name: str) -> tuple[int, Any]:
        scope = self._registry_scope(sub, rg, reg)
        if scope is None:
            return 404, _error("UserError", f"Registry {reg} not found.")
        versions = [m for (w, n, _), m in self.state.models.items() if w == scope and n == name]
        if req.query.get("listViewType", "ActiveOnly") == "ActiveOnly":
            versions = [m for m in versions if not m["properties"].get("isArchived")]
        versions.sort(key=lambda m: _order(m["name"]), reverse=True)
        return 200, {"value": versions}

    # batch endpoints
    def _get_batch_endpoint(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        deployments = self.state.batch_endpoints.get((ws.lower(), name))
        if deployments is None:
            return 404, _error("UserError", f"Batch endpoint {name} not found in workspace {ws}.")
        return 200, self._arm({
            "location": "westeurope", "tags": {}, "identity": {"type": "SystemAssigned"},
            "properties": {"authMode": "AADToken", "provisioningState": "Succeeded",
                           "scoringUri": f"{self.base_url}/score/{sub}/{rg}/{ws}/{name}/jobs",
                           "defaults": {"deploymentName": deployments[0]}}},
            f"{self._ws_path(sub, rg, ws)}/batchEndpoints/{name}", name,
            "Microsoft.MachineLearningServices/workspaces/batchEndpoints")

    def _list_batch_deployments(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        deployments = self.state.batch_endpoints.get((ws.lower(), name))
        if deployments is None:
            return 404, _error("UserError", f"Batch endpoint {name} not found in workspace {ws}.")
        return 200, {"value": [self._arm({"location": "westeurope", "properties": {"provisioningState": "Succeeded"}},
                                         f"{self._ws_path(sub, rg, ws)}/batchEndpoints/{name}/deployments/{d}", d,
                                         "Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments")
                               for d in deployments]}

    def _invoke_batch(self, req: Request, sub: str, rg: str, ws: str, name: str) -> tuple[int, Any]:
        if not str(req.headers.get("Authorization", "")).startswith("Bearer "):
            return 401, _error("Unauthorized", "no bearer token")
        props = copy.deepcopy((req.body or {}).get("properties") or {})
        job_name = props.get("name") or str(uuid.uuid4())
        if (ws.lower(), job_name.lower()) in self.state.jobs:
            return 400, _error("UserError", _JOB_EXISTS)  # unverified for batch endpoints: see the module docstring
        experiment = (props.get("properties") or {}).get("experimentName") or name
        self.add_job(job_name, experiment=experiment, status="NotStarted", workspace=ws)
        return 200, {"id": f"{self._ws_path(sub, rg, ws)}/batchEndpoints/{name}/jobs/{job_name}", "name": job_name,
                     "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs",
                     "properties": {**props, "name": job_name, "status": "NotStarted", "interactionEndpoints": {}}}


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """A stored job as the service returns it (without the fake's bookkeeping)."""
    out = copy.deepcopy(job)
    out["properties"].pop("_parent", None)
    return out


def _registry_asset_id(registry: str, name: str, version: str) -> str:
    """Registry assets are named by their asset id, not an ARM id (the SDK parses it as such)."""
    return f"azureml://registries/{registry}/models/{name}/versions/{version}"


def _scope(workspace: str, registry: str | None) -> str:
    return _REGISTRY + registry.lower() if registry is not None else workspace.lower()


def _order(version: str) -> int:
    return int(version) if version.isdigit() else 0


def _code(status: int) -> str:
    return {400: "UserError", 403: "AuthorizationFailed", 404: "NotFound", 408: "RequestTimeout",
            409: "Conflict", 429: "TooManyRequests"}.get(status, "ServiceError")


_JOB_EXISTS = ("A job with this name already exists. If you are trying to create a new job, use a different name. "
               "If you are trying to update an existing job, the existing job's Settings,  Inputs,  Outputs,  Jobs,  "
               "InputBindings,  OutputBindings cannot be changed. Only description, tags, displayName, properties, "
               "and isArchived can be updated.")


def _mlflow_error(message: str) -> dict[str, Any]:
    return {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message}


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
