"""Microsoft's worker invokes the app with what the host sends, and answers as the engine decided.

Each Event Grid outcome maps to the worker's answer: ``Success`` (the host answers Event Grid 2xx, the event is done)
for acted, duplicate, rejected and quarantined; ``Failure`` (the host answers 500, Event Grid redelivers) only for a
transient failure. The trigger data is the host's serialisation (see tests/worker/host.py).

Not reproduced here: the Event Grid webhook in front of the host (the subscription handshake, splitting the
delivered array, answering 202/500) — each call below is one element of a delivery, as the host invokes it; the
host's ``sys`` binding data carries illustrative values (the runtime passes it to no function of this app); the
HTTP v2 streaming path (the app does not enable it, so requests arrive as ``RpcHttp`` over the stream).
"""

from __future__ import annotations

import json

from shared.actions import ActionKind
from shared.errors import TransientError
from tests.conftest import WORKSPACE, Harness, event
from tests.worker.host import FunctionsHost


def test_a_run_failure_is_acted_on_and_the_worker_reports_success(
    functions_host: FunctionsHost, app_engine: Harness
) -> None:
    raw = event("run_status_changed_failed")
    answer = functions_host.deliver_event("on_run_failed", raw)
    assert answer.succeeded, answer.exception
    assert [e.outcome for e in app_engine.ledger.audit(event_id=raw["id"])] == ["acted"]
    assert len(app_engine.executed(ActionKind.NOTIFY)) == 1


def test_every_sample_event_reaches_the_engine_through_the_worker(
    functions_host: FunctionsHost, app_engine: Harness
) -> None:
    for name, function in [
        ("model_registered", "on_model_registered"), ("model_deployed", "on_model_deployed"),
        ("run_completed", "on_run_completed"), ("dataset_drift_detected", "on_dataset_drift"),
        ("model_monitor_threshold_breached", "on_model_monitor_signal"),
    ]:
        raw = event(name)
        answer = functions_host.deliver_event(function, raw)
        assert answer.succeeded, (name, answer.exception)
        (entry,) = app_engine.ledger.audit(event_id=raw["id"])
        assert entry.outcome in {"acted", "ignored"}, (name, entry.outcome, entry.reason)


def test_a_redelivery_succeeds_as_a_duplicate_without_acting_again(
    functions_host: FunctionsHost, app_engine: Harness
) -> None:
    raw = event("run_status_changed_failed")
    assert functions_host.deliver_event("on_run_failed", raw).succeeded
    assert functions_host.deliver_event("on_run_failed", raw).succeeded
    assert [e.outcome for e in app_engine.ledger.audit(event_id=raw["id"])] == ["duplicate", "acted"]
    assert len(app_engine.executed(ActionKind.NOTIFY)) == 1


def test_a_transient_failure_fails_the_invocation_so_event_grid_redelivers(
    functions_host: FunctionsHost, app_engine: Harness
) -> None:
    app_engine.adapters[ActionKind.NOTIFY].fail_next(TransientError("Teams 503"))
    raw = event("run_status_changed_failed")
    answer = functions_host.deliver_event("on_run_failed", raw)
    assert not answer.succeeded
    assert "Teams 503" in answer.exception
    assert [e.outcome for e in app_engine.ledger.audit(event_id=raw["id"])] == ["failed"]
    # Event Grid's redelivery: the action runs, the event is done.
    assert functions_host.deliver_event("on_run_failed", raw).succeeded
    assert len(app_engine.executed(ActionKind.NOTIFY)) == 1


def test_an_unparseable_event_is_quarantined_and_never_redelivered(
    functions_host: FunctionsHost, app_engine: Harness
) -> None:
    raw = event("model_registered")
    raw["data"] = {"modelName": "churn"}  # no modelVersion: this event can never be acted on
    answer = functions_host.deliver_event("on_model_registered", raw)
    assert answer.succeeded, answer.exception
    (entry,) = app_engine.ledger.audit(event_id=raw["id"])
    assert entry.outcome == "quarantined"
    assert "modelVersion" in entry.reason


def test_an_event_from_a_workspace_not_allowed_is_rejected_and_not_redelivered(
    functions_host: FunctionsHost, app_engine: Harness
) -> None:
    raw = event("run_status_changed_failed", topic=WORKSPACE.replace("mlw-prod", "mlw-elsewhere"))
    answer = functions_host.deliver_event("on_run_failed", raw)
    assert answer.succeeded, answer.exception
    assert [e.outcome for e in app_engine.ledger.audit(event_id=raw["id"])] == ["rejected"]
    assert app_engine.executed() == []


def _http_body(answer: object) -> tuple[str, str, bytes]:
    http = answer.response.return_value.http  # type: ignore[attr-defined]
    body = http.body.bytes or http.body.string.encode()
    return http.status_code, http.headers.get("content-type", ""), body


def test_health_answers_200_with_the_report_through_the_worker(
    functions_host: FunctionsHost, app_engine: Harness
) -> None:
    answer = functions_host.http("health", "GET", "https://func-mlreactor.azurewebsites.net/api/health",
                                 {"X-Functions-Key": "k"})
    assert answer.succeeded, answer.exception
    status, content_type, body = _http_body(answer)
    report = json.loads(body)
    assert (status, content_type) == ("200", "application/json"), report
    assert report["status"] == "ok"
    assert report["ledger"]["reachable"] is True


def test_audit_reads_the_query_string_the_host_passes(functions_host: FunctionsHost, app_engine: Harness) -> None:
    raw = event("run_status_changed_failed")
    assert functions_host.deliver_event("on_run_failed", raw).succeeded
    url = f"https://func-mlreactor.azurewebsites.net/api/audit?event={raw['id']}&limit=5"
    status, _, body = _http_body(functions_host.http("audit", "GET", url))
    assert status == "200"
    assert [entry["outcome"] for entry in json.loads(body)] == ["acted"]
    status, _, body = _http_body(functions_host.http("audit", "GET", "https://h/api/audit"))
    assert status == "400"
    assert "correlation" in json.loads(body)["error"]


def test_the_timeline_page_comes_back_as_html_with_its_security_headers(
    functions_host: FunctionsHost, app_engine: Harness
) -> None:
    answer = functions_host.http("timeline", "GET", "https://h/api/timeline?correlation=abc")
    status, content_type, body = _http_body(answer)
    assert status == "200"
    assert content_type.startswith("text/html")
    headers = answer.response.return_value.http.headers  # the worker lower-cases only content-type
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert b"abc" in body
