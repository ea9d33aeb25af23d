"""A real SMTP submission server (aiosmtpd) on a free loopback port: STARTTLS required, AUTH LOGIN/PLAIN required.

    server = SmtpServer(tls_context, username="mlreactor", password="s3cret").start()
    ... smtplib.SMTP("127.0.0.1", server.port).starttls(...).login(...).send_message(...) ...
    server.messages[0]["Subject"]; server.messages[0].get_body(("html",))
    server.stop()

``reject_next(code)`` answers the next DATA with an SMTP error (fault injection). Pytest-independent.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class _Handler:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.rejections:
                return self.rejections.pop(0)
            self.envelopes.append(envelope)
            raw = envelope.original_content or envelope.content
            assert isinstance(raw, bytes)
            self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK queued"


class SmtpServer:
    def __init__(self, tls: ssl.SSLContext, *, username: str, password: str) -> None:
        self._handler = _Handler()
        self.auth_attempts: list[str] = []
        self.port = _free_port()

        def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
            assert isinstance(data, LoginPassword)
            login = data.login.decode()
            self.auth_attempts.append(login)
            return AuthResult(success=login == username and data.password.decode() == password)

        self._controller = Controller(
            self._handler, hostname="127.0.0.1", port=self.port, tls_context=tls, require_starttls=True,
            auth_required=True, auth_require_tls=True, authenticator=authenticate,
        )

    @property
    def messages(self) -> list[EmailMessage]:
        return self._handler.messages

    @property
    def envelopes(self) -> list[Envelope]:
        return self._handler.envelopes

    def reject_next(self, reply: str) -> None:
        """E.g. ``"451 4.3.0 try later"`` or ``"554 5.7.1 rejected"`` for the next message."""
        with self._handler.lock:
            self._handler.rejections.append(reply)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
