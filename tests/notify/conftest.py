"""Fixtures for the notify tests: real local receivers (HTTP webhook, SMTP with STARTTLS+AUTH, ACS over TLS), a real
SQLite ledger, a controllable clock, and a factory for engines whose notify adapter is the live one."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind
from shared.adapters.notify import NotifyAdapter
from shared.engine import Engine
from shared.events import AzureMLEvent, parse_event
from shared.ledger.sqlite import SqliteLedger
from shared.reactions import Rules, parse_rules
from shared.settings import Settings
from tests.conftest import RecordingAdapter
from tests.fakes.acs_email import FakeAcsEmail
from tests.fakes.smtp_server import SmtpServer
from tests.fakes.tls import SelfSignedCert, make_cert
from tests.fakes.webhook_receiver import WebhookReceiver

EVENTS = Path(__file__).resolve().parent.parent / "events" / "eventgrid"
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-prod"
)
SMTP_USER, SMTP_PASSWORD = "mlreactor@contoso.test", "smtp-Pa55word-never-logged"
WEBHOOK_SECRET = "whsec-never-logged-0123456789"


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = datetime(2026, 11, 20, 18, 45, tzinfo=UTC)) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def raw_event(name: str, **data: Any) -> dict[str, Any]:
    """A documented sample payload from tests/events, with ``data`` fields overridden."""
    payload = json.loads((EVENTS / f"{name}.json").read_text())
    event = copy.deepcopy(payload[0] if isinstance(payload, list) else payload)
    event["data"].update(data)
    return event


def event(name: str, event_id: str | None = None, **data: Any) -> AzureMLEvent:
    raw = raw_event(name, **data)
    if event_id is not None:
        raw["id"] = event_id
    return parse_event(raw)


@dataclass
class Receivers:
    teams: WebhookReceiver
    slack: WebhookReceiver
    hook: WebhookReceiver
    smtp: SmtpServer
    acs: FakeAcsEmail


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCert:
    """One certificate for 127.0.0.1: SMTP STARTTLS and the ACS fake present it; the adapter trusts it as its CA."""
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def receivers(tls: SelfSignedCert, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receivers]:
    started = Receivers(
        teams=WebhookReceiver().start(),
        slack=WebhookReceiver().start(),
        hook=WebhookReceiver().start(),
        smtp=SmtpServer(tls.server_context(), username=SMTP_USER, password=SMTP_PASSWORD).start(),
        acs=FakeAcsEmail(tls.server_context()).start(),
    )
    monkeypatch.setenv("MLREACTOR_TEST_TEAMS_URL", started.teams.url("/workflows/abc/triggers/manual?sig=SECRETSIG"))
    monkeypatch.setenv("MLREACTOR_TEST_SLACK_URL", started.slack.url("/services/T000/B000/SECRETTOKEN"))
    monkeypatch.setenv("MLREACTOR_TEST_HOOK_URL", started.hook.url("/mlreactor"))
    monkeypatch.setenv("MLREACTOR_TEST_HOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("MLREACTOR_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("MLREACTOR_TEST_ACS", started.acs.connection_string)
    yield started
    for server in (started.teams, started.slack, started.hook, started.smtp, started.acs):
        server.stop()


def channels(receivers: Receivers) -> dict[str, Any]:
    return {
        "ops-teams": {"type": "teams", "url_setting": "MLREACTOR_TEST_TEAMS_URL"},
        "ops-slack": {"type": "slack", "url_setting": "MLREACTOR_TEST_SLACK_URL"},
        "audit-hook": {"type": "webhook", "url_setting": "MLREACTOR_TEST_HOOK_URL",
                       "secret_setting": "MLREACTOR_TEST_HOOK_SECRET"},
        "ops-mail": {"type": "email", "smtp_host": "127.0.0.1", "smtp_port": receivers.smtp.port,
                     "username": SMTP_USER, "password_setting": "MLREACTOR_TEST_SMTP_PASSWORD",
                     "sender": "mlreactor@contoso.test", "to": ["ml-ops@contoso.test", "oncall@contoso.test"]},
        "ops-acs": {"type": "acs_email", "connection_string_setting": "MLREACTOR_TEST_ACS",
                    "sender": "DoNotReply@mlreactor.test", "to": ["ml-ops@contoso.test"]},
    }


def rules_with(receivers: Receivers, rules: list[dict[str, Any]]) -> Rules:
    return parse_rules(
        {"version": 1, "allowed_workspaces": [WORKSPACE], "channels": channels(receivers), "rules": rules}, "test"
    )


NOTIFY_FAILED_RUNS = {
    "name": "notify-failed-runs",
    "on": "RunStatusChanged",
    "when": {"run_status": ["Failed", "Canceled"]},
    "do": [
        {"tag_run": {"set": {"mlreactor.notified": "true"}}},
        {"notify": {"channels": ["ops-teams", "ops-slack", "audit-hook"], "message": "run_failed",
                    "throttle_key": "{{ run.experiment_name }}/{{ run.status }}", "throttle_window": "10m"}},
    ],
}


@dataclass
class Harness:
    engine: Engine
    adapter: NotifyAdapter
    ledger: SqliteLedger
    clock: ManualClock
    tag_run: RecordingAdapter


@pytest.fixture
def make_harness(
    tmp_path: Path, tls: SelfSignedCert, receivers: Receivers
) -> Iterator[Callable[..., Harness]]:
    ledgers: list[SqliteLedger] = []

    def make(
        rules: list[dict[str, Any]] | None = None, adapters: dict[ActionKind, Any] | None = None, **settings: Any
    ) -> Harness:
        clock = ManualClock()
        ledger = SqliteLedger(tmp_path / f"ledger-{len(ledgers)}.sqlite3")
        ledgers.append(ledger)
        config = Settings(**{"allow_http_webhooks": True, "notify_ca_file": tls.cert_path, **settings})
        parsed = rules_with(receivers, rules or [NOTIFY_FAILED_RUNS])
        adapter = NotifyAdapter(config, parsed, ledger, clock=clock, backoff=0)
        chosen: dict[ActionKind, Any] = {kind: RecordingAdapter(kind) for kind in ActionKind}
        chosen.update(adapters or {})
        chosen[ActionKind.NOTIFY] = adapter
        engine = Engine(parsed, ledger, chosen, clock=clock)
        return Harness(engine, adapter, ledger, clock, chosen[ActionKind.TAG_RUN])

    yield make
    for ledger in ledgers:
        ledger.close()
