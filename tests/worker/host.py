"""The host's side of the worker protocol, played against Microsoft's ``azure_functions_runtime``.

In Azure the Functions host (.NET) starts the Python *proxy worker*, which opens the gRPC stream and hands each
``StreamingMessage`` to the library worker, ``azure_functions_runtime``, wrapped in a ``WorkerRequest(name, request,
properties)`` — ``properties`` carries ``protos`` (the generated message classes) and ``host`` on init only. This class
does what the host and the proxy worker do together, in the same order, with the same messages, minus gRPC:

    WorkerInitRequest → FunctionsMetadataRequest → FunctionLoadRequest (per function) → InvocationRequest (per call)

How the host shapes an invocation (source: azure-functions-host ``GrpcMessageConversionExtensions.ToRpc`` and the
Event Grid extension's trigger binding, read for this harness):
- An Event Grid event reaches an out-of-process worker as one ``JObject`` per event (the host splits the delivered
  array), serialised with ``JObject.ToString(Formatting.None)`` into ``TypedData.json``: compact JSON, keys in the
  order Event Grid sent them.
- The trigger's binding data becomes ``trigger_metadata``: the Event Grid binding publishes ``data`` (the event's
  ``data`` object, again ``TypedData.json``), and the host adds its system binding data ``sys`` (``MethodName``,
  ``UtcNow``, ``RandGuid``) — the shape of ``sys`` here is not verified against a running host; the worker passes
  trigger metadata to the converter, which this app's Event Grid functions do not read.
- An HTTP request becomes ``TypedData.http`` (``RpcHttp``): method, the full URL, lower-cased header names, the
  query, and the body as bytes (the worker announced ``RawHttpBodyBytes``/``RpcHttpBodyOnly`` at init).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HOST_VERSION = "4.1045.200.25556"  # the shape of a Functions 4.x host version; the runtime only logs it


@dataclass
class WorkerRequest:
    """What the proxy worker hands the library worker (``proxy_worker.dispatcher.WorkerRequest``)."""

    name: str
    request: Any
    properties: dict[str, Any] | None = None


@dataclass
class Invocation:
    """One invocation's answer: the worker's ``InvocationResponse`` and what it means to the host."""

    response: Any
    protos: SimpleNamespace = field(repr=False)

    @property
    def succeeded(self) -> bool:
        """The host answers Event Grid 2xx only when every invocation succeeded; a failure → 500 → redelivery."""
        return bool(self.response.result.status == self.protos.StatusResult.Success)

    @property
    def exception(self) -> str:
        return str(self.response.result.exception.message)


class FunctionsHost:
    """Drives ``azure_functions_runtime``'s entry points the way the host and proxy worker do."""

    def __init__(self, runtime: ModuleType, protos: SimpleNamespace, app_directory: Path) -> None:
        self.runtime = runtime
        self.protos = protos
        self.app_directory = app_directory
        self.loop = asyncio.new_event_loop()
        self.metadata: dict[str, Any] = {}  # function name → RpcFunctionMetadata the worker indexed
        self.init_response: Any = None  # WorkerInitResponse
        self.listing: Any = None  # FunctionMetadataResponse

    def _call(self, handler: str, name: str, message: Any, properties: dict[str, Any] | None = None) -> Any:
        request = WorkerRequest(name=name, request=message, properties=properties)
        return self.loop.run_until_complete(getattr(self.runtime, handler)(request))

    def start(self) -> None:
        """Worker init (the runtime indexes ``function_app.py`` here), then the metadata request, then one load per
        function — as the host does for a worker-indexed (v2) app."""
        self.runtime.start_threadpool_executor()
        self.init_response = init = self._call(
            "worker_init_request",
            "WorkerInitRequest",
            self.protos.StreamingMessage(
                request_id=str(uuid.uuid4()),
                worker_init_request=self.protos.WorkerInitRequest(
                    host_version=HOST_VERSION,
                    function_app_directory=str(self.app_directory),
                    worker_directory=str(Path(self.runtime.__file__).parent),
                ),
            ),
            properties={"protos": self.protos, "host": "127.0.0.1"},
        )
        if init.result.status != self.protos.StatusResult.Success:
            return
        self.listing = listing = self._call(
            "functions_metadata_request",
            "WorkerMetadataRequest",
            self.protos.StreamingMessage(
                request_id=str(uuid.uuid4()),
                functions_metadata_request=self.protos.FunctionsMetadataRequest(
                    function_app_directory=str(self.app_directory)
                ),
            ),
        )
        for metadata in listing.function_metadata_results:
            self.metadata[metadata.name] = metadata
            loaded = self._call(
                "function_load_request",
                "FunctionLoadRequest",
                self.protos.StreamingMessage(
                    request_id=str(uuid.uuid4()),
                    function_load_request=self.protos.FunctionLoadRequest(
                        function_id=metadata.function_id, metadata=metadata
                    ),
                ),
            )
            assert loaded.result.status == self.protos.StatusResult.Success, loaded.result.exception.message

    def stop(self) -> None:
        self.runtime.stop_threadpool_executor()
        self.loop.close()

    def _invoke(self, function: str, binding: str, data: Any, trigger_metadata: dict[str, Any]) -> Invocation:
        metadata = self.metadata[function]
        invocation_id = str(uuid.uuid4())
        response = self._call(
            "invocation_request",
            "FunctionInvocationRequest",
            self.protos.StreamingMessage(
                request_id=str(uuid.uuid4()),
                invocation_request=self.protos.InvocationRequest(
                    invocation_id=invocation_id,
                    function_id=metadata.function_id,
                    input_data=[self.protos.ParameterBinding(name=binding, data=data)],
                    trigger_metadata={
                        **trigger_metadata,
                        "sys": self._json({"MethodName": function, "UtcNow": "2026-11-20T18:00:00.0000000Z",
                                           "RandGuid": str(uuid.uuid4())}),
                    },
                    trace_context=self.protos.RpcTraceContext(
                        trace_parent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
                    ),
                ),
            ),
        )
        assert response.invocation_id == invocation_id
        return Invocation(response, self.protos)

    def _json(self, value: Any) -> Any:
        """``JObject.ToString(Formatting.None)``: compact, keys in their order, non-ASCII kept as is."""
        return self.protos.TypedData(json=json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def deliver_event(self, function: str, event: dict[str, Any]) -> Invocation:
        """One element of an Event Grid delivery, as the host invokes the function with it."""
        return self._invoke(function, "event", self._json(event), {"data": self._json(event.get("data"))})

    def http(self, function: str, method: str, url: str, headers: dict[str, str] | None = None,
             body: bytes = b"") -> Invocation:
        """One HTTP request to an HTTP-triggered function (the trigger parameter is ``req`` in functions/)."""
        query = dict(parse_qsl(urlsplit(url).query))
        http = self.protos.RpcHttp(
            method=method,
            url=url,
            headers={k.lower(): v for k, v in (headers or {}).items()},
            query=query,
            body=self.protos.TypedData(bytes=body) if body else None,
        )
        return self._invoke(function, "req", self.protos.TypedData(http=http), {})
