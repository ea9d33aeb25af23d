"""Every setting is documented: in the README's settings table and in local.settings.sample.json."""

from __future__ import annotations

import json

import pytest

from shared.settings import Settings
from tests.conftest import ROOT

NAMES = [
    field.validation_alias if isinstance(field.validation_alias, str) else f"MLREACTOR_{name.upper()}"
    for name, field in Settings.model_fields.items()
]


@pytest.mark.parametrize("name", NAMES)
def test_every_setting_is_in_the_readme_table(name: str) -> None:
    assert f"| `{name}` |" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_every_setting_is_in_the_sample_local_settings(name: str) -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert name in values


def test_the_sample_local_settings_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.dry_run is True and settings.ledger == "sqlite"


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLREACTOR_DRY_RUN", "")
    monkeypatch.setenv("MLREACTOR_DEVOPS_ORGANIZATION_URL", "")
    settings = Settings()
    assert settings.dry_run is None and settings.devops_organization_url is None


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLREACTOR_DEVOPS_PAT", "pat-very-secret-123")
    assert "pat-very-secret-123" not in repr(Settings())
