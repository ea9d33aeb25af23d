"""Blob containers the CLI and the ledger read: by connection string, or by account URL with managed identity."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from shared.errors import ConfigError
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
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415 - only the CLI's redrive needs it

    if settings.storage_connection_string is not None:
        service = BlobServiceClient.from_connection_string(settings.storage_connection_string.get_secret_value())
    elif settings.storage_account_url:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415

        url = settings.storage_account_url.replace(".table.", ".blob.")
        credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
        service = BlobServiceClient(url, credential=credential)
    else:
        raise ConfigError(
            "no storage account: set MLREACTOR_STORAGE_CONNECTION_STRING or MLREACTOR_STORAGE_ACCOUNT_URL"
        )
    return BlobContainer(service.get_container_client(name))
