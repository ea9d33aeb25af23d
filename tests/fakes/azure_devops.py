"""A local Azure DevOps that speaks the wire protocol the real azure-devops SDK expects (loopback only).

What it serves, as dev.azure.com / vsrm.dev.azure.com do:

* ``OPTIONS /{org}/_apis`` and ``OPTIONS /vsrm/{org}/_apis`` — resource-location discovery with the real location ids
  and route templates (the SDK builds every URL from these);
* ``GET /{org}/_apis/ResourceAreas`` — where the Release area lives (here: ``/vsrm/{org}/`` on the same port);
* pipelines: ``POST/GET {project}/_apis/pipelines/{id}/runs`` and ``GET .../runs/{runId}`` — the list, like the
  service, returns run references *without* template parameters or variables;
* classic releases: ``POST/GET {project}/_apis/Release/releases`` (the list carries each release's description).

Every request is recorded (method, path, query, headers, JSON body). Faults are queued per method and path fragment:
an HTTP status with headers/body, a connection reset before the request is processed, or a reset *after* it was
processed (the run exists but the client never hears of it). Credentials are checked: a request without an accepted
Authorization header gets a bare 401, like the service.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.server import LoopbackServer

LOCATION_AREAS = "e81700f7-3be2-46de-8624-2eb35882fcaa"
PIPELINE_RUNS = "7859261e-d2e9-4a68-b820-a5d84cc5bb3d"
RELEASES = "a166fde7-27ad-408e-ba75-703c2cc9d500"
RELEASE_AREA = "efc2f575-36ef-48e9-b672-0c6fb4a48ac5"

_ORG_LOCATIONS = [
    {"id": LOCATION_AREAS, "area": "Location", "resourceName": "ResourceAreas",
     "routeTemplate": "_apis/{resource}/{areaId}", "resourceVersion": 1, "minVersion": 3.2, "maxVersion": 7.2,
     "releasedVersion": "0.0"},
    {"id": PIPELINE_RUNS, "area": "pipelines", "resourceName": "runs",
     "routeTemplate": "{project}/_apis/pipelines/{pipelineId}/runs/{runId}", "resourceVersion": 1,
     "minVersion": 5.1, "maxVersion": 7.2, "releasedVersion": "7.1"},
]
_VSRM_LOCATIONS = [
    {"id": RELEASES, "area": "Release", "resourceName": "releases",
     "routeTemplate": "{project}/_apis/{area}/{resource}/{releaseId}", "resourceVersion": 8, "minVersion": 3.0,
     "maxVersion": 7.2, "releasedVersion": "7.1"},
]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any

    @property
    def accept(self) -> str:
        return self.headers.get("accept", "")


@dataclass
class Fault:
    method: str
    path_contains: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    reset: bool = False
    after_processing: bool = False


def wrapped_exception(message: str, type_key: str) -> dict[str, Any]:
    """The JSON error body Azure DevOps sends (the SDK turns it into ``AzureDevOpsServiceError``)."""
    return {"$id": "1", "innerException": None, "message": message,
            "typeName": f"Microsoft.Azure.Pipelines.WebApi.{type_key}, Microsoft.Azure.Pipelines.WebApi",
            "typeKey": type_key, "errorCode": 0, "eventId": 3000}


class FakeAzureDevOps:
    """Start with ``start()``, point the SDK at ``organization_url``, read ``requests``; ``stop()`` when done."""

    def __init__(
        self,
        *,
        org: str = "contoso",
        pipelines: tuple[int, ...] = (42,),
        definitions: tuple[int, ...] = (7,),
        accepted_auth: tuple[str, ...] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.org = org
        self.pipelines = set(pipelines)
        self.definitions = set(definitions)
        self.accepted_auth = set(accepted_auth)
        self.clock = clock
        self.requests: list[Recorded] = []
        self.runs: dict[int, dict[str, Any]] = {}
        self.releases: dict[int, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        #: Consulted for every request no queued fault matches: ``injector(method, path)`` → a fault or None.
        self.injector: Callable[[str, str], Fault | None] | None = None
        #: Seconds to wait before answering ``latency(method, path)`` (a slow organization), or None.
        self.latency: Callable[[str, str], float] | None = None
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    # lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> FakeAzureDevOps:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = LoopbackServer(Handler, name="fake-azure-devops")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def base(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def organization_url(self) -> str:
        return f"{self.base}/{self.org}"

    # faults and views -------------------------------------------------------------------------------------------
    def fail_next(self, method: str, path_contains: str, status: int = 500, *, times: int = 1,
                  headers: dict[str, str] | None = None, body: Any = None) -> None:
        for _ in range(times):
            self.faults.append(Fault(method, path_contains, status, dict(headers or {}), body))

    def reset_next(self, method: str, path_contains: str, *, after_processing: bool = False) -> None:
        self.faults.append(Fault(method, path_contains, reset=True, after_processing=after_processing))

    def calls(self, method: str, path_contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path_contains in path:
                    self.faults.remove(fault)
                    return fault
            return self.injector(method, path) if self.injector is not None else None

    # the service ------------------------------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        org, vsrm = f"/{self.org}", f"/vsrm/{self.org}"
        if method == "OPTIONS" and path.rstrip("/") == f"{org}/_apis":
            return 200, {"count": len(_ORG_LOCATIONS), "value": _ORG_LOCATIONS}
        if method == "OPTIONS" and path.rstrip("/") == f"{vsrm}/_apis":
            return 200, {"count": len(_VSRM_LOCATIONS), "value": _VSRM_LOCATIONS}
        if method == "GET" and path == f"{org}/_apis/ResourceAreas":
            areas = [{"id": RELEASE_AREA, "name": "Release", "locationUrl": f"{self.base}{vsrm}/"}]
            return 200, {"count": len(areas), "value": areas}
        parts = path.strip("/").split("/")
        if parts[:1] == [self.org] and parts[2:4] == ["_apis", "pipelines"] and parts[5:6] == ["runs"]:
            return self._pipelines(method, parts[1], int(parts[4]), parts[6] if len(parts) > 6 else None, body)
        if parts[:2] == ["vsrm", self.org] and [p.lower() for p in parts[3:6]] == ["_apis", "release", "releases"]:
            return self._releases(method, parts[2], query, body)
        return 404, wrapped_exception(f"no route for {method} {path}", "RouteNotFoundException")

    def _pipelines(self, method: str, project: str, pipeline: int, run_id: str | None, body: Any) -> tuple[int, Any]:
        if pipeline not in self.pipelines:
            return 404, wrapped_exception(f"Pipeline with id {pipeline} not found.", "PipelineNotFoundException")
        if method == "POST" and run_id is None:
            with self._lock:
                run_id_new = 100 + len(self.runs) + 1
                web = f"{self.base}/{self.org}/{project}/_build/results?buildId={run_id_new}"
                run = {
                    "id": run_id_new, "name": f"{self.clock():%Y%m%d}.{len(self.runs) + 1}", "state": "inProgress",
                    "createdDate": self.clock().isoformat().replace("+00:00", "Z"),
                    "url": f"{self.base}/{self.org}/{project}/_apis/pipelines/{pipeline}/runs/{run_id_new}",
                    "_links": {"web": {"href": web}},
                    "pipeline": {"id": pipeline, "name": "release-model"},
                    "templateParameters": dict(body.get("templateParameters") or {}),
                    "variables": dict(body.get("variables") or {}),
                    "resources": body.get("resources") or {},
                }
                self.runs[run_id_new] = run
            return 200, run
        if method == "GET" and run_id is None:
            refs = [
                {k: v for k, v in r.items() if k not in ("templateParameters", "variables", "resources")}
                for r in sorted(self.runs.values(), key=lambda r: r["id"], reverse=True)
                if r["pipeline"]["id"] == pipeline
            ]
            return 200, {"count": len(refs), "value": refs}
        if method == "GET" and run_id is not None and int(run_id) in self.runs:
            return 200, self.runs[int(run_id)]
        return 404, wrapped_exception(f"Run {run_id} not found.", "PipelineRunNotFoundException")

    def _releases(self, method: str, project: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "POST":
            definition = int(body.get("definitionId") or 0)
            if definition not in self.definitions:
                return 404, wrapped_exception(
                    f"VS402881: No release definition found with id {definition}.", "ReleaseDefinitionNotFoundException"
                )
            with self._lock:
                release_id = len(self.releases) + 1
                release = {
                    "id": release_id, "name": f"Release-{release_id}", "status": "active",
                    "createdOn": self.clock().isoformat().replace("+00:00", "Z"),
                    "description": body.get("description") or "",
                    "releaseDefinition": {"id": definition},
                    "variables": body.get("variables") or {},
                    "artifacts": body.get("artifacts") or [],
                    "_links": {"web": {"href": f"{self.base}/{self.org}/{project}/_release?releaseId={release_id}"
                                                f"&_a=release-summary"}},
                }
                self.releases[release_id] = release
            return 200, release
        if method == "GET":
            definition = int(query.get("definitionId", ["0"])[0])
            listed = [
                {k: v for k, v in r.items() if k not in ("variables", "artifacts")}
                for r in sorted(self.releases.values(), key=lambda r: r["id"], reverse=True)
                if r["releaseDefinition"]["id"] == definition
            ]
            return 200, {"count": len(listed), "value": listed}
        return 405, wrapped_exception(f"{method} not supported", "MethodNotAllowed")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server_fake: FakeAzureDevOps

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads ``requests``
        return

    def _handle(self) -> None:
        fake = self.server_fake
        url = urlsplit(self.path)
        path = unquote(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        fake.requests.append(Recorded(
            self.command, path, parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()}, body
        ))
        if fake.latency is not None:
            time.sleep(fake.latency(self.command, path))
        fault = fake._take_fault(self.command, path)
        if fault is not None and fault.reset and not fault.after_processing:
            return self._reset()
        if fake.accepted_auth and self.headers.get("Authorization") not in fake.accepted_auth:
            return self._send(401, None)
        if fault is not None and not fault.reset:
            return self._send(fault.status, fault.body, fault.headers)
        status, answer = fake.answer(self.command, path, parse_qs(url.query), body)
        if fault is not None:  # reset after processing: the effect happened, the answer is lost
            return self._reset()
        self._send(status, answer)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8; api-version=7.1")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Abort the TCP connection (RST), as a load balancer dropping the request would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    do_GET = do_POST = do_OPTIONS = do_PATCH = _handle
