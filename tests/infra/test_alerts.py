"""Alerts, diagnostic settings and the deploy-time switches in infra/, read with checkov's parser (pycep).

What Azure does with them is not exercised here (no Azure): metric names are the documented ones
(https://learn.microsoft.com/azure/event-grid/monitor-push-reference for system topics; ``requests/failed`` of
Application Insights), and the quarantine query is checked against the counter the app really emits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared.actions import ActionKind
from shared.errors import PermanentError
from shared.events import parse_event
from shared.telemetry import OpenTelemetry
from tests.conftest import Harness, event
from tests.infra.test_bicep import bicep, subscriptions
from tests.unit.test_telemetry import points


def resources(path: str) -> dict[str, Any]:
    found: dict[str, Any] = bicep(path)["resources"]
    return found


def dotted(node: Any) -> Any:
    """pycep's tree for ``a.b.c`` → the text ``a.b.c``; anything else unchanged."""
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"
    if isinstance(node, list):
        return [dotted(item) for item in node]
    return node


def props(resource: dict[str, Any]) -> dict[str, Any]:
    config = resource["config"]
    body: dict[str, Any] = config.get("config", config)  # loops and conditions nest the body one level deeper
    return body


def test_every_alert_notifies_the_action_group_whose_email_is_a_parameter() -> None:
    group = props(resources("app/alerts.bicep")["actionGroup"])
    (receiver,) = group["properties"]["emailReceivers"]["operator"]["operands"]["false_value"]
    assert receiver["emailAddress"] == "alertEmail"
    assert bicep("main.bicep")["parameters"]["alertEmail"]["default"] == ""
    main = bicep("main.bicep")["modules"]
    assert main["alerts"]["config"]["params"]["alertEmail"] == "alertEmail"
    for path, name in [("app/alerts.bicep", "functionFailures"), ("app/availability.bicep", "healthAlert"),
                       ("app/workspace-events.bicep", "alerts")]:
        actions = props(resources(path)[name])["properties"]["actions"]
        assert [dotted(a["actionGroupId"]) for a in actions] in (["actionGroup.id"], ["actionGroupId"]), (path, name)
    quarantine = props(resources("app/alerts.bicep")["quarantinedEvents"])["properties"]
    assert dotted(quarantine["actions"]["actionGroups"]) == ["actionGroup.id"]


def test_the_system_topic_alerts_on_dead_lettered_events_and_delivery_failures() -> None:
    table = bicep("app/workspace-events.bicep")["variables"]["topicAlerts"]["value"]
    assert {a["metricName"] for a in table} == {"DeadLetteredCount", "DeliveryAttemptFailCount"}
    alert = props(resources("app/workspace-events.bicep")["alerts"])["properties"]
    assert dotted(alert["scopes"]) == ["systemTopic.id"]
    (criterion,) = alert["criteria"]["allOf"]
    assert criterion["metricNamespace"] == "Microsoft.EventGrid/systemTopics"
    assert (criterion["operator"], criterion["threshold"], criterion["timeAggregation"]) == ("GreaterThan", 0, "Total")


def test_function_failures_alert_on_failed_executions_in_application_insights() -> None:
    alert = props(resources("app/alerts.bicep")["functionFailures"])["properties"]
    (criterion,) = alert["criteria"]["allOf"]
    assert (criterion["metricNamespace"], criterion["metricName"]) == ("microsoft.insights/components",
                                                                       "requests/failed")
    assert dotted(alert["scopes"]) == ["applicationInsights.id"]


def test_the_quarantine_alert_counts_the_metric_the_engine_emits(make_engine: Callable[..., Harness]) -> None:
    metrics = InMemoryMetricReader()
    h = make_engine(telemetry=OpenTelemetry(meter_provider=MeterProvider(metric_readers=[metrics])))
    h.adapters[ActionKind.NOTIFY].fail_next(PermanentError("Teams 400: the workflow URL is wrong"))
    outcome = h.engine.handle(parse_event(event("run_status_changed_failed")))
    assert outcome.outcome.value == "quarantined"
    assert (("outcome", "quarantined"),) in points(metrics, "mlreactor.events")

    (criterion,) = props(resources("app/alerts.bicep")["quarantinedEvents"])["properties"]["criteria"]["allOf"]
    query = criterion["query"]
    assert 'name == "mlreactor.events"' in query  # the counter's name → customMetrics.name
    assert 'tostring(customDimensions.outcome) == "quarantined"' in query  # its attribute → customDimensions
    measured = re.search(r"summarize (\w+) = sum\(valueSum\)", query)
    assert measured and criterion["metricMeasureColumn"] == measured.group(1)
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)


