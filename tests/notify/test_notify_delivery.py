"""Delivery to real local receivers: the Teams Adaptive Card, Slack Block Kit, signed webhook, SMTP and ACS e-mail
that Ops receive — structure, links, escaping, signatures and secrecy."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import pytest

from shared.actions import ActionKind, ActionResult, PlannedAction
from shared.adapters.gate import GateAdapter, UnknownState
from shared.outcomes import Outcome
from tests.notify.conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    WORKSPACE,
    Receivers,
    event,
)

RUN_ID = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
STUDIO_RUN = f"https://ml.azure.com/runs/{RUN_ID}?wsid={WORKSPACE}"
EVIL_EXPERIMENT = "<script>alert(1)</script> *bold* _it_ [x](javascript:alert(1)) <!channel> & co"

ALL_CHANNELS_RULE = {
    "name": "page-everyone",
    "on": "RunStatusChanged",
    "when": {"run_status": "Failed"},
    "do": [{"notify": {"channels": ["ops-teams", "ops-slack", "audit-hook", "ops-mail", "ops-acs"],
                       "message": "run_failed"}}],
}


def only(channel: str, message: str = "run_failed") -> dict[str, Any]:
    """The page-everyone rule, narrowed to one channel."""
    return {**ALL_CHANNELS_RULE, "do": [{"notify": {"channels": channel, "message": message}}]}


def card_of(request_json: dict[str, Any]) -> dict[str, Any]:
    attachment = request_json["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    return dict(attachment["content"])


def texts(node: Any) -> list[str]:
    """Every ``text``/``title``/``value`` string anywhere in a card or block tree."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in {"text", "title", "value"} and isinstance(v, str)]
        return found + [t for v in node.values() for t in texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in texts(v)]
    return []


def test_given_a_failed_run_when_notified_on_every_channel_then_each_real_receiver_gets_a_rich_message(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([ALL_CHANNELS_RULE])

    outcome = harness.engine.handle(event("run_status_changed_failed"))

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    # Teams: Adaptive Card 1.4 in the Workflows envelope, title + facts + a button to the run in studio.
    card = card_of(receivers.teams.requests[0].json())
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["body"][0]["text"].startswith("Run failed: automl-local-regression / AutoML")
    facts = {f["title"]: f["value"] for f in next(b for b in card["body"] if b["type"] == "FactSet")["facts"]}
    assert facts["Experiment"] == "automl-local-regression" and facts["Status"] == "Failed"
    assert facts["Workspace"] == "mlw-prod"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open run in Azure ML studio", "url": STUDIO_RUN}]
    # Slack: header, plain-text facts grid, a button with the same link, a fallback text.
    slack = receivers.slack.requests[0].json()
    kinds = [b["type"] for b in slack["blocks"]]
    assert kinds[:2] == ["header", "section"] and "actions" in kinds
    buttons = next(b for b in slack["blocks"] if b["type"] == "actions")["elements"]
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [("Open run in Azure ML studio", STUDIO_RUN)]
    fields = next(b for b in slack["blocks"] if b.get("fields"))["fields"]
    assert {"type": "mrkdwn", "text": "*Experiment*"} in fields
    assert {"type": "plain_text", "text": "automl-local-regression", "emoji": False} in fields
    # Webhook: the message as data.
    hook = receivers.hook.requests[0].json()
    assert hook["type"] == "mlreactor.notification" and hook["kind"] == "run_failed"
    assert hook["links"] == [{"label": "Open run in Azure ML studio", "url": STUDIO_RUN}]
    assert hook["event"]["id"] == "9a0f7d2b-004b-001b-66ab-eeb76e069634"
    # SMTP and ACS each got one mail.
    assert len(receivers.smtp.messages) == 1 and len(receivers.acs.sent) == 1
    assert outcome.actions[0].status == "done"
    assert "ops-teams: delivered (HTTP 200)" in outcome.actions[0].detail


def test_given_a_webhook_channel_when_delivered_then_the_receiver_can_verify_the_hmac_signature(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([only("audit-hook", message="generic")])

    harness.engine.handle(event("run_status_changed_failed"))

    request = receivers.hook.requests[0]
    delivery, timestamp = request.header("X-Mlreactor-Delivery-Id"), request.header("X-Mlreactor-Timestamp")
    assert delivery and timestamp == str(int(harness.clock.now().timestamp()))
    signed = f"{delivery}.{timestamp}.".encode() + request.body  # exactly what a receiver recomputes
    expected = "v1," + base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(request.header("X-Mlreactor-Signature") or "", expected)
    assert b"mlw-prod" in request.body
    tampered = f"{delivery}.{timestamp}.".encode() + request.body.replace(b"mlw-prod", b"mlw-evil")
    forged = "v1," + base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), tampered, hashlib.sha256).digest()).decode()
    assert forged != expected


