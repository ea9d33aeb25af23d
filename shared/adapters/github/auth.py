"""GitHub credentials: a GitHub App first (JWT → installation token), a fine-grained token as the fallback.

The App (``MLREACTOR_GITHUB_APP_ID`` + ``MLREACTOR_GITHUB_APP_PRIVATE_KEY``, a Key Vault reference in Azure) signs a
JWT with its private key (RS256, issued 60 s in the past against clock drift, valid 9 min — GitHub allows 10), and
trades it for an installation token (``POST /app/installations/{id}/access_tokens``, GitHub's "Generating an
installation access token for a GitHub App"). The token lives one hour; it is kept per installation until five
minutes before ``expires_at``. The installation is a setting or, unset, looked up once per repository
(``GET /repos/{owner}/{repo}/installation``).

If the App cannot get a token (bad key, not installed: 401/403/404) and ``MLREACTOR_GITHUB_TOKEN`` is set, the
fine-grained token is used instead, with a warning. No key, JWT or token is ever logged or put in a message: errors
name the step and GitHub's message only, and PyJWT/cryptography errors are reduced to their type.

PyJWT (with cryptography, both already installed as azure-identity's dependencies) is imported on first use only.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Literal

from shared.adapters.github.http import GitHubHttp
from shared.adapters.releases.retry import Failure
from shared.clock import Clock
from shared.errors import PermanentError
from shared.settings import Settings

log = logging.getLogger("mlreactor.adapters.github")

_REFRESH_MARGIN = timedelta(minutes=5)
_APP_REFUSED = frozenset({401, 403, 404})

Used = Literal["github-app", "token"]


class GitHubAuth:
    """``header(repository)`` → the Authorization header for calls about that repository."""

    def __init__(self, settings: Settings, http: GitHubHttp, clock: Clock) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._app = bool(settings.github_app_id and settings.github_app_private_key)
        self._installations: dict[str, int] = {}
        self._tokens: dict[int, tuple[str, datetime]] = {}
        self._lock = threading.Lock()

    @property
    def used(self) -> Used:
        return "github-app" if self._app else "token"

    def header(self, repository: str) -> str:
        if self._app:
            try:
                return f"Bearer {self._installation_token(repository)}"
            except Failure as failure:
                if failure.status not in _APP_REFUSED or self._settings.github_token is None:
                    raise
                log.warning("the GitHub App got no installation token for %s (%s); using the fine-grained token",
                            repository, failure)
                self._app = False
        token = self._settings.github_token
        if token is None:
            raise PermanentError("GitHub: set MLREACTOR_GITHUB_APP_ID and MLREACTOR_GITHUB_APP_PRIVATE_KEY, or "
                                 "MLREACTOR_GITHUB_TOKEN")
        return f"Bearer {token.get_secret_value()}"

    def _installation_token(self, repository: str) -> str:
        with self._lock:
            installation = self._installation(repository)
            cached = self._tokens.get(installation)
            now = self._clock.now()
            if cached is not None and cached[1] - _REFRESH_MARGIN > now:
                return cached[0]
            answer = self._http.send("POST", f"/app/installations/{installation}/access_tokens",
                                     authorization=f"Bearer {self._jwt(now)}")
            token, expires = str(answer.body["token"]), _instant(answer.body.get("expires_at"), now)
            self._tokens[installation] = (token, expires)
            return token

    def _installation(self, repository: str) -> int:
        configured = self._settings.github_app_installation_id
        if configured is not None:
            return configured
        if repository not in self._installations:
            answer = self._http.send("GET", f"/repos/{repository}/installation",
                                     authorization=f"Bearer {self._jwt(self._clock.now())}")
            self._installations[repository] = int(answer.body["id"])
        return self._installations[repository]

    def _jwt(self, now: datetime) -> str:
        import jwt  # noqa: PLC0415 - cold start: only when the App needs a new token

        key = self._settings.github_app_private_key
        assert key is not None and self._settings.github_app_id
        # App settings often hold a PEM with its newlines escaped.
        pem = key.get_secret_value().replace("\\n", "\n")
        issued = int(now.timestamp()) - 60
        try:
            return jwt.encode({"iat": issued, "exp": issued + 600 - 60, "iss": self._settings.github_app_id},
                              pem, algorithm="RS256")
        except Exception as exc:  # a key that is no RSA PEM: cryptography/PyJWT errors, never their text
            raise PermanentError(f"MLREACTOR_GITHUB_APP_PRIVATE_KEY cannot sign the App's JWT ({type(exc).__name__})"
                                 ) from None

    def __repr__(self) -> str:
        return f"<GitHub credentials: {self.used}>"


def _instant(text: object, now: datetime) -> datetime:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return now + timedelta(minutes=55)