def test_the_availability_test_asks_health_for_a_200_with_the_functions_key_after_the_code_is_deployed() -> None:
    test = props(resources("app/availability.bicep")["healthTest"])
    request = test["properties"]["Request"]
    assert request["RequestUrl"] == "https://${functionApp.properties.defaultHostName}/api/health"
    assert [h["key"] for h in request["Headers"]] == ["x-functions-key"]
    assert test["properties"]["ValidationRules"]["ExpectedHttpStatusCode"] == 200
    assert len(test["properties"]["Locations"]) >= 5  # Microsoft's recommendation for availability tests
    assert bicep("main.bicep")["modules"]["availability"]["config"]["condition"] == "deployEventSubscriptions"


@pytest.mark.parametrize("path, scope, expected", [
    ("app/workspace-events.bicep", "systemTopic", {"DeliveryFailures"}),
    ("app/keyvault.bicep", "vault", {"audit"}),
    ("app/storage.bicep", "blobService", {"StorageRead", "StorageWrite", "StorageDelete"}),
    ("app/storage.bicep", "tableService", {"StorageRead", "StorageWrite", "StorageDelete"}),
])
def test_diagnostic_settings_send_the_logs_to_log_analytics(path: str, scope: str, expected: set[str]) -> None:
    (setting,) = [
        props(r) for r in resources(path).values()
        if r["type"] == "Microsoft.Insights/diagnosticSettings" and props(r).get("scope") == scope
    ]
    assert setting["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
    logs = {entry.get("category") or entry.get("categoryGroup") for entry in setting["properties"]["logs"]}
    assert logs == expected
    module = {"app/workspace-events.bicep": "workspaceEvents", "app/keyvault.bicep": "keyVault",
              "app/storage.bicep": "storage"}[path]
    params = bicep("main.bicep")["modules"][module]["config"]
    params = params.get("config", params)["params"]
    assert dotted(params["logAnalyticsWorkspaceId"]) == "monitoring.outputs.logAnalyticsId"


def evaluate(node: Any, names: dict[str, Any], item: dict[str, Any]) -> Any:
    """The few Bicep operators the subscription condition uses, on pycep's tree (which nests ``sub.x != 'y'`` as
    a property accessor around the comparison)."""
    if isinstance(node, str):
        return names.get(node, node)
    op = node["operator"]
    kind, operands = op["type"], op["operands"]
    if kind == "and":
        return evaluate(operands["operand_1"], names, item) and evaluate(operands["operand_2"], names, item)
    if kind == "or":
        return evaluate(operands["operand_1"], names, item) or evaluate(operands["operand_2"], names, item)
    if kind == "property_accessor":
        return evaluate(operands["operand_2"], {**names, **item}, item)
    if kind == "not_equals":
        return evaluate(operands["operand_1"], names, item) != evaluate(operands["operand_2"], names, item)
    raise AssertionError(f"operator {kind} not modelled")


@pytest.mark.parametrize("deploy, drift", [(False, False), (False, True), (True, False), (True, True)])
def test_the_v1_drift_subscription_is_created_only_when_asked_for(deploy: bool, drift: bool) -> None:
    condition = resources("app/workspace-events.bicep")["subscriptions"]["config"]["condition"]
    names = {"deployEventSubscriptions": deploy, "subscribeDatasetDriftDetected": drift}
    created = {s["function"] for s in subscriptions() if evaluate(condition, names, s)}
    everything = {s["function"] for s in subscriptions()}
    expected = set() if not deploy else everything if drift else everything - {"on_dataset_drift"}
    assert created == expected
    assert bicep("main.bicep")["parameters"]["subscribeDatasetDriftDetected"]["default"] is False


def test_maximum_instance_count_may_be_as_low_as_one() -> None:
    decorators = bicep("main.bicep")["parameters"]["maximumInstanceCount"]["decorators"]
    assert {"type": "min_value", "argument": 1} in decorators


def test_an_unparseable_payload_is_counted_as_quarantined_too(make_engine: Callable[..., Harness]) -> None:
    """The alert counts the metric, not the ledger: a poison payload that is quarantined must reach it, once."""
    metrics = InMemoryMetricReader()
    h = make_engine(telemetry=OpenTelemetry(meter_provider=MeterProvider(metric_readers=[metrics])))

    first = h.engine.handle_delivery('[{"id": "x", "eventType": 7}]')
    again = h.engine.handle_delivery('[{"id": "x", "eventType": 7}]')

    assert [o.outcome.value for o in first + again] == ["quarantined", "duplicate"]
    counted = {k: p.value for k, p in points(metrics, "mlreactor.events").items()}
    assert counted == {(("outcome", "quarantined"),): 1, (("outcome", "duplicate"),): 1}
