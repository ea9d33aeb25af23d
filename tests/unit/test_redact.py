"""The one redaction step: by value (every configured secret) and by shape (what looks like a credential)."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from shared.redact import MASK, install_log_redaction, redact, redact_tree, register_secret, register_settings
from shared.settings import Settings

SHAPES = {
    "teams workflow": ("POST https://prod-12.westeurope.logic.azure.com:443/workflows/0f3c/triggers/manual/paths/"
                       "invoke?api-version=2016-06-01&sp=%2Ftriggers&sv=1.0&sig=Qm9ndXNTaWduYXR1cmU", "Qm9ndXNT"),
    "teams webhook": ("https://contoso.webhook.office.com/webhookb2/1111-2222@3333/IncomingWebhook/abcdef/4444",
                      "IncomingWebhook/abcdef"),
    "slack hook": ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX", "XXXXXXXXXXXX"),
    "bearer": ("Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.payloadpayload.sig", "eyJ0eXAi"),
    "basic": ("Authorization: Basic OnBhdFNFQ1JFVGRvLW5vdC1sb2c=", "OnBhdFNF"),
    "storage key": ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5;EndpointSuffix=x",
                    "c2VjcmV0a2V5"),
    "acs key": ("endpoint=https://acs.communication.azure.com/;accesskey=QUNTU0VDUkVU", "QUNTU0VDUkVU"),
    "password pair": ("login failed: password=hunter2hunter2", "hunter2"),
    "user info": ("cannot reach https://svc:topsecretvalue@host.example/x", "topsecretvalue"),
    "function key": ("https://app.azurewebsites.net/api/x?code=abcdefghijklmnop==", "abcdefghijklmnop"),
    "github installation token": ("Authorization: token ghs_" + "A1b2C3" * 7, "A1b2C3A1b2C3"),
    "github fine-grained pat": ("github_pat_" + "11ABCDEFG_" * 5 + " was refused", "11ABCDEFG"),
    "devops pat": ("PAT rejected: " + "a" * 20 + "b2c3d4e5f6g7" + "z" * 20, "b2c3d4e5f6g7"),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_credential_shape_is_redacted(name: str) -> None:
    text, secret = SHAPES[name]
    redacted = redact(text)
    assert secret not in redacted and MASK in redacted


def test_ordinary_text_is_kept() -> None:
    text = ("channel ops-teams: the receiver answered HTTP 404 (workflow not found); run 42 of "
            "https://ml.azure.com/runs/abc?wsid=/subscriptions/x basic checks passed; auc 0.91 >= 0.8")
    assert redact(text) == text


def test_a_registered_secret_is_redacted_by_value_also_url_encoded_and_by_its_url_parts() -> None:
    url = "https://receiver.example/hooks/ops?sig=plantedSIGvalue0123456789"
    register_secret(SecretStr(url), "opaque-secret-value-42", None, "abc")
    text = f"echo {url} | %s | plantedSIGvalue0123456789 | opaque-secret-value-42 | abc" % (
        "https%3A%2F%2Freceiver.example%2Fhooks%2Fops%3Fsig%3DplantedSIGvalue0123456789")
    redacted = redact(text)
    assert "plantedSIG" not in redacted and "opaque-secret" not in redacted and "receiver.example/hooks" not in redacted
    assert redacted.endswith("| abc"), "values too short to be secrets are left alone"


def test_every_secret_setting_is_registered() -> None:
    register_settings(Settings(devops_pat="devops-pat-value-planted", eventgrid_topic_key="topic-key-planted-1"))
    assert redact("pat devops-pat-value-planted and topic-key-planted-1") == f"pat {MASK} and {MASK}"


def test_redact_tree_reaches_every_string() -> None:
    register_secret("tree-secret-planted-7")
    assert redact_tree({"a": ["x tree-secret-planted-7", 3], "b": {"c": "tree-secret-planted-7"}}) == {
        "a": [f"x {MASK}", 3], "b": {"c": MASK}}


def test_every_log_record_is_redacted_message_arguments_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret("log-secret-planted-99")
    other = logging.getLogger("azure.core.pipeline")  # not ours: the SDKs' records go through it too
    with caplog.at_level(logging.INFO):
        other.warning("sending %s", "log-secret-planted-99")
        try:
            raise ValueError("boom log-secret-planted-99 sig=abcdefgh")
        except ValueError:
            logging.getLogger("mlreactor.test").exception("failed")
    assert "log-secret-planted-99" not in caplog.text and "abcdefgh" not in caplog.text
    assert "ValueError: boom [redacted]" in caplog.text
