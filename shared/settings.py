"""Every knob is an app setting, read once here (``MLREACTOR_*`` environment variables / Function App settings).

In Azure, secrets are Key Vault references in the app settings
(``@Microsoft.KeyVault(SecretUri=...)``); the platform resolves them into the environment before we read them. When
it cannot (no access, no such secret), it leaves the reference text itself in the setting: such a value is never
used (the setting reads as unset) and ``unresolved_key_vault_references()`` names it for health, the CLI and the
startup log. Nothing else in the code reads ``os.environ``. Each field is documented in the README's settings table
and in ``local.settings.sample.json``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.clock import parse_duration

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: What an app setting still holds when the platform could not resolve its Key Vault reference.
#: https://learn.microsoft.com/azure/app-service/app-service-key-vault-references ("If a reference isn't resolved
#: properly, the reference string is used instead")
KEY_VAULT_REFERENCE_PREFIX = "@microsoft.keyvault("


def is_key_vault_reference(value: object) -> bool:
    """Is this setting value an (unresolved) ``@Microsoft.KeyVault(...)`` reference? Case-insensitive."""
    return isinstance(value, str) and value.strip().lower().startswith(KEY_VAULT_REFERENCE_PREFIX)


def unresolved_key_vault_references(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names (never the values) of the app settings whose Key Vault reference did not resolve, sorted."""
    values = os.environ if environ is None else environ
    return sorted(name for name, value in values.items() if is_key_vault_reference(value))


def app_setting(name: str) -> str | None:
    """An app setting named at run time (by the rules file); unset, empty or an unresolved reference → None."""
    value = os.environ.get(name)
    return None if not value or is_key_vault_reference(value) else value


