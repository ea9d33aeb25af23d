"""A real HTTP(S) server on a free loopback port that records every request — the stand-in for a Teams Workflows
webhook, a Slack incoming webhook, a generic webhook receiver or the ACS Email endpoint.

    receiver = WebhookReceiver().start()
    receiver.fail_next(503, times=2)        # fault injection: the next two requests get 503
    ... post to receiver.url("/hooks/ops") ...
    receiver.requests[0].json()
    receiver.stop()

Pytest-independent, so end-to-end tests and benchmarks can reuse it.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.server import LoopbackServer


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    #: Spread the whole answer over this many seconds, a byte at a time (a slow receiver that keeps every per-read
    #: timeout happy); the request was received and recorded in full before the answer starts.
    drip_seconds: float = 0.0


Responder = Callable[[Recorded], Reply]


class WebhookReceiver:
    """Answers 200 "ok" by default; ``responder`` or ``fail_next``/``always`` change that."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, responder: Responder | None = None) -> None:
        self.requests: list[Recorded] = []
        self.responder: Responder = responder or (lambda _: Reply())
        self._faults: list[Reply] = []
        self._always: Reply | None = None
        self._lock = threading.Lock()
        self._tls = tls
        self._server: LoopbackServer | None = None

    # lifecycle ----------------------------------------------------------------------------------------------------
    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded("POST", self.path, dict(self.headers.items()), self.rfile.read(length))
                reply = receiver._record(recorded)
                if reply.drip_seconds:
                    return self._drip(reply)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def _drip(self, reply: Reply) -> None:
                """The whole answer — status line, headers, body — a byte at a time over ``drip_seconds``."""
                head = f"HTTP/1.0 {reply.status} OK\r\nContent-Length: {len(reply.body)}\r\n\r\n".encode()
                answer = head + reply.body
                pause = reply.drip_seconds / len(answer)
                for byte in answer:
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up (cut us off): stop dripping
                        return
                    time.sleep(pause)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = LoopbackServer(Handler, tls=self._tls, name="webhook-receiver")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the receiver first"
        return self._server.port

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    # fault injection ----------------------------------------------------------------------------------------------
    def fail_next(self, status: int, times: int = 1, body: bytes = b"injected failure") -> None:
        with self._lock:
            self._faults.extend(Reply(status, body) for _ in range(times))

    def always(self, status: int | None, body: bytes = b"injected failure") -> None:
        """Answer every request with ``status`` (None: back to normal)."""
        with self._lock:
            self._always = Reply(status, body) if status is not None else None

    def _record(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            if self._always is not None:
                return self._always
            if self._faults:
                return self._faults.pop(0)
        return self.responder(recorded)
