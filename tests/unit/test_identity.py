"""One Entra ID credential per process: every client that authenticates with the managed identity gets the same
``DefaultAzureCredential``, so its chain is walked once (no token is fetched here: that would call the instance
metadata endpoint; the object's identity is the claim)."""

from __future__ import annotations

from azure.identity import DefaultAzureCredential

from shared.adapters.azureml.clients import CachingCredential, WorkspaceClients
from shared.adapters.devops.auth import DevOpsAuth
from shared.adapters.eventgrid_out import EventGridPublisher
from shared.identity import azure_credential
from shared.settings import Settings
from shared.storage import blob_service

CLIENT_ID = "3f2b1c9e-0000-4000-8000-00000000abcd"


def test_the_ledgers_storage_azure_ml_azure_devops_and_event_grid_share_one_credential() -> None:
    settings = Settings(
        managed_identity_client_id=CLIENT_ID, storage_account_url="https://stmlreactor.table.core.windows.net",
        eventgrid_topic_endpoint="https://t.westeurope-1.eventgrid.azure.net/api/events", devops_auth="entra",
    )
    shared = azure_credential(CLIENT_ID)
    assert isinstance(shared, DefaultAzureCredential)

    assert blob_service(settings).credential is shared
    azure_ml = WorkspaceClients(settings)._credential_for_clients()
    assert isinstance(azure_ml, CachingCredential) and azure_ml._inner is shared
    assert DevOpsAuth(settings, None)._entra() is shared
    assert EventGridPublisher(settings)._new_credential() is shared


def test_another_user_assigned_identity_gets_a_credential_of_its_own() -> None:
    assert azure_credential(CLIENT_ID) is azure_credential(CLIENT_ID)
    assert azure_credential(None) is not azure_credential(CLIENT_ID)
