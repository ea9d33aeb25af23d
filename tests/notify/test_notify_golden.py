"""Golden files: exactly what Ops see, per message kind and channel, for a reviewer to read.

``tests/notify/golden/<kind>.teams.json`` (the Workflows webhook body with its Adaptive Card), ``.slack.json``
(Block Kit), ``.email.txt`` / ``.email.html`` (the two MIME parts) and ``.webhook.json`` (the signed JSON body).
After an intended change, regenerate them and review the diff::

    UPDATE_GOLDEN=1 PYTHONPATH=. python -m pytest tests/notify/test_notify_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind, NotifyParams, PlannedAction
from shared.adapters.notify import render
from shared.adapters.notify.messages import LAYOUTS, compose
from shared.gate import MetricRule, evaluate
from tests.notify.conftest import event

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

OFFLINE_TEST_TAGS = {
    "mlreactor.purpose": "offline-test", "mlreactor.correlation": "drift-2026-11-20-credit",
    "mlreactor.model_name": "credit-default", "mlreactor.model_version": "7",
    "mlreactor.metric.auc": "0.912", "mlreactor.metric.latency_ms": "41.5",
}


def gate_result() -> dict[str, Any]:
    """What the quality_gate action records (shared/gate.py), as a later notify sees it under ``gate``."""
    rules = {"auc": MetricRule(min=0.80, min_improvement=0.0),
             "latency_ms": MetricRule(max=50, max_regression=5, higher_is_better=False)}
    candidate = {"auc": 0.912, "latency_ms": 41.5}
    verdict = evaluate(rules, list(rules), candidate, {"auc": 0.897, "latency_ms": 38.0}, "6")
    return {**verdict.as_data(candidate), "model": "credit-default", "version": "7", "notes": []}


RELEASE = {  # what the queue_release action records (shared/adapters/devops.py)
    "id": 812, "name": "20261120.3", "url": "https://dev.azure.com/contoso/mlops/_build/results?buildId=812",
    "flavour": "pipeline", "environment": "production", "model": "credit-default", "version": "7",
    "status": "awaiting approval",
}
STEPS = {"offline_test": {"gate": gate_result()}, "release_queued": {"gate": gate_result(), "release": RELEASE}}

CASES: dict[str, tuple[Any, dict[str, Any], int]] = {
    "run_failed": (
        event("run_status_changed_failed", runProperties={
            "StartTimeUtc": "2026-11-20T18:02:11+00:00", "EndTimeUtc": "2026-11-20T18:40:52+00:00",
            "azureml.runError": "UserError: Memory exhausted on node 0 (see 70_driver_log.txt)",
        }),
        {}, 14,
    ),
    "chain_failed": (
        event("run_status_changed_failed", experimentName="mlreactor-offline-test", runTags=OFFLINE_TEST_TAGS), {}, 0
    ),
    "drift_detected": (event("model_monitor_threshold_breached"), {}, 0),
    "offline_test": (
        event("run_completed", experimentName="mlreactor-offline-test", runTags=OFFLINE_TEST_TAGS), {}, 0
    ),
    "release_queued": (
        event("run_completed", experimentName="mlreactor-offline-test", runTags=OFFLINE_TEST_TAGS),
        {}, 0,
    ),
    "model_deployed": (event("model_deployed"), {}, 0),
    "event_quarantined": (
        event("model_registered"),
        {"facts": {"Reason": "tag_model: workspace mlw-prod answered 403 AuthorizationFailed"}}, 0,
    ),
    "generic": (event("model_registered"), {}, 0),
}


def rendered(kind: str) -> dict[str, str]:
    the_event, extra, digest = CASES[kind]
    params = NotifyParams(channels=["golden"], message=kind, throttle_key="automl-local-regression/Failed", **extra)
    action = PlannedAction(
        key="0" * 64, rule="golden-rule", index=0, kind=ActionKind.NOTIFY, params=params, event=the_event,
        correlation_id=the_event.correlation_id,
        steps=STEPS.get(kind, {}),
    )
    message = compose(action, LAYOUTS[kind], digest=digest, digest_key=params.throttle_key or "", window="10m")
    return {
        "teams.json": _json(render.teams(message)),
        "slack.json": _json(render.slack(message)),
        "email.txt": render.email_text(message),
        "email.html": render.email_html(message),
        "webhook.json": _json(render.webhook(message)),
    }


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def test_every_message_kind_has_a_golden_case() -> None:
    assert set(CASES) == set(LAYOUTS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_message_ops_see_matches_its_golden_file(kind: str) -> None:
    for suffix, text in rendered(kind).items():
        path = GOLDEN / f"{kind}.{suffix}"
        if UPDATE:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.is_file(), f"{path} is missing: run with UPDATE_GOLDEN=1 and review it"
        assert text == path.read_text(encoding="utf-8"), f"{path.name} changed: review, then UPDATE_GOLDEN=1"
