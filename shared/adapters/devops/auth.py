"""Azure DevOps credentials for msrest: an Entra ID token first (managed identity), the PAT as the fallback.

``MLREACTOR_DEVOPS_AUTH``:

* ``entra`` — only the Entra ID token for Azure DevOps' resource id, from ``DefaultAzureCredential``, refreshed five
  minutes before it expires;
* ``pat`` — only ``MLREACTOR_DEVOPS_PAT``;
* ``auto`` (default) — the token; the PAT when no token can be had, **or when Azure DevOps refuses the token**: a 401
  or a 203 with an HTML sign-in page (how Azure DevOps answers credentials it does not recognise:
  MicrosoftDocs/vsts-rest-api-specs#97, #574; which of the two an identity that was never added to the organization
  gets is not documented, so both count) is retried once with the PAT, and the PAT is used from then on in this
  process (a warning says so once; the audit names the credential each release used).

Neither the token nor the PAT is ever logged or put in a message: the SDK only sees this object, which sets the
header, and its ``repr`` names the mode only.
"""

from __future__ import annotations

import base64
import logging
import threading
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from shared.errors import PermanentError, TransientError
from shared.identity import azure_credential
from shared.settings import Settings

log = logging.getLogger("mlreactor.adapters.devops")

#: The Azure DevOps resource (application id) whose token Entra ID issues for the REST API.
DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
_REFRESH_MARGIN = timedelta(minutes=5)
#: Azure DevOps' answers to a credential it does not accept: a bare 401, or 203 with a sign-in page.
REFUSED = frozenset({401, 203})

Used = Literal["entra", "pat"]


class TokenCredential(Protocol):
    """What azure-identity credentials offer (``get_token(scope).token`` / ``.expires_on``)."""

    def get_token(self, *scopes: str) -> Any: ...


class DevOpsAuth:
    """The msrest credentials object: sets the Authorization header and records each response's status.

    msrest calls ``signed_session`` before every request, on every client (including the SDK's internal location
    client), so the status of the last response is known here even though the SDK's exceptions drop it.
    """

    def __init__(self, settings: Settings, credential: TokenCredential | None) -> None:
        self._settings = settings
        self._credential = credential
        self._mode = settings.devops_auth
        self._token: Any = None
        self._header = ""
        self._lock = threading.Lock()
        self._last = threading.local()

    @property
    def used(self) -> Used:
        """Which credential the requests carry now."""
        return "pat" if self._mode == "pat" else "entra"

    # credentials ----------------------------------------------------------------------------------------------
    def prepare(self, now: datetime) -> None:
        """Have a header that stays valid for this call: refresh the token five minutes before it expires."""
        with self._lock:
            if self._mode == "pat":
                self._header = self._pat_header()
                return
            if self._token is not None and self._token.expires_on - _REFRESH_MARGIN.total_seconds() > now.timestamp():
                return
            try:
                self._token = self._entra().get_token(DEVOPS_SCOPE)
            except Exception as exc:  # azure.core ClientAuthenticationError and friends; azure-core is lazy here
                if self._can_fall_back():
                    log.warning("no Entra ID token for Azure DevOps (%s); using the PAT fallback", type(exc).__name__)
                    self._use_pat()
                    return
                unavailable = type(exc).__name__ == "CredentialUnavailableError"
                error = PermanentError if unavailable else TransientError
                raise error(f"cannot get an Entra ID token for Azure DevOps: {type(exc).__name__}") from None
            self._header = f"Bearer {self._token.token}"

    def refused(self, status: int | None) -> bool:
        """After Azure DevOps refused the Entra token (401/203): switch to the PAT if ``auto`` allows; True if so."""
        with self._lock:
            if status not in REFUSED or self._mode == "pat" or not self._can_fall_back():
                return False
            log.warning(
                "Azure DevOps refused the managed identity's token (HTTP %s): is the identity a member of the "
                "organization with an access level? Using the PAT fallback from now on (README, 'Azure DevOps "
                "onboarding')", status,
            )
            self._use_pat()
            return True

    def _can_fall_back(self) -> bool:
        return self._mode == "auto" and self._settings.devops_pat is not None

    def _use_pat(self) -> None:
        self._mode = "pat"
        self._header = self._pat_header()

    def _entra(self) -> TokenCredential:
        if self._credential is None:
            self._credential = azure_credential(self._settings.managed_identity_client_id)
        return self._credential

    def _pat_header(self) -> str:
        pat = self._settings.devops_pat
        if pat is None:
            raise PermanentError("MLREACTOR_DEVOPS_AUTH is 'pat' but MLREACTOR_DEVOPS_PAT is not set")
        return "Basic " + base64.b64encode(f":{pat.get_secret_value()}".encode()).decode()

    def signed_session(self, session: Any) -> Any:
        """Called by msrest before every request: a fresh start for the wire facts of this one request."""
        self._last.status = None
        self._last.retry_after = None
        session.headers["Authorization"] = self._header
        session.hooks["response"] = [self._record]
        return session

    def refresh_session(self, session: Any) -> Any:
        return self.signed_session(session)

    def __repr__(self) -> str:
        return f"<Azure DevOps credentials: {self._mode}>"

    # wire facts -----------------------------------------------------------------------------------------------
    def _record(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._last.status = response.status_code
        self._last.retry_after = response.headers.get("Retry-After")

    def last(self) -> tuple[int | None, float | None]:
        """Status and ``Retry-After`` of the last request this thread sent (None, None: no response at all)."""
        status = getattr(self._last, "status", None)
        raw = getattr(self._last, "retry_after", None)
        try:
            retry_after = float(raw) if raw is not None else None
        except ValueError:  # an HTTP date: not sent by Azure DevOps, treated as "no hint"
            retry_after = None
        return status, retry_after
