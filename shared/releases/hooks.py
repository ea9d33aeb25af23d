"""The two hook endpoints' logic, free of ``azure.functions`` (``functions/release_hooks.py`` only maps it to HTTP).

Every request goes through the same gate, in this order — nothing is recorded before the sender is known::

    body larger than release_hook_max_bytes      → 413
    Azure DevOps: secret in X-Mlreactor-Hook-Secret, or as the basic-auth password (any user name)
    GitHub: X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(secret, raw body)
        missing, wrong, or no secret configured   → 401, nothing recorded
    not JSON                                      → quarantined with the reason, 200 (a retry would not fix it)
    not a release transition (ping, other events) → 200 ignored
    a transition                                  → intake.receive: acted / ignored / duplicate → 200, failed → 503

Secrets are compared with ``hmac.compare_digest`` (constant time) and never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from shared.engine import Engine
from shared.ledger.port import QuarantineRecord
from shared.outcomes import Outcome
from shared.releases import intake
from shared.releases.signals import Ignored, Signal, parse_azure_devops, parse_github
from shared.releases.tracking import organization_name
from shared.settings import Settings

log = logging.getLogger("mlreactor.releases.hooks")

#: The custom header an Azure DevOps Web Hooks subscription can send instead of basic auth.
SECRET_HEADER = "X-Mlreactor-Hook-Secret"  # noqa: S105 - a header name, not a secret


@dataclass(frozen=True)
class HookAnswer:
    status: int
    body: dict[str, Any]


def azure_devops_authorized(headers: Mapping[str, str], secret: SecretStr | None) -> bool:
    if secret is None:
        return False
    expected = secret.get_secret_value().encode()
    given = headers.get(SECRET_HEADER.lower())
    if given is not None:
        return hmac.compare_digest(given.encode(), expected)
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        _, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(password.encode(), expected)


def github_authorized(headers: Mapping[str, str], body: bytes, secret: SecretStr | None) -> bool:
    signature = headers.get("x-hub-signature-256", "")
    if secret is None or not signature.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature.encode(), expected.encode())


def azure_devops(engine: Engine, settings: Settings, headers: Mapping[str, str], body: bytes,
                 organization: str | None, now: datetime) -> HookAnswer:
    """``POST /api/hooks/azure-devops/{organization}``: one service-hooks notification."""
    lower = {k.lower(): v for k, v in headers.items()}
    refused = _gate(body, settings, lambda: azure_devops_authorized(lower, settings.release_hook_secret))
    if refused is not None:
        return refused
    payload = _json(engine, body, now, "azure-devops")
    if isinstance(payload, HookAnswer):
        return payload
    org = organization or (organization_name(settings.devops_organization_url)
                           if settings.devops_organization_url else "")
    if not org:
        return _answer(200, Outcome.IGNORED, "no organization in the hook URL and no MLREACTOR_DEVOPS_ORGANIZATION_URL")
    return _receive(engine, parse_azure_devops(payload, org), now)


def github(engine: Engine, settings: Settings, headers: Mapping[str, str], body: bytes, now: datetime) -> HookAnswer:
    """``POST /api/hooks/github``: one webhook delivery (``X-GitHub-Event``, ``X-GitHub-Delivery``)."""
    lower = {k.lower(): v for k, v in headers.items()}
    refused = _gate(body, settings, lambda: github_authorized(lower, body, settings.github_webhook_secret))
    if refused is not None:
        return refused
    payload = _json(engine, body, now, "github")
    if isinstance(payload, HookAnswer):
        return payload
    event = lower.get("x-github-event", "")
    return _receive(engine, parse_github(event, lower.get("x-github-delivery"), payload), now)


def _gate(body: bytes, settings: Settings, authorized: Callable[[], bool]) -> HookAnswer | None:
    if len(body) > settings.release_hook_max_bytes:
        return HookAnswer(413, {"error": f"body of {len(body)} bytes is over {settings.release_hook_max_bytes}"})
    if not authorized():
        log.warning("release hook refused: missing or wrong credentials")
        return HookAnswer(401, {"error": "missing or wrong credentials"})
    return None


def _json(engine: Engine, body: bytes, now: datetime, source: str) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        reason = f"{source} hook: the body is not JSON ({exc})"
        engine.ledger.quarantine(QuarantineRecord(now, None, None, reason, body.decode("utf-8", "replace")))
        log.warning("quarantined a %s hook body: %s", source, reason)
        return _answer(200, Outcome.QUARANTINED, reason)


def _receive(engine: Engine, signal: Signal | Ignored, now: datetime) -> HookAnswer:
    if isinstance(signal, Ignored):
        return _answer(200, Outcome.IGNORED, signal.reason)
    outcome = intake.receive(engine, signal, now, via="hook")
    status = 503 if outcome.outcome is Outcome.FAILED else 200
    return HookAnswer(status, outcome.as_dict())


def _answer(status: int, outcome: Outcome, reason: str) -> HookAnswer:
    return HookAnswer(status, {"outcome": outcome.value, "reason": reason})
