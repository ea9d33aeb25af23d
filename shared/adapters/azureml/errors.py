"""Turn what azure-ai-ml / azure-core raise into the two errors the engine reasons about.

Transient (retried in-process by azure-core, then redelivered by Event Grid): 408, 429, 5xx, timeouts, connection
errors. Permanent (quarantined for a person): 400, 401, 403, 404 and the SDK's own validation errors. The message
names the workspace, the asset and what the service said — never a token or a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from shared.errors import MlreactorError, PermanentError, TransientError
from shared.events import Registry, Workspace

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_SAID = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the SDK colours its own messages for terminals


def describe(target: Workspace | Registry) -> str:
    if isinstance(target, Registry):
        return f"registry {target.name}"
    return f"workspace {target.name} (resource group {target.resource_group})"


def classify(exc: BaseException, workspace: Workspace | Registry, what: str) -> MlreactorError:
    """The engine-level error for ``exc`` raised while doing ``what`` (e.g. ``"PUT job mlreactor-x"``)."""
    from azure.ai.ml.exceptions import MlException  # noqa: PLC0415 - the SDK loads on first use
    from azure.core.exceptions import (  # noqa: PLC0415 - the SDK loads on first use
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    where = f"Azure ML {describe(workspace)}: {what}"
    if isinstance(exc, MlException):
        message = said(exc.message or str(exc))
        # batch_endpoints.invoke gives up on connection errors with a bare MlException (no status, no cause).
        if "Max retry attempts reached" in message:
            return TransientError(f"{where}: cannot reach the service: {message}")
        return PermanentError(f"{where}: rejected by the SDK: {message}")
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        return PermanentError(f"{where}: cannot get a token for the managed identity: {said(exc.message)}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        code = exc.error.code if exc.error is not None and exc.error.code else exc.reason
        message = said(exc.error.message if exc.error is not None and exc.error.message else exc.message)
        detail = f"{where}: HTTP {status} {code}: {message}"
        headers = getattr(exc.response, "headers", None) or {}
        retry_after = headers.get("Retry-After")
        if retry_after:  # ARM's throttling (429): the reason says when the service would take the write
            detail += f" (Retry-After {retry_after} s)"
        if status is None or status in TRANSIENT_STATUS:
            return TransientError(detail)
        return PermanentError(detail)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"{where}: no answer in time ({type(exc).__name__}): {said(str(exc))}")
    return PermanentError(f"{where}: {type(exc).__name__}: {said(str(exc))}")


@contextmanager
def calling(workspace: Workspace | Registry, what: str) -> Iterator[None]:
    """Run SDK calls; anything Azure raises leaves as ``TransientError`` or ``PermanentError`` (``from`` the cause)."""
    from azure.core.exceptions import AzureError  # noqa: PLC0415 - the SDK loads on first use

    try:
        yield
    except MlreactorError:
        raise
    except AzureError as exc:
        raise classify(exc, workspace, what) from exc


def said(text: object) -> str:
    """What the service said: one line, no terminal colours, bounded (messages can carry whole request bodies)."""
    flat = " ".join(_ANSI.sub("", str(text or "")).split())
    return flat if len(flat) <= _MAX_SAID else flat[: _MAX_SAID - 3] + "..."
