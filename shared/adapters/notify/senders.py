"""Delivery over the wire, with failures classified where they happen.

``TransientError``: connection errors, timeouts, 408/425/429/5xx, SMTP 4xx — worth another try.
``PermanentError``: other 4xx (a deleted Teams workflow, a revoked Slack hook), redirects (never followed: a
webhook URL that moved must be fixed, not chased), SMTP 5xx, a missing setting — retrying will not help.

Messages name the channel and what the service said, never the URL (webhook URLs are bearer secrets), a password
or a connection string; exceptions are raised ``from None`` so no cause carries them into a log either.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import smtplib
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.channels import AcsEmailChannel, EmailChannel
from shared.errors import PermanentError, TransientError

SIGNATURE_HEADER = "X-Mlreactor-Signature"
TIMESTAMP_HEADER = "X-Mlreactor-Timestamp"
DELIVERY_HEADER = "X-Mlreactor-Delivery-Id"
_TRANSIENT_STATUS = {408, 425, 429}


@dataclass(frozen=True)
class Transport:
    """How to reach receivers: timeouts, trusted CAs, and whether loopback http:// is allowed (tests only)."""

    timeout: float
    tls: ssl.SSLContext
    allow_http_loopback: bool = False


def check_url(channel: str, setting: str, url: str, transport: Transport) -> None:
    """Only https:// — or http:// to a loopback address when the test setting allows it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. "https://[half-an-ipv6": say which setting, never the URL (a bearer secret)
        raise PermanentError(f"channel {channel}: the URL in app setting {setting} is malformed") from None
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and transport.allow_http_loopback and _is_loopback(host or ""):
        return
    raise PermanentError(
        f"channel {channel}: the URL in app setting {setting} must be an https:// URL"
        + ("" if transport.allow_http_loopback else " (http:// is accepted only on loopback, in tests)")
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Cutoff:
    """An overall deadline on one exchange: when it passes, the socket is shut down, so a receiver that drips its
    answer (a byte every few seconds keeps every per-operation timeout happy) is cut at ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sock = sock
            if self.fired:
                self._shut(sock)
        return sock

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                self._shut(self._sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed: nothing left to cut
            sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Cutoff:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._timer.cancel()
            self._sock = None


@dataclass(frozen=True)
class _Target:
    https: bool
    host: str
    port: int
    path: str


def _target(channel: str, url: str) -> _Target:
    """Where to connect; a URL that cannot be parsed is a permanent error that never repeats the URL (a secret)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise PermanentError(f"channel {channel}: the webhook URL is malformed (check its app setting)") from None
    if not parts.hostname or any(c in url for c in " \r\n\t"):
        raise PermanentError(f"channel {channel}: the webhook URL is malformed (check its app setting)")
    https = parts.scheme == "https"
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return _Target(https, parts.hostname, port or (443 if https else 80), path)


def _connect(target: _Target, transport: Transport, cut: Cutoff) -> http.client.HTTPConnection:
    """TCP (+ TLS) with every socket under ``cut`` from its first byte, the TLS handshake included."""
    sock = cut.watch(socket.create_connection((target.host, target.port), timeout=transport.timeout))
    if target.https:
        sock = cut.watch(transport.tls.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False))
        assert isinstance(sock, ssl.SSLSocket)
        sock.do_handshake()
    connection = http.client.HTTPConnection(target.host, target.port, timeout=transport.timeout)
    connection.sock = sock  # http.client sends over it as is (a set socket is never reconnected)
    return connection


def post_json(channel: str, url: str, body: bytes, transport: Transport, headers: dict[str, str] | None = None) -> str:
    """POST a JSON body; returns ``"HTTP <status>"`` on 2xx. Redirects are not followed (a 3xx is permanent).

    ``transport.timeout`` bounds the whole exchange — connect, TLS, request and answer — not each socket operation.
    """
    target = _target(channel, url)
    sent = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "mlreactor", **(headers or {})}
    connection: http.client.HTTPConnection | None = None
    with Cutoff(transport.timeout) as cut:
        try:
            connection = _connect(target, transport, cut)
            connection.request("POST", target.path, body=body, headers=sent)
            response = connection.getresponse()
            status = response.status
            answer = response.read(4096) if 200 <= status < 300 else response.read(300)
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"channel {channel}: TLS certificate not trusted: {exc.verify_message}") from None
        except (OSError, http.client.HTTPException) as exc:
            if cut.fired:
                raise TransientError(f"channel {channel}: the receiver did not answer within "
                                     f"{transport.timeout:g} s (cut)") from None
            raise TransientError(f"channel {channel}: cannot reach the receiver: {_reason(exc)}") from None
        finally:
            if connection is not None:
                connection.close()
    if 200 <= status < 300:
        return f"HTTP {status}"
    said = _said(answer)
    if status in _TRANSIENT_STATUS or status >= 500:
        raise TransientError(f"channel {channel}: the receiver answered HTTP {status}{said}")
    raise PermanentError(f"channel {channel}: the receiver answered HTTP {status}{said}")


def _said(answer: bytes) -> str:
    text = answer.decode("utf-8", "replace").strip()
    return f" ({' '.join(text.split())[:200]})" if text else ""


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return type(reason).__name__ if not str(reason) else str(reason)[:200]


def sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{delivery_id}.{timestamp}.{body}">`` — MLflow's webhook scheme.

    A receiver recomputes it from the headers and the raw body, compares in constant time, and rejects stale
    timestamps (replay) and delivery ids it has already processed (redeliveries reuse the id on purpose).
    """
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, delivery_id, timestamp, body),
    }


