"""Blob containers the CLI and the ledger read: by connection string, or by account URL with managed identity."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.errors import ConfigError
from shared.identity import azure_credential
from shared.settings import Settings


class BlobContainer:
    """A container's blob names (optionally modified since a time) and bytes, through azure-storage-blob."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def names(self, since: datetime | None) -> Iterator[str]:
        for blob in self._client.list_blobs():
            if since is None or blob.last_modified >= since:
                yield blob.name

    def read(self, name: str) -> bytes:
        data: bytes = self._client.download_blob(name).readall()
        return data


def blob_container(settings: Settings, name: str) -> BlobContainer:
    """The named container in the configured storage account (imported only when used)."""
    return BlobContainer(blob_service(settings).get_container_client(name))


def blob_service(settings: Settings, **options: Any) -> Any:
    """The storage account's blob service: by connection string, or by account URL with the process's managed
    identity (``shared.identity``). ``options`` reach the SDK client (retries, timeouts, hooks)."""
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415 - only redrive and the Tables ledger need it

    if settings.storage_connection_string is not None:
        secret = settings.storage_connection_string.get_secret_value()
        return BlobServiceClient.from_connection_string(secret, **options)
    if settings.storage_account_url:
        return BlobServiceClient(
            blob_url(settings.storage_account_url),
            credential=azure_credential(settings.managed_identity_client_id), **options,
        )
    raise ConfigError("no storage account: set MLREACTOR_STORAGE_CONNECTION_STRING or MLREACTOR_STORAGE_ACCOUNT_URL")


def blob_url(table_url: str) -> str:
    """``https://acct.table.core.windows.net`` → ``https://acct.blob.core.windows.net`` (any Azure cloud)."""
    parts = urlsplit(table_url)
    if ".table." not in (parts.hostname or ""):
        raise ConfigError(
            f"MLREACTOR_STORAGE_ACCOUNT_URL={table_url!r}: expected https://ACCOUNT.table.<cloud suffix>"
        )
    return urlunsplit((parts.scheme, parts.netloc.replace(".table.", ".blob.", 1), "", "", ""))
