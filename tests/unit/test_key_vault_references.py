"""A Key Vault reference the platform could not resolve stays in the setting as its own text
(``@Microsoft.KeyVault(...)``): it is reported by name and never used as a PAT, URL or key."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest

from shared import runtime
from shared.settings import Settings, get_settings, is_key_vault_reference, unresolved_key_vault_references
from tests.conftest import ROOT, indexed

PAT_REF = "@Microsoft.KeyVault(VaultName=kv-mlr-abc;SecretName=devops-pat)"
TEAMS_REF = "@microsoft.keyvault(SecretUri=https://kv-mlr-abc.vault.azure.net/secrets/teams-ops-url/)"


@pytest.fixture
def unresolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MLREACTOR_DEVOPS_PAT", PAT_REF)
    monkeypatch.setenv("MLREACTOR_TEAMS_OPS_URL", TEAMS_REF)
    monkeypatch.setenv("MLREACTOR_DEVOPS_ORGANIZATION_URL", "https://dev.azure.com/contoso")
    monkeypatch.setenv("MLREACTOR_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "_engine", None)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_references_are_recognised_in_either_form_and_any_case() -> None:
    assert is_key_vault_reference(PAT_REF) and is_key_vault_reference(TEAMS_REF)
    assert is_key_vault_reference("  @MICROSOFT.KEYVAULT(VaultName=v;SecretName=s)")
    assert not is_key_vault_reference("pat-123") and not is_key_vault_reference("https://x/@Microsoft.KeyVault(")


def test_they_are_listed_by_name_only_sorted() -> None:
    environ = {"MLREACTOR_TEAMS_OPS_URL": TEAMS_REF, "MLREACTOR_DEVOPS_PAT": PAT_REF, "MLREACTOR_LEDGER": "tables"}
    assert unresolved_key_vault_references(environ) == ["MLREACTOR_DEVOPS_PAT", "MLREACTOR_TEAMS_OPS_URL"]


def test_an_unresolved_reference_reads_as_unset_never_as_the_credential(unresolved: None) -> None:
    settings = Settings()
    assert settings.devops_pat is None
    assert settings.secret("MLREACTOR_TEAMS_OPS_URL") is None  # a channel's url_setting
    assert settings.devops_organization_url == "https://dev.azure.com/contoso"


def test_health_names_them_and_is_unhealthy_without_showing_a_value(unresolved: None) -> None:
    request = func.HttpRequest(method="GET", url="http://localhost/api/health", body=b"")
    response = indexed()["health"].get_user_function()(request)
    body = response.get_body().decode()
    report = json.loads(body)
    assert response.status_code == 503 and report["status"] == "unhealthy"
    assert report["settings"] == {
        "unresolved_key_vault_references": ["MLREACTOR_DEVOPS_PAT", "MLREACTOR_TEAMS_OPS_URL"]
    }
    assert "kv-mlr-abc" not in body and "SecretName" not in body


def test_the_startup_log_names_each_one(unresolved: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="mlreactor.runtime"):
        runtime.engine()
    assert "app setting MLREACTOR_DEVOPS_PAT is an unresolved Key Vault reference and is not used" in caplog.text
    assert "MLREACTOR_TEAMS_OPS_URL" in caplog.text
    assert "kv-mlr-abc" not in caplog.text


def test_the_cli_names_them_on_stderr(unresolved: None) -> None:
    """In a process of its own, as a user runs it (the CLI's log lines go to stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "shared", "rules", "check", str(ROOT / "reactions.yaml")],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "mlreactor: ERROR: app setting MLREACTOR_DEVOPS_PAT is an unresolved Key Vault reference" in done.stderr
    assert "kv-mlr-abc" not in done.stderr + done.stdout
