"""A fake Azure Communication Services Email endpoint speaking the wire protocol the real SDK uses.

``POST /emails:send?api-version=...`` with ACS HMAC-SHA256 authentication
(``Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=...`` over
``VERB\\npath?query\\ndate;host;content-sha256``, keyed with the base64-decoded access key), an optional
``Operation-Id`` header, answered ``202 Accepted`` with ``Operation-Location`` and ``{"id", "status": "Running"}``.
A repeated Operation-Id is answered with the same operation and not sent twice (that is what the id is for).
Runs over TLS on loopback; pytest-independent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import uuid
from urllib.parse import urlsplit

from tests.fakes.webhook_receiver import Recorded, Reply, WebhookReceiver


class FakeAcsEmail:
    def __init__(self, tls: ssl.SSLContext) -> None:
        self.access_key = base64.b64encode(b"fake-acs-access-key-0123456789abcdef").decode()
        self.sent: dict[str, dict[str, object]] = {}
        self.auth_failures = 0
        self.lost_responses = 0
        self.receiver = WebhookReceiver(tls=tls, responder=self._respond)

    def start(self) -> FakeAcsEmail:
        self.receiver.start()
        return self

    def stop(self) -> None:
        self.receiver.stop()

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.receiver.port}/"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint};accesskey={self.access_key}"

    def lose_next_response(self) -> None:
        """Accept the next mail, then answer 503 as if the response were lost (the client cannot know it was sent)."""
        self.lost_responses += 1

    def _respond(self, request: Recorded) -> Reply:
        if not request.path.startswith("/emails:send?api-version="):
            return Reply(404, b'{"error":{"code":"NotFound","message":"unknown route"}}')
        if not self._signed(request):
            self.auth_failures += 1
            return Reply(401, b'{"error":{"code":"Denied","message":"Denied by the resource provider."}}')
        operation = request.header("Operation-Id") or str(uuid.uuid4())
        self.sent.setdefault(operation, request.json())
        if self.lost_responses:
            self.lost_responses -= 1
            return Reply(503, b'{"error":{"code":"ServiceUnavailable","message":"try again"}}')
        body = json.dumps({"id": operation, "status": "Running"}).encode()
        location = f"{self.endpoint}emails/operations/{operation}?api-version=2025-09-01"
        return Reply(202, body, {"Operation-Location": location, "Content-Type": "application/json",
                                 "Retry-After": "1"})

    def _signed(self, request: Recorded) -> bool:
        auth = request.header("Authorization") or ""
        date, content_hash = request.header("x-ms-date") or "", request.header("x-ms-content-sha256") or ""
        if base64.b64encode(hashlib.sha256(request.body).digest()).decode() != content_hash:
            return False
        host = urlsplit(self.endpoint).netloc
        to_sign = f"POST\n{request.path}\n{date};{host};{content_hash}"
        expected = base64.b64encode(
            hmac.new(base64.b64decode(self.access_key), to_sign.encode(), hashlib.sha256).digest()
        ).decode()
        return auth == f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={expected}"
