"""GitHub's REST API over the standard library (``urllib.request``): the cheapest client for a handful of calls.

Why not a library (measured, README "Releases to GitHub Actions"): ``urllib.request`` imports in ~6 ms; ``requests``
~55 ms, azure-core's pipeline ~40 ms, and PyGithub (not installed) adds ``requests``, PyJWT and its own object model
on top, fetches the repository and the workflow before it can dispatch (two more requests per release), retries on its
own, and its dispatch answers a bool — no run details. A release needs five documented routes; our retries must sit
after our idempotency check anyway.

Every answer is read whole; 4xx/5xx and dropped connections become a ``Failure`` classified for ``Retrier``:
429, and a 403 that is a rate limit (``retry-after``, or ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset``, or
GitHub's "secondary rate limit" message — GitHub's "Rate limits for the REST API" page: wait ``retry-after`` seconds,
else until ``x-ratelimit-reset``, else at least a minute) are *unprocessed* (safe to repeat). Messages carry GitHub's
``message`` only: never a header, so never a token.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared.adapters.releases.retry import Failure

API_VERSION = "2022-11-28"
_SECONDARY_WAIT = 60.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any


class GitHubHttp:
    """``send(method, path, authorization=...)`` against one API root (github.com or a GHES ``/api/v3``)."""

    def __init__(self, api_url: str, timeout: float, epoch: Callable[[], float]) -> None:
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._epoch = epoch
        # No proxies from the environment, no cookies: one plain HTTPS opener.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(
        self, method: str, path: str, *, authorization: str, body: Any = None, query: Mapping[str, Any] | None = None
    ) -> Answer:
        url = f"{self.api_url}{path}" + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "mlreactor", "Authorization": authorization,
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - https/loopback
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return Answer(response.status, _headers(response.headers), _json(response.read()))
        except urllib.error.HTTPError as error:
            answer = Answer(error.code, _headers(error.headers), _json(error.read()))
            raise self._failure(answer) from None
        except (urllib.error.URLError, OSError) as exc:  # reset, refused, timeout, TLS: no answer at all
            reason = getattr(exc, "reason", exc)
            raise Failure(None, f"{type(exc).__name__}: {reason}") from None

    def _failure(self, answer: Answer) -> Failure:
        message = _message(answer.body)
        headers = answer.headers
        retry_after = _number(headers.get("retry-after"))
        if answer.status == 429:
            return Failure(429, message, retry_after)
        if answer.status == 403:
            reset = _number(headers.get("x-ratelimit-reset"))
            if retry_after is not None:
                return Failure(403, message, retry_after, unprocessed=True)
            if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
                return Failure(403, message, max(0.0, reset - self._epoch()), unprocessed=True)
            if "secondary rate limit" in message.lower():
                return Failure(403, message, _SECONDARY_WAIT, unprocessed=True)
        return Failure(answer.status, message)


def _headers(raw: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (raw.items() if raw is not None else [])}


def _json(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"message": data[:200].decode("utf-8", errors="replace")}


def _message(body: Any) -> str:
    """GitHub's ``message`` (plus its ``errors``), on one line."""
    if not isinstance(body, Mapping):
        return "no message"
    text = str(body.get("message") or "no message")
    errors = body.get("errors")
    if errors:
        text += f" ({json.dumps(errors)[:300]})"
    return " ".join(text.split())[:500]


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
