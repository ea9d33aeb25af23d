"""One list of workspaces: the rules allow what Bicep subscribes, and a mismatch stops the engine with a clear error."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest

from shared import runtime
from shared.errors import ConfigError, RulesError
from shared.ops.cli import main
from shared.reactions import load_rules, read_rules
from shared.settings import Settings, get_settings
from tests.conftest import ROOT, WORKSPACE, indexed

OTHER = WORKSPACE.replace("mlw-prod", "mlw-staging")
FROM_SETTING = "allowed_workspaces: {from_setting: MLREACTOR_SUBSCRIBED_WORKSPACES}\nrules: []\n"


@pytest.fixture
def fresh_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app as it starts in a new worker: no engine yet, settings read afresh."""
    monkeypatch.setenv("MLREACTOR_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "_engine", None)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def literal_rules(tmp_path: Path, *workspaces: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(f"allowed_workspaces: [{', '.join(workspaces)}]\nrules: []\n")
    return path


def health() -> tuple[int, dict[str, object]]:
    request = func.HttpRequest(method="GET", url="http://localhost/api/health", body=b"")
    response = indexed()["health"].get_user_function()(request)
    return response.status_code, json.loads(response.get_body())


def test_the_shipped_rules_allow_exactly_the_subscribed_workspaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLREACTOR_SUBSCRIBED_WORKSPACES", f"{WORKSPACE},{OTHER}")
    assert load_rules(ROOT / "reactions.yaml").spec.allowed_workspaces == [WORKSPACE, OTHER]


def test_from_setting_with_the_setting_unset_is_a_rules_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLREACTOR_SUBSCRIBED_WORKSPACES")
    with pytest.raises(RulesError) as caught:
        read_rules(FROM_SETTING, "rules.yaml")
    assert "from_setting MLREACTOR_SUBSCRIBED_WORKSPACES: the app setting is not set" in str(caught.value)


def test_from_setting_ids_are_validated_like_listed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLREACTOR_SUBSCRIBED_WORKSPACES", f"{WORKSPACE},mlw-prod")
    with pytest.raises(RulesError, match="'mlw-prod' is not a workspace resource id"):
        read_rules(FROM_SETTING, "rules.yaml")


def test_only_from_setting_is_accepted_as_a_mapping() -> None:
    with pytest.raises(RulesError, match=r"or \{from_setting: SETTING_NAME\}"):
        read_rules("allowed_workspaces: {from_env: X}\nrules: []\n", "rules.yaml")


def test_the_engine_refuses_to_start_when_a_subscribed_workspace_is_not_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_app: None
) -> None:
    monkeypatch.setenv("MLREACTOR_RULES_PATH", str(literal_rules(tmp_path, WORKSPACE)))
    monkeypatch.setenv("MLREACTOR_SUBSCRIBED_WORKSPACES", f"{WORKSPACE},{OTHER}")
    with pytest.raises(ConfigError, match="mlw-staging") as caught:
        runtime.build_engine(Settings())
    assert "would be rejected" in str(caught.value)
    status, report = health()
    assert status == 503 and report["status"] == "unhealthy"
    assert report["workspaces"] == {"subscribed": 2, "subscribed_not_allowed": [OTHER], "allowed_not_subscribed": []}
    assert "mlw-staging" in str(report["error"])


def test_the_cli_refuses_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fresh_app: None
) -> None:
    rules = literal_rules(tmp_path, WORKSPACE)
    monkeypatch.setenv("MLREACTOR_SUBSCRIBED_WORKSPACES", OTHER)
    assert main(["rules", "check", str(rules)]) == 1
    assert "mlw-staging" in capsys.readouterr().err
    sample = str(ROOT / "tests" / "events" / "eventgrid" / "model_registered.json")
    assert main(["replay", "--config", str(rules), "--state", str(tmp_path), sample]) == 2
    assert "mlreactor: error: MLREACTOR_SUBSCRIBED_WORKSPACES names workspace(s)" in capsys.readouterr().err


def test_an_allowed_workspace_nothing_subscribes_is_reported_but_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_app: None
) -> None:
    monkeypatch.setenv("MLREACTOR_RULES_PATH", str(literal_rules(tmp_path, WORKSPACE, OTHER)))
    monkeypatch.setenv("MLREACTOR_SUBSCRIBED_WORKSPACES", WORKSPACE)
    with caplog.at_level(logging.WARNING, logger="mlreactor.runtime"):
        runtime.engine()
    assert f"allowed workspace {OTHER} is not in MLREACTOR_SUBSCRIBED_WORKSPACES" in caplog.text
    status, report = health()
    assert status == 200, report
    assert report["workspaces"] == {"subscribed": 1, "subscribed_not_allowed": [], "allowed_not_subscribed": [OTHER]}


def test_nothing_subscribed_locally_is_nothing_to_compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_app: None
) -> None:
    monkeypatch.setenv("MLREACTOR_RULES_PATH", str(literal_rules(tmp_path, OTHER)))
    monkeypatch.delenv("MLREACTOR_SUBSCRIBED_WORKSPACES")
    runtime.build_engine(Settings()).ledger.close()


def test_topics_compare_case_insensitively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_app: None) -> None:
    monkeypatch.setenv("MLREACTOR_RULES_PATH", str(literal_rules(tmp_path, WORKSPACE)))
    monkeypatch.setenv("MLREACTOR_SUBSCRIBED_WORKSPACES", WORKSPACE.upper())
    runtime.build_engine(Settings()).ledger.close()
