"""A loopback HTTP proxy in front of a real server (Azurite) that injects faults on the wire.

The SDK under test talks to the proxy as if it were the service; the proxy forwards each request upstream unless a
fault says otherwise:

- ``status``: answer e.g. 503 ServerBusy without forwarding (nothing happened upstream);
- ``lost``: forward, then answer 503 instead of the real response (it happened, the caller never heard);
- ``delay``: wait, then forward (a timeout on the caller's side).

Pytest-independent: ``FaultyProxy(upstream).start()`` ... ``.stop()``; ``requests`` records what passed.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from urllib.parse import urlsplit

from tests.fakes.server import LoopbackServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "host"}
_BUSY = b'{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":"The server is busy (injected)."}}}'


@dataclass
class Fault:
    kind: str  # status | lost | delay
    times: int = 1
    status: int = 503
    seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"Retry-After": "1"} with a 429
    #: Which requests it applies to: ``match(method, path)``; None = any.
    match: Callable[[str, str], bool] | None = None


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: list[tuple[str, str, int]] = []  # method, path, status answered
        self._faults: list[Fault] = []
        #: Consulted for every request no queued fault applies to: ``injector(method, path)`` → a fault or None.
        self.injector: Callable[[str, str], Fault | None] | None = None
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and (fault.match is None or fault.match(method, path)):
                    fault.times -= 1
                    return fault
            return self.injector(method, path) if self.injector is not None else None

    def start(self) -> FaultyProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall per answer

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._take(self.command, self.path)
                if fault is not None and fault.kind == "status":
                    self._answer(fault.status, {"Content-Type": "application/json", **fault.headers}, _BUSY)
                    return
                if fault is not None and fault.kind == "delay":
                    time.sleep(fault.seconds)
                status, headers, payload = proxy._forward(self.command, self.path, dict(self.headers), body)
                if fault is not None and fault.kind == "lost":
                    self._answer(fault.status, {"Content-Type": "application/json"}, _BUSY)
                    return
                self._answer(status, headers, payload)

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, status))
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the caller gave up (its timeout): fine
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_MERGE = do_OPTIONS = _relay

        self._server = LoopbackServer(Handler, name="faulty-proxy")
        return self

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
