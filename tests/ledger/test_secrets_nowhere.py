"""A planted token in every failure path is found nowhere: logs, audit, ledger, blobs, HTTP answers.

The token is the credential part of the Teams (``sig=``) and Slack (hook path) URLs. It comes back from real local
receivers that echo it in their error bodies, from a malformed webhook URL on the ``on_quarantine`` path, and from
an adapter bug whose exception message carries it. Both real ledgers; their raw storage is read byte for byte.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared import runtime
from shared.actions import ActionKind, ActionResult, PlannedAction
from shared.adapters.dryrun import DryRunAdapter
from shared.adapters.notify import NotifyAdapter
from shared.engine import Engine
from shared.ledger.port import Ledger
from shared.outcomes import Outcome
from shared.reactions import parse_rules
from shared.redact import install_log_redaction
from shared.settings import Settings, get_settings
from tests.conftest import WORKSPACE, delivery, indexed
from tests.fakes.webhook_receiver import Recorded, Reply, WebhookReceiver

TOKEN = "plantedTOKEN7c1e9a4b2d6f8e0a"


class BuggyAdapter(DryRunAdapter):
    """An adapter with a bug whose message carries the token (as a careless f-string would)."""

    def execute(self, action: PlannedAction) -> ActionResult:
        raise RuntimeError(f"unexpected answer from https://hooks.slack.com/services/T0/B0/{TOKEN} ({TOKEN})")


@pytest.fixture
def echoing(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WebhookReceiver, WebhookReceiver]]:
    """A Teams workflow answering 400 and a Slack hook answering 500, both echoing the URL they were called on."""

    def echo(status: int) -> Any:
        def respond(request: Recorded) -> Reply:
            return Reply(status, f"invalid request to {request.path} (sig {TOKEN} rejected)".encode())
        return respond

    teams, slack = WebhookReceiver(responder=echo(400)).start(), WebhookReceiver(responder=echo(500)).start()
    workflow = f"/workflows/abc/triggers/manual?api-version=1&sig={TOKEN}"
    monkeypatch.setenv("MLREACTOR_TEST_TEAMS_URL", teams.url(workflow))
    monkeypatch.setenv("MLREACTOR_TEST_SLACK_URL", slack.url(f"/services/T0/B0/{TOKEN}"))
    monkeypatch.setenv("MLREACTOR_TEST_BROKEN_URL", f"https://[{TOKEN}/hook")
    yield teams, slack
    teams.stop()
    slack.stop()


def rules() -> Any:
    return parse_rules({
        "version": 1, "allowed_workspaces": [WORKSPACE],
        "channels": {
            "ops-teams": {"type": "teams", "url_setting": "MLREACTOR_TEST_TEAMS_URL"},
            "ops-slack": {"type": "slack", "url_setting": "MLREACTOR_TEST_SLACK_URL"},
            "broken": {"type": "teams", "url_setting": "MLREACTOR_TEST_BROKEN_URL"},
        },
        "on_quarantine": {"channels": ["broken"]},
        "rules": [
            {"name": "tell-teams", "on": "RunStatusChanged", "when": {"run_status": ["Failed"]},
             "do": [{"notify": {"channels": ["ops-teams"], "message": "run_failed"}}]},
            {"name": "tell-slack", "on": "ModelRegistered",
             "do": [{"notify": {"channels": ["ops-slack"], "message": "generic", "title": "registered"}}]},
            {"name": "buggy", "on": "ModelDeployed", "do": [{"tag_model": {"set": {"stage": "deployed"}}}]},
        ],
    }, "test")


def raw_storage(ledger: Ledger, tmp_path: Path) -> str:
    """Everything the ledger wrote, as stored: the SQLite file and its WAL, or every Tables entity and blob."""
    if hasattr(ledger, "path"):
        files = [p for p in tmp_path.iterdir() if p.name.startswith("ledger.sqlite3")]
        return "".join(p.read_bytes().decode("latin-1") for p in files)
    table, container = ledger._table, ledger._container()  # type: ignore[attr-defined]  # the raw storage on purpose
    entities = [json.dumps(dict(e), default=str) for e in table.list_entities()]
    blobs = [container.download_blob(b.name).readall().decode("utf-8", "replace") for b in container.list_blobs()]
    assert blobs, "the quarantined payloads are there to be read"
    return "\n".join(entities + blobs)


def call(name: str, **params: str) -> str:
    request = func.HttpRequest(method="GET", url=f"http://localhost/api/{name}", params=params, body=b"")
    response: func.HttpResponse = indexed()[name].get_user_function()(request)
    return response.get_body().decode()


def test_a_planted_token_in_every_failure_path_is_found_nowhere(
    ledger: Ledger, echoing: tuple[WebhookReceiver, WebhookReceiver], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_log_redaction()  # what runtime.build_engine does
    settings = Settings(allow_http_webhooks=True, notify_retries=0)
    parsed = rules()
    adapters: dict[ActionKind, Any] = {kind: DryRunAdapter(kind) for kind in ActionKind}
    adapters[ActionKind.NOTIFY] = NotifyAdapter(settings, parsed, ledger, backoff=0)
    adapters[ActionKind.TAG_MODEL] = BuggyAdapter(ActionKind.TAG_MODEL)
    engine = Engine(parsed, ledger, adapters, error_deliveries=2)

    with caplog.at_level(logging.DEBUG):
        (teams,) = engine.handle_delivery(delivery("run_status_changed_failed"))  # 400 → quarantine → broken URL
        (slack,) = engine.handle_delivery(delivery("model_registered"))  # 500 → retry
        bug = [engine.handle_delivery(delivery("model_deployed"))[0] for _ in range(2)]  # a bug, then quarantine
    monkeypatch.setattr(runtime, "_engine", engine)
    get_settings.cache_clear()
    answers = [call("audit", event=o.event_id or "") for o in (teams, slack, bug[0])]
    answers += [call("timeline", correlation=o.correlation_id or "") for o in (teams, slack, bug[0])]
    get_settings.cache_clear()

    assert teams.outcome is Outcome.QUARANTINED and "HTTP 400" in teams.reason
    assert teams.actions[-1].status == "failed" and "is malformed" in teams.actions[-1].detail
    assert slack.outcome is Outcome.FAILED and "HTTP 500" in slack.reason
    assert [o.outcome for o in bug] == [Outcome.FAILED, Outcome.QUARANTINED]
    assert "RuntimeError" in bug[1].reason
    outcomes = json.dumps([o.as_dict() for o in (teams, slack, *bug)])
    audit = json.dumps([e.as_dict() for e in ledger.audit(limit=1000)], default=str)
    quarantine = json.dumps([(q.reason, q.raw) for q in ledger.quarantined()])
    stored = raw_storage(ledger, tmp_path)
    places = {"outcomes": outcomes, "logs": caplog.text, "audit": audit, "quarantine": quarantine,
              "ledger storage": stored, "HTTP answers": "\n".join(answers)}
    assert all(places.values()), "every place has content to search"
    assert "[redacted]" in audit and "[redacted]" in caplog.text
    leaked = [where for where, text in places.items() if TOKEN in text]
    assert leaked == [], f"the token leaked into {leaked}"
