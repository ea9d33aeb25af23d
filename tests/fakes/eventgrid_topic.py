"""A loopback HTTPS Event Grid custom topic that records what publishers post and can be told to fail.

It speaks the publish side of the basic tier's wire protocol: ``POST /api/events?api-version=2018-01-01`` with a JSON
array body (``application/cloudevents-batch+json`` for CloudEvents, ``application/json`` for the Event Grid schema),
authenticated by an ``aeg-sas-key`` header or an ``Authorization: Bearer`` token; 200 with an empty body on success;
errors as ``{"error": {"code", "message", "details"}}`` like the service. pytest-independent: start/stop it from any
harness (the end-to-end chain tests reuse it).

Example::

    topic = FakeEventGridTopic(make_cert(tmp)).start()
    topic.fail_next(503, times=2)
    ...  # publish to topic.endpoint with connection_verify=str(topic.cert.cert_path)
    assert len(topic.requests) == 3
    topic.stop()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.server import LoopbackServer
from tests.fakes.tls import SelfSignedCert


@dataclass(frozen=True)
class RecordedPost:
    """One request as the topic received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    code: str = ""
    message: str = ""


_CODES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 413: "RequestEntityTooLarge",
          429: "TooManyRequests", 503: "ServiceUnavailable"}


class FakeEventGridTopic:
    """Records every publish; answers 200 unless a scripted fault is queued or the key is wrong."""

    def __init__(self, cert: SelfSignedCert, *, key: str | None = None, host: str = "127.0.0.1") -> None:
        self.cert = cert
        self.key = key  # when set, a request without this aeg-sas-key (and without a bearer token) gets 401
        self.requests: list[RecordedPost] = []
        self._faults: list[Fault] = []
        #: Consulted for every post no queued fault applies to: ``injector(post)`` → a fault to answer with, or None.
        self.injector: Callable[[RecordedPost], Fault | None] | None = None
        self._lock = threading.Lock()
        self._host = host
        self._server: LoopbackServer | None = None

    # lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> FakeEventGridTopic:
        tls = self.cert.server_context()
        self._server = LoopbackServer(self._handler(), tls=tls, host=self._host, name="fake-eventgrid")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> FakeEventGridTopic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        return f"https://{self._server.host}:{self._server.port}/api/events"

    # fault injection ------------------------------------------------------------------------------------------
    def fail_next(
        self, status: int, *, times: int = 1, headers: dict[str, str] | None = None, message: str = ""
    ) -> None:
        """Answer the next ``times`` posts with ``status`` (and these headers, e.g. ``Retry-After``)."""
        fault = Fault(status, dict(headers or {}), _CODES.get(status, "Error"), message or f"injected {status}")
        with self._lock:
            self._faults.extend([fault] * times)

    # the server -----------------------------------------------------------------------------------------------
    def _answer(self, post: RecordedPost) -> Fault | None:
        with self._lock:
            self.requests.append(post)
            if self._faults:
                return self._faults.pop(0)
            injected = self.injector(post) if self.injector is not None else None
            if injected is not None:
                return injected
        authorization = post.headers.get("authorization", "")
        if self.key is not None and post.headers.get("aeg-sas-key") != self.key and not authorization:
            return Fault(401, code="Unauthorized", message="The request authorization key is not authorized.")
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        topic = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                url = urlsplit(self.path)
                post = RecordedPost(
                    method="POST", path=url.path, query=parse_qs(url.query),
                    headers={k.lower(): v for k, v in self.headers.items()}, body=self.rfile.read(length),
                )
                fault = topic._answer(post)
                if fault is None:
                    self._send(200, b"", {})
                    return
                body = json.dumps({"error": {
                    "code": fault.code, "message": fault.message,
                    "details": [{"code": fault.code, "message": fault.message}],
                }}).encode()
                self._send(fault.status, body, {"Content-Type": "application/json; charset=utf-8", **fault.headers})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        return Handler