def send_smtp(
    channel: str, config: EmailChannel, password: str | None, mail: EmailMessage, transport: Transport
) -> str:
    """Submit over STARTTLS (or implicit TLS), authenticating when a username is configured."""
    cut = Cutoff(transport.timeout)  # the whole session, not each SMTP command
    try:
        with cut:
            if config.security == "tls":  # connect (and TLS) under per-operation timeouts, then under the cut
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.smtp_host, config.smtp_port, timeout=transport.timeout, context=transport.tls
                )
            else:
                client = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=transport.timeout)
            with client:
                if client.sock is not None:
                    cut.watch(client.sock)
                if config.security == "starttls":
                    client.starttls(context=transport.tls)
                    if client.sock is not None:
                        cut.watch(client.sock)
                if config.username:
                    client.login(config.username, password or "")
                refused = client.send_message(mail)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        error = TransientError if all(400 <= c < 500 for c in codes) else PermanentError
        raise error(f"channel {channel}: every recipient was refused (SMTP {codes})") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentError(f"channel {channel}: SMTP authentication failed ({exc.smtp_code})") from None
    except smtplib.SMTPNotSupportedError:
        raise PermanentError(f"channel {channel}: the SMTP server does not offer STARTTLS/AUTH") from None
    except smtplib.SMTPResponseException as exc:
        error = TransientError if 400 <= exc.smtp_code < 500 else PermanentError
        said = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise error(f"channel {channel}: SMTP {exc.smtp_code} {said[:200]}") from None
    except ssl.SSLCertVerificationError as exc:
        raise PermanentError(f"channel {channel}: TLS certificate not trusted: {exc.verify_message}") from None
    except (smtplib.SMTPException, OSError) as exc:
        if cut.fired:
            raise TransientError(f"channel {channel}: {config.smtp_host} did not finish within "
                                 f"{transport.timeout:g} s (cut)") from None
        raise TransientError(f"channel {channel}: cannot deliver to {config.smtp_host}: {_reason(exc)}") from None
    if refused:
        return f"accepted by {config.smtp_host}; refused: {', '.join(sorted(refused))}"
    return f"accepted by {config.smtp_host}"


def send_acs(
    channel: str, config: AcsEmailChannel, connection_string: str, mail: EmailMessage, delivery_id: str,
    transport: Transport, ca_file: str | None,
) -> str:
    """Azure Communication Services Email: one ``begin_send`` without waiting for the long-running operation.

    ``operation_id`` is derived from the delivery id, so a redelivery repeats the same operation instead of
    sending a second mail. Waiting for the final status would not fit Event Grid's 30 s; the operation id is
    recorded, and ACS reports the outcome in its own logs / Event Grid ``EmailDeliveryReportReceived``.
    """
    from azure.communication.email import EmailClient  # noqa: PLC0415 - the SDK only when an ACS channel sends
    from azure.core.exceptions import (  # noqa: PLC0415
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    plain = mail.get_body(("plain",))
    rich = mail.get_body(("html",))
    payload = {
        "senderAddress": config.sender,
        "recipients": {"to": [{"address": a} for a in config.to]},
        "content": {
            "subject": str(mail["Subject"]),
            "plainText": plain.get_content() if plain else "",
            "html": rich.get_content() if rich else "",
        },
        "headers": {"X-Mlreactor-Correlation-Id": str(mail["X-Mlreactor-Correlation-Id"])},
    }
    operation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mlreactor:{delivery_id}"))
    options: dict[str, Any] = {"retry_total": 0, "connection_timeout": transport.timeout,
                               "read_timeout": transport.timeout}
    if ca_file:
        options["connection_verify"] = ca_file
    try:
        client = EmailClient.from_connection_string(connection_string, **options)
        client.begin_send(payload, operation_id=operation_id, polling=False)
    except ValueError:
        raise PermanentError(f"channel {channel}: the ACS connection string is malformed") from None
    except HttpResponseError as exc:
        code = exc.status_code or 0
        error = TransientError if code in _TRANSIENT_STATUS or code >= 500 else PermanentError
        detail = exc.error.code if exc.error is not None else exc.reason
        raise error(f"channel {channel}: ACS answered HTTP {code} ({detail})") from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"channel {channel}: cannot reach ACS: {type(exc).__name__}") from None
    return f"ACS accepted operation {operation_id}"


def body_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