class Settings(BaseSettings):
    # Empty values mean "not set", so local.settings.sample.json can list every setting with "" for the unset ones.
    model_config = SettingsConfigDict(env_prefix="MLREACTOR_", extra="ignore", frozen=True, env_ignore_empty=True)

    # Rules and mode ------------------------------------------------------------------------------------------
    rules_path: Path = Field(default=PROJECT_ROOT / "reactions.yaml", description="The rules file.")
    dry_run: bool | None = Field(
        default=None,
        description="Force dry-run (true) or live (false). Unset: live only where the adapters' settings are given.",
    )
    subscribed_workspaces: str | None = Field(
        default=None,
        description="Comma-separated resource ids of the workspaces Event Grid delivers from (Bicep sets it from "
        "azureMlWorkspaceIds). The engine refuses to start if one of them is not in allowed_workspaces.",
    )

    # Ledger --------------------------------------------------------------------------------------------------
    ledger: Literal["sqlite", "tables"] = Field(default="sqlite", description="Where shared state lives.")
    state_dir: Path = Field(default=Path(".mlreactor"), description="Folder of the SQLite ledger.")
    storage_account_url: str | None = Field(
        default=None, description="https://ACCOUNT.table.core.windows.net — Tables ledger with managed identity."
    )
    storage_connection_string: SecretStr | None = Field(
        default=None, description="Tables ledger by connection string (Azurite: UseDevelopmentStorage=true)."
    )
    table_prefix: str = Field(default="mlreactor", description="Prefix of the ledger's table names.")
    quarantine_container: str = Field(default="mlreactor-quarantine", description="Blob container for raw payloads.")
    lease_seconds: float = Field(
        default=120.0, gt=0, description="How long a claim is held before another may take it."
    )
    retention_days: int = Field(
        default=90, gt=0, description="Ledger records older than this are purged (one pass a day)."
    )
    purge_budget_seconds: float = Field(
        default=240.0, gt=0, le=280,
        description="Time one hourly purge run may take (host functionTimeout: 300 s); the next run continues.",
    )

    # Execution -----------------------------------------------------------------------------------------------
    action_budget_seconds: float = Field(
        default=20.0, gt=0, description="Time one event's actions may take, inside Event Grid's 30 s window."
    )
    action_deadline_seconds: float = Field(
        default=30.0, gt=0,
        description="Most time one action may take, its requests, retries and waits included (each adapter cuts its "
        "own work inside it); an action starts only while the event's lease still covers this much.",
    )
    function_timeout_seconds: float = Field(
        default=300.0, gt=0, description="host.json's functionTimeout (the host kills an invocation after it)."
    )
    error_deliveries: int = Field(
        default=3, ge=1,
        description="Deliveries an unexpected (unclassified) error is retried for before the event is quarantined.",
    )

    # Azure identity ------------------------------------------------------------------------------------------
    managed_identity_client_id: str | None = Field(
        default=None, description="Client id of the user-assigned managed identity (AZURE_CLIENT_ID also works)."
    )

    # Azure ML ------------------------------------------------------------------------------------------------
    azureml_live: bool = Field(default=False, description="Call Azure ML for real (needs an identity with access).")
    azureml_retry_total: int = Field(default=3, ge=0, description="HTTP retries per Azure ML call.")
    azureml_timeout_seconds: float = Field(default=8.0, gt=0, description="Connect/read timeout per Azure ML call.")
    azureml_action_budget_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Most time one Azure ML action may spend on its requests, retries and Retry-After waits "
        "included; past it the action fails transiently and Event Grid redelivers the event.",
    )
    azureml_tag_settle_seconds: float = Field(
        default=0.5,
        ge=0,
        description="Wait before re-reading a model version whose read-back showed a concurrent writer replaced "
        "our tags (registry model versions are written whole, without a conditional write).",
    )
    azureml_max_concurrent_submissions: int = Field(
        default=4,
        ge=1,
        description="Azure ML writes (job PUTs, batch invocations, model PUTs) one instance sends at once; with "
        "maximumInstanceCount this bounds how many the fleet can have in flight against ARM's write bucket.",
    )
    azureml_fleet_instances: int = Field(
        default=1,
        ge=1,
        description="How many instances may submit at once (infra sets it to maximumInstanceCount): while ARM's "
        "write bucket is low each instance sends 1/N of its refill.",
    )
    azureml_throttle_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Longest wait for ARM's write budget (remaining-writes header, 429 Retry-After) inside one "
        "delivery; a longer one fails the event at once, naming the Retry-After, and Event Grid redelivers. Keep it "
        "above max_concurrent_submissions x fleet_instances / 10 s (a full instance's turn while the bucket is low).",
    )

    # Azure DevOps --------------------------------------------------------------------------------------------
    devops_organization_url: str | None = Field(default=None, description="https://dev.azure.com/ORG")
    devops_pat: SecretStr | None = Field(default=None, description="Fallback PAT (Key Vault reference in Azure).")
    devops_auth: Literal["auto", "entra", "pat"] = Field(
        default="auto",
        description="auto: Entra ID token (managed identity), the PAT only if no token can be had; entra; pat.",
    )
    devops_cache_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "mlreactor-azure-devops",
        description="AZURE_DEVOPS_CACHE_DIR for the SDK's location cache (it writes there at import time).",
    )
    devops_timeout_seconds: float = Field(default=8.0, gt=0, description="Connect/read timeout per Azure DevOps call.")
    devops_retry_attempts: int = Field(
        default=3, ge=0, description="Retries of a throttled (429) or failed (5xx, reset) Azure DevOps call."
    )
    devops_retry_budget_seconds: float = Field(
        default=12.0, gt=0,
        description="Most time one release may take, its idempotency lookup, retries and waits included: no request "
        "starts after it (each request is also bounded by MLREACTOR_DEVOPS_TIMEOUT_SECONDS).",
    )
    devops_lookup_hours: float = Field(
        default=26.0, gt=0,
        description="How far back a resumed release looks for a run/release an earlier attempt created "
        "(Event Grid redelivers for up to 24 h).",
    )

    # Release signals in (shared/releases/) --------------------------------------------------------------------
    release_hook_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret of the Azure DevOps service hooks: the basic-auth password or the "
        "X-Mlreactor-Hook-Secret header (Key Vault reference in Azure). Unset: every Azure DevOps hook gets 401.",
    )
    github_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret of the GitHub webhook (X-Hub-Signature-256 HMAC). Unset: every GitHub hook gets 401.",
    )
    release_hook_max_bytes: int = Field(
        default=1_048_576, gt=0, description="Largest hook body accepted; a larger one is answered 413."
    )
    release_reconcile_max: int = Field(
        default=50, gt=0, description="Releases the reconciler reads per run (one GET each), least recently first."
    )
    release_reminder_after: timedelta = Field(
        default=timedelta(hours=48),
        description="A release still waiting for approval this long gets a reminder, and one more each time "
        "this much longer passes.",
    )

    # Release gates (every target) ---------------------------------------------------------------------------
    release_gate_cache_seconds: float = Field(
        default=600.0, ge=0,
        description="How long a verified approval gate is trusted before it is read again (a missing one never is).",
    )

    # GitHub Actions ------------------------------------------------------------------------------------------
    github_api_url: str = Field(
        default="https://api.github.com", description="GitHub's REST API; GitHub Enterprise Server: https://HOST/api/v3."
    )
    github_app_id: str | None = Field(default=None, description="GitHub App id (or client id): the JWT's issuer.")
    github_app_private_key: SecretStr | None = Field(
        default=None, description="The App's private key, PEM (Key Vault reference in Azure)."
    )
    github_app_installation_id: int | None = Field(
        default=None, description="The App's installation id; unset: looked up per repository (one request)."
    )
    github_token: SecretStr | None = Field(
        default=None, description="Fallback fine-grained token (Actions: read and write; Metadata: read)."
    )
    github_timeout_seconds: float = Field(default=8.0, gt=0, description="Connect/read timeout per GitHub call.")
    github_retry_attempts: int = Field(
        default=3, ge=0, description="Retries of a rate-limited (429, 403) or failed (5xx, reset) GitHub call."
    )
    github_retry_budget_seconds: float = Field(
        default=12.0, gt=0, description="Time one dispatch may spend waiting between retries (Event Grid: 30 s)."
    )
    github_run_settle_seconds: float = Field(
        default=4.0, ge=0,
        description="How long a dispatch whose answer was lost (or had no run details) waits for its run to be "
        "listed before concluding there is none.",
    )
    github_lookup_hours: float = Field(
        default=26.0, gt=0, description="How far back the runs list is searched for an earlier dispatch's run."
    )

    # Notifications and events out ----------------------------------------------------------------------------
    allow_http_webhooks: bool = Field(
        default=False, description="Tests only: accept http:// webhook URLs on loopback addresses."
    )
    notify_live: bool = Field(
        default=False, description="Send notifications for real (Teams, Slack, e-mail, webhooks); else dry-run."
    )
    notify_timeout_seconds: float = Field(
        default=5.0, gt=0,
        description="Most time one notification send may take, connect, TLS, request and answer together (a "
        "receiver that drips its answer is cut).",
    )
    notify_retries: int = Field(
        default=1, ge=0, le=3, description="In-process retries of a transient channel failure, per delivery."
    )
    notify_max_attempts: int = Field(
        default=8, ge=1,
        description="Deliveries a channel may fail transiently before it is recorded as failed "
        "(8 ≈ 1 h 50 min on Event Grid's retry schedule).",
    )
    notify_state_window: timedelta = Field(
        default=timedelta(hours=24),
        description="A run (or model) is notified once per state within this window (flapping).",
    )
    notify_templates_dir: Path | None = Field(
        default=None, description="Folder of <message-kind>.yaml files overriding the built-in message layouts."
    )
    notify_ca_file: Path | None = Field(
        default=None, description="Extra CA bundle (PEM) to trust for SMTP/ACS/webhooks (private CAs, tests)."
    )
    eventgrid_topic_endpoint: str | None = Field(default=None, description="Custom topic for publish_event.")
    eventgrid_topic_key: SecretStr | None = Field(default=None, description="Topic key; unset = managed identity.")

    # Operators' views -----------------------------------------------------------------------------------------
    chain_stall_after: timedelta = Field(
        default=timedelta(hours=24),
        description="A chain with no event for longer than this (and not waiting for an approval) is shown as "
        "stalled (Event Grid stops redelivering after 24 h).",
    )

    # Telemetry -----------------------------------------------------------------------------------------------
    log_level: str = Field(default="INFO", description="Python log level of the mlreactor loggers.")
    applicationinsights_connection_string: SecretStr | None = Field(
        default=None,
        validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING",
        description="Application Insights: traces, metrics and logs through OpenTelemetry; unset = telemetry off.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unresolved_references(cls, values: Any) -> Any:
        """An unresolved Key Vault reference is never a PAT, URL or key: the setting reads as unset."""
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if not is_key_vault_reference(v)}
        return values

    @field_validator("notify_state_window", "release_reminder_after", "chain_stall_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return parse_duration(value)

    @model_validator(mode="after")
    def _lease_outlasts_the_work(self) -> Settings:
        """``action deadline < lease < functionTimeout``: a live instance's claim must not run out while it works,
        or another instance would act too. One action may start just before the budget ends and take up to its
        deadline; each adapter's own budget fits inside that deadline; the host's kill is the final bound."""
        problems = []
        if self.lease_seconds <= self.action_budget_seconds + self.action_deadline_seconds:
            problems.append(
                f"MLREACTOR_LEASE_SECONDS ({self.lease_seconds:g}) must be more than MLREACTOR_ACTION_BUDGET_SECONDS "
                f"({self.action_budget_seconds:g}) + MLREACTOR_ACTION_DEADLINE_SECONDS "
                f"({self.action_deadline_seconds:g})"
            )
        if self.lease_seconds >= self.function_timeout_seconds:
            problems.append(
                f"MLREACTOR_LEASE_SECONDS ({self.lease_seconds:g}) must be less than "
                f"MLREACTOR_FUNCTION_TIMEOUT_SECONDS ({self.function_timeout_seconds:g}, host.json functionTimeout)"
            )
        for name, value in (
            ("MLREACTOR_AZUREML_ACTION_BUDGET_SECONDS", self.azureml_action_budget_seconds),
            ("MLREACTOR_DEVOPS_RETRY_BUDGET_SECONDS", self.devops_retry_budget_seconds),
            ("MLREACTOR_NOTIFY_TIMEOUT_SECONDS", self.notify_timeout_seconds),
        ):
            if value > self.action_deadline_seconds:
                problems.append(
                    f"{name} ({value:g}) must be at most MLREACTOR_ACTION_DEADLINE_SECONDS "
                    f"({self.action_deadline_seconds:g})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secret(self, name: str) -> SecretStr | None:
        """A secret named by the rules file (e.g. a channel's ``url_setting``), read from the app settings.

        Rules name settings rather than hold secrets, so the rules file can be committed.
        """
        value = app_setting(name)
        return SecretStr(value) if value else None

    @property
    def github_is_configured(self) -> bool:
        """A GitHub App (id and key) or a fine-grained token is set."""
        return bool(self.github_app_id and self.github_app_private_key) or self.github_token is not None

    @property
    def subscribed_workspace_ids(self) -> list[str]:
        """``subscribed_workspaces`` as a list (empty when unset: locally nothing is subscribed)."""
        return [ws.strip() for ws in (self.subscribed_workspaces or "").split(",") if ws.strip()]

    @property
    def azureml_is_live(self) -> bool:
        """Azure ML is called for real when asked for (``azureml_live``) or all is forced live; else dry-run."""
        return self.dry_run is False or (self.dry_run is None and self.azureml_live)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (the Functions host sets app settings before import)."""
    return Settings()
