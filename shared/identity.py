"""The app's Entra ID identity: one ``DefaultAzureCredential`` per process (per user-assigned client id), shared by
every client that authenticates with it — the ledger's tables and blobs, Azure ML, Azure DevOps, Event Grid.

Why one: ``DefaultAzureCredential`` walks its chain (environment, workload identity, managed identity, ...) on its
first token and remembers the link that answered (azure-identity's ``_successful_credential``); a second instance
walks it again and keeps a token cache of its own. Tokens stay per scope: each service has its own audience.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_lock = threading.Lock()
_made: dict[tuple[object, str | None], TokenCredential] = {}


def azure_credential(client_id: str | None) -> TokenCredential:
    """The process's credential for ``client_id`` (``MLREACTOR_MANAGED_IDENTITY_CLIENT_ID``; None: any identity it
    finds). azure-identity is imported on first use, off the cold start."""
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415

    key = (DefaultAzureCredential, client_id)  # the class too: a test that swaps it gets its own
    with _lock:
        if key not in _made:
            _made[key] = DefaultAzureCredential(managed_identity_client_id=client_id)
        return _made[key]
