"""What the HTTP service fakes share: every request recorded, faults queued per method and path, answers sent as the
real service sends them (JSON or a raw text body, extra headers), and a connection reset before or after processing.

A fake subclasses ``HttpFake`` and implements ``respond`` (and ``refuse`` for credentials); ``start()`` serves it on a
free loopback port.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.server import LoopbackServer

#: status, body (JSON-able, a str sent as is, or None for no body), extra headers.
Reply = tuple[int, Any, dict[str, str]]


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


class HttpFake:
    name = "fake-http"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        #: Consulted for every request no queued fault matches: ``injector(method, path)`` → a fault or None.
        self.injector: Callable[[str, str], Fault | None] | None = None
        #: Seconds to wait before answering ``latency(method, path)`` (a slow service), or None.
        self.latency: Callable[[str, str], float] | None = None
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    # to implement -----------------------------------------------------------------------------------------------
    def respond(self, request: Recorded) -> Reply:
        raise NotImplementedError

    def refuse(self, request: Recorded) -> Reply | None:
        """The answer to credentials the service would not accept; None: accepted."""
        return None

    # lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> Any:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = LoopbackServer(Handler, name=self.name)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def base(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.port}"

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server_fake: HttpFake

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads ``requests``
        return

    def _handle(self) -> None:
        fake = self.server_fake
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = Recorded(
            self.command, unquote(url.path), parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()},
            json.loads(raw) if raw else None,
        )
        fake.requests.append(request)
        if fake.latency is not None:
            time.sleep(fake.latency(request.method, request.path))
        fault = fake._take_fault(request.method, request.path)
        if fault is not None and fault.reset and not fault.after_processing:
            return self._reset()
        refused = fake.refuse(request)
        if refused is not None:
            return self._send(*refused)
        if fault is not None and not fault.reset:
            return self._send(fault.status, fault.body, fault.headers)
        reply = fake.respond(request)
        if fault is not None:  # reset after processing: the effect happened, the answer is lost
            return self._reset()
        self._send(*reply)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        extra = dict(headers or {})
        if body is not None and "Content-Type" not in extra:
            extra["Content-Type"] = "application/json; charset=utf-8"
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Abort the TCP connection (RST), as a load balancer dropping the request would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    do_GET = do_POST = do_OPTIONS = do_PATCH = do_PUT = do_DELETE = _handle
