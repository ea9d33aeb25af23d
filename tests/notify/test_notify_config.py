"""Channels and notify parameters are validated when the rules file loads, naming the bad field and never echoing a
pasted secret; message layouts can be overridden from a templates folder; the live adapter is wired by settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind, NotifyParams, PlannedAction
from shared.adapters import build_adapters, describe
from shared.adapters.notify.messages import LAYOUTS, compose, load_layouts
from shared.channels import EmailChannel, SlackChannel, TeamsChannel
from shared.errors import ConfigError, RulesError
from shared.ledger.sqlite import SqliteLedger
from shared.reactions import load_rules, parse_rules
from shared.settings import Settings
from tests.notify.conftest import WORKSPACE, event

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET_URL = "https://prod-01.westeurope.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sig=TOPSECRET"


def load(channels: dict[str, Any], notify: dict[str, Any] | None = None) -> Any:
    rules = [{"name": "r", "on": "RunStatusChanged", "do": [{"notify": notify or {"channels": list(channels)}}]}]
    return parse_rules({"allowed_workspaces": [WORKSPACE], "channels": channels, "rules": rules}, "rules.yaml")


def errors_of(channels: dict[str, Any], notify: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load(channels, notify)
    return caught.value.errors


def test_the_shipped_rules_declare_typed_channels() -> None:
    channels = load_rules(ROOT / "reactions.yaml").spec.channels
    assert isinstance(channels["ops-teams"], TeamsChannel) and isinstance(channels["ops-slack"], SlackChannel)


def test_given_a_typo_in_a_channel_field_then_loading_fails_naming_the_field() -> None:
    errors = errors_of({"ops": {"type": "teams", "url_seting": "MLREACTOR_X"}})
    assert sorted(errors) == ["channels.ops.teams.url_seting: unknown field",
                              "channels.ops.teams.url_setting: is required"]


def test_given_a_pasted_webhook_url_instead_of_a_setting_name_then_the_error_never_echoes_it() -> None:
    errors = errors_of({"ops": {"type": "teams", "url_setting": SECRET_URL}})
    assert errors == ["channels.ops.teams.url_setting: must be the NAME of an app setting "
                      "(e.g. MLREACTOR_TEAMS_OPS_URL), not the secret itself"]
    assert "TOPSECRET" not in " ".join(errors)


def test_given_an_email_channel_then_addresses_and_recipients_are_checked() -> None:
    errors = errors_of({"mail": {"type": "email", "smtp_host": "smtp.contoso.com", "sender": "not-an-address"}})
    assert any("channels.mail.email.sender: 'not-an-address' is not an e-mail address" in e for e in errors)
    assert any("channels.mail.email.to: is required" in e for e in errors)
    channel = load({"mail": {"type": "email", "smtp_host": "smtp.contoso.com", "sender": "a@contoso.com",
                             "to": ["b@contoso.com"]}}).spec.channels["mail"]
    assert isinstance(channel, EmailChannel) and channel.smtp_port == 587 and channel.security == "starttls"


def test_given_an_unknown_channel_type_then_loading_fails_listing_the_types() -> None:
    (error,) = errors_of({"ops": {"type": "pager", "url_setting": "X"}})
    assert "channels.ops" in error and "'teams', 'slack', 'webhook', 'email', 'acs_email'" in error


def test_given_bad_notify_parameters_then_loading_fails_naming_them() -> None:
    channels = {"ops": {"type": "slack", "url_setting": "MLREACTOR_SLACK"}}
    errors = errors_of(channels, {"channels": "ops", "message": "run_faild", "throttle_window": "ten minutes"})
    joined = "\n".join(errors)
    assert "do[0].notify.message" in joined and "'run_failed'" in joined
    assert "do[0].notify.throttle_window" in joined and "is not a duration" in joined
    assert "unknown channel 'opz'" in "\n".join(errors_of(channels, {"channels": "opz"}))


def planned(kind: str, **params: Any) -> PlannedAction:
    the_event = event("run_status_changed_failed", runTags={"owner": "data-science", "link": "javascript:alert(1)"})
    return PlannedAction(
        key="k" * 64, rule="r", index=0, kind=ActionKind.NOTIFY,
        params=NotifyParams(channels=["ops"], message=kind, **params), event=the_event,
        correlation_id=the_event.correlation_id,
    )


def test_given_a_templates_folder_then_its_layout_overrides_the_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "run_failed.yaml").write_text(
        'title: "{{ run.status | upper }} in {{ run.experiment_name }}"\n'
        'facts: {Owner: "{{ run.tags.owner }}", Type: "", Team: "{{ run.tags.team }}"}\n'
    )
    layouts = load_layouts(tmp_path)

    message = compose(planned("run_failed"), layouts["run_failed"])

    assert message.title == "FAILED in automl-local-regression"
    facts = dict(message.facts)
    assert facts["Owner"] == "data-science"  # added
    assert "Type" not in facts and "Team" not in facts  # removed; a missing value drops the fact
    assert facts["Experiment"] == "automl-local-regression"  # kept from the built-in layout
    assert layouts["drift_detected"] is LAYOUTS["drift_detected"]


def test_given_a_broken_template_override_then_the_adapter_refuses_to_start_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "run_failed.yaml").write_text('title: "{{ run.id | shout }}"\n')
    with pytest.raises(ConfigError, match=r"TEMPLATES_DIR: .*run_failed.yaml: unknown filter 'shout'"):
        load_layouts(tmp_path)


def test_given_rule_overrides_and_a_non_https_link_then_the_rule_wins_and_the_link_is_dropped() -> None:
    action = planned("run_failed", title="Custom\ntitle", text="Custom text", facts={"Ticket": "OPS-1"},
                     links={"Runbook": "https://wiki.contoso.com/runbooks/failed-runs", "Bad": "javascript:alert(1)"})

    message = compose(action, LAYOUTS["run_failed"])

    assert (message.title, message.text) == ("Custom title", "Custom text")  # titles are one line (mail subjects)
    assert dict(message.facts)["Ticket"] == "OPS-1"
    assert [link.label for link in message.links] == ["Runbook", "Open run in Azure ML studio"]


def test_given_notify_live_then_the_live_notify_adapter_is_wired_unless_dry_run_is_forced(tmp_path: Path) -> None:
    rules = load_rules(ROOT / "reactions.yaml")
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    try:
        assert describe(build_adapters(Settings(notify_live=True), rules, ledger))["notify"] == "live"
        assert describe(build_adapters(Settings(notify_live=True, dry_run=True), rules, ledger))["notify"] == "dry-run"
        assert describe(build_adapters(Settings(), rules, ledger))["notify"] == "dry-run"
    finally:
        ledger.close()