def test_given_a_run_named_with_markup_when_notified_then_every_channel_shows_it_as_text(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([ALL_CHANNELS_RULE])

    harness.engine.handle(event("run_status_changed_failed", experimentName=EVIL_EXPERIMENT))

    # Teams: markdown characters are backslash-escaped (CommonMark), so nothing becomes bold or a link.
    card = card_of(receivers.teams.requests[0].json())
    facts = {f["title"]: f["value"] for f in next(b for b in card["body"] if b["type"] == "FactSet")["facts"]}
    assert facts["Experiment"] == (
        r"\<script\>alert\(1\)\</script\> \*bold\* \_it\_ \[x\]\(javascript:alert\(1\)\) \<!channel\> & co"
    )
    assert all(a["url"].startswith("https://ml.azure.com/") for a in card["actions"])
    # Slack: values are plain_text (never parsed); mrkdwn text has entities and unpairable formatting characters.
    slack = receivers.slack.requests[0].json()
    assert {"type": "plain_text", "text": EVIL_EXPERIMENT, "emoji": False} in next(
        b for b in slack["blocks"] if b.get("fields"))["fields"]
    assert "<" not in slack["text"] and "<!channel>" not in json.dumps(slack["text"])
    assert "&lt;script&gt;" in slack["text"] and "\u200b*\u200bbold\u200b*\u200b" in slack["text"]
    mrkdwn = [b["text"]["text"] for b in slack["blocks"] if b.get("text", {}).get("type") == "mrkdwn"]
    assert all("<" not in t for t in mrkdwn)
    # E-mail: HTML-escaped in the HTML part, literal in the plain part.
    mail = receivers.smtp.messages[0]
    html_part = mail.get_body(("html",)).get_content()
    assert "<script>" not in html_part and "&lt;script&gt;alert(1)&lt;/script&gt; *bold*" in html_part
    assert EVIL_EXPERIMENT in mail.get_body(("plain",)).get_content()
    # Webhook: JSON data, byte for byte.
    assert {"label": "Experiment", "value": EVIL_EXPERIMENT} in receivers.hook.requests[0].json()["facts"]


def test_given_an_email_channel_when_notified_then_smtp_uses_starttls_and_auth_and_sends_both_parts(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([only("ops-mail")])

    harness.engine.handle(event("run_status_changed_failed"))

    assert receivers.smtp.auth_attempts == [SMTP_USER]  # AUTH is only offered after STARTTLS by the server
    mail = receivers.smtp.messages[0]
    assert mail["Subject"] == f"Run failed: automl-local-regression / {RUN_ID}"
    assert mail["From"] == "mlreactor@contoso.test"
    assert mail["To"] == "ml-ops@contoso.test, oncall@contoso.test"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Mlreactor-Correlation-Id"] == "9a0f7d2b-004b-001b-66ab-eeb76e069634"
    assert mail["Message-ID"].endswith("@mlreactor>")
    assert mail.get_content_type() == "multipart/alternative"
    plain, rich = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
    assert f"Open run in Azure ML studio: {STUDIO_RUN}" in plain
    assert f'<a href="{STUDIO_RUN}">Open run in Azure ML studio</a>' in rich
    assert sorted(receivers.smtp.envelopes[0].rcpt_tos) == ["ml-ops@contoso.test", "oncall@contoso.test"]


def test_given_an_acs_email_channel_when_notified_then_the_real_sdk_sends_a_signed_request_once_per_delivery(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([only("ops-acs")])

    outcome = harness.engine.handle(event("run_status_changed_failed"))

    assert receivers.acs.auth_failures == 0
    ((operation, sent),) = receivers.acs.sent.items()
    assert sent["senderAddress"] == "DoNotReply@mlreactor.test"
    assert sent["recipients"] == {"to": [{"address": "ml-ops@contoso.test"}]}
    assert sent["content"]["subject"] == f"Run failed: automl-local-regression / {RUN_ID}"
    assert STUDIO_RUN in sent["content"]["plainText"] and "<html>" in sent["content"]["html"]
    assert f"ops-acs: delivered (ACS accepted operation {operation})" in outcome.actions[0].detail




class QueuedRelease:
    """Stands in for the Azure DevOps adapter: reports where the pending approval waits."""

    live = True

    def execute(self, action: PlannedAction) -> ActionResult:
        return ActionResult(external_id="812", data={
            "id": 812, "name": "20261120.3", "url": "https://dev.azure.com/contoso/mlops/_build/results?buildId=812",
            "environment": "production", "model": "credit-default", "version": "7", "status": "awaiting approval"})


def test_given_a_release_queued_earlier_in_the_rule_then_the_card_leads_with_its_pending_approval_link(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([{
        "name": "release-tested-model", "on": "RunCompleted",
        "do": [
            {"queue_release": {"id": "release", "project": "mlops", "pipeline_id": 42, "environment": "production",
                               "model": "credit-default", "version": "7"}},
            {"notify": {"channels": "ops-teams", "message": "release_queued"}},
        ],
    }], adapters={ActionKind.QUEUE_RELEASE: QueuedRelease()})

    outcome = harness.engine.handle(event("run_completed", runTags={
        "mlreactor.model_name": "credit-default", "mlreactor.model_version": "7"}))

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    card = card_of(receivers.teams.requests[0].json())
    assert card["body"][0]["text"] == "Release of credit-default:7 queued: awaiting approval"
    assert [(a["title"], a["url"]) for a in card["actions"]][:2] == [
        ("Review the pending approval", "https://dev.azure.com/contoso/mlops/_build/results?buildId=812"),
        ("Open test run", STUDIO_RUN),
    ]



def test_given_a_quality_gate_earlier_in_the_rule_then_the_offline_test_card_carries_its_verdict_table(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([{
        "name": "judge", "on": "RunCompleted",
        "do": [
            {"quality_gate": {"metrics": {"auc": {"min": 0.95}}}},
            {"notify": {"channels": "ops-teams", "message": "offline_test"}},
        ],
    }], adapters={ActionKind.QUALITY_GATE: GateAdapter(UnknownState())})

    outcome = harness.engine.handle(event("run_completed", runTags={
        "mlreactor.model_name": "credit-default", "mlreactor.model_version": "7", "mlreactor.metric.auc": "0.912"}))

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    card = card_of(receivers.teams.requests[0].json())
    assert card["body"][0]["text"] == "Offline test failed: credit-default:7"
    assert card["body"][0]["color"] == "Attention"
    table = next(b for b in card["body"] if b["type"] == "Container")
    cells = [[c["items"][0]["text"] for c in row["columns"]] for row in table["items"]]
    assert cells == [["Metric", "Candidate", "Champion", "Check", "Result"],
                     ["auc", "0.912", "", r"auc 0.912 \>= 0.95", "FAIL"]]


def test_given_acs_accepted_a_mail_but_the_response_was_lost_then_the_retry_reuses_the_operation_id_and_no_second_mail(
    make_harness: Any, receivers: Receivers
) -> None:
    harness = make_harness([only("ops-acs")], notify_retries=1)
    receivers.acs.lose_next_response()

    outcome = harness.engine.handle(event("run_status_changed_failed"))

    assert outcome.outcome is Outcome.ACTED
    first, second = receivers.acs.receiver.requests
    assert first.header("Operation-Id") == second.header("Operation-Id") is not None
    assert len(receivers.acs.sent) == 1


def test_given_a_secret_webhook_url_when_delivery_fails_then_no_log_audit_or_error_shows_the_secret(
    make_harness: Any, receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    harness = make_harness([ALL_CHANNELS_RULE])
    receivers.teams.always(404, b"workflow not found")
    receivers.smtp.reject_next("554 5.7.1 relay denied")
    caplog.set_level(logging.DEBUG)

    outcome = harness.engine.handle(event("run_status_changed_failed"))

    assert outcome.outcome is Outcome.QUARANTINED
    assert "ops-teams: failed (channel ops-teams: the receiver answered HTTP 404 (workflow not found))" in (
        outcome.reason
    )
    everything = "\n".join([
        caplog.text, json.dumps([a.as_dict() for a in harness.ledger.audit()]),
        json.dumps([q.reason for q in harness.ledger.quarantined()]),
    ])
    for secret in ("SECRETSIG", "SECRETTOKEN", SMTP_PASSWORD, WEBHOOK_SECRET, receivers.acs.access_key):
        assert secret not in everything


@pytest.mark.parametrize(
    ("url", "allow_http", "accepted"),
    [
        ("http://127.0.0.1:{port}/hook", False, False),
        ("http://127.0.0.1:{port}/hook", True, True),
        ("http://example.com:{port}/hook", True, False),
        ("ftp://127.0.0.1:{port}/hook", True, False),
    ],
)
def test_given_a_webhook_url_when_it_is_not_https_then_it_is_refused_unless_loopback_http_is_allowed_for_tests(
    make_harness: Any, receivers: Receivers, monkeypatch: pytest.MonkeyPatch, url: str, allow_http: bool,
    accepted: bool,
) -> None:
    monkeypatch.setenv("MLREACTOR_TEST_HOOK_URL", url.format(port=receivers.hook.port))
    harness = make_harness([only("audit-hook")], allow_http_webhooks=allow_http)

    outcome = harness.engine.handle(event("run_status_changed_failed"))

    assert (outcome.outcome is Outcome.ACTED) is accepted, outcome.reason
    assert len(receivers.hook.requests) == (1 if accepted else 0)
    if not accepted:
        assert "must be an https:// URL" in outcome.reason and "example.com" not in outcome.reason
