"""Telemetry: a span per event with a child span per action, counters and latencies — and no cost when off."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.actions import ActionKind
from shared.errors import TransientError
from shared.telemetry import ACTION_SPAN, EVENT_SPAN, OpenTelemetry
from tests.conftest import ROOT, Harness, delivery, event


@pytest.fixture
def otel() -> tuple[OpenTelemetry, InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    return OpenTelemetry(tracer_provider, MeterProvider(metric_readers=[metrics])), spans, metrics


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    data = reader.get_metrics_data()
    found = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[tuple(sorted(point.attributes.items()))] = point
    return found


def test_each_event_is_a_span_with_a_child_span_per_action(
    make_engine: Callable[..., Harness], otel: tuple[OpenTelemetry, InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    telemetry, spans, _ = otel
    h = make_engine(telemetry=telemetry)
    h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == EVENT_SPAN]
    children = [s for s in finished if s.name == ACTION_SPAN]
    assert root.attributes["mlreactor.event.id"] == "831e1650-001e-001b-66ab-eeb76e069631"
    assert root.attributes["mlreactor.event.kind"] == "ModelRegistered"
    assert root.attributes["mlreactor.outcome"] == "acted"
    assert root.attributes["mlreactor.correlation_id"] == root.attributes["mlreactor.event.id"]
    assert root.attributes["mlreactor.workspace"].endswith("/workspaces/mlw-prod")
    assert [c.attributes["mlreactor.action.kind"] for c in children] == ["tag_model", "run_pipeline"]
    assert all(c.parent is not None and c.parent.span_id == root.context.span_id for c in children)
    assert children[0].attributes["mlreactor.action.target"] == "sklearn_regression_model:20"
    assert children[0].attributes["mlreactor.action.status"] == "done"
    assert children[0].attributes["mlreactor.action.external_id"].startswith("dryrun-")


def test_counters_and_latency_histograms_by_outcome_kind_and_status(
    make_engine: Callable[..., Harness], otel: tuple[OpenTelemetry, InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    telemetry, spans, metrics = otel
    h = make_engine(telemetry=telemetry)
    h.adapters[ActionKind.NOTIFY].fail_next(TransientError("Teams 503"))
    for _ in range(2):
        h.engine.handle_delivery(json.dumps(delivery("run_status_changed_failed")))
    h.engine.handle_delivery(json.dumps(delivery("run_status_changed_failed")))
    events = {k[0][1]: p.value for k, p in points(metrics, "mlreactor.events").items()}
    assert events == {"failed": 1, "acted": 1, "duplicate": 1}
    actions = {dict(k)["status"]: p.value for k, p in points(metrics, "mlreactor.actions").items()}
    assert actions == {"retry": 1, "done": 1}
    (latency,) = points(metrics, "mlreactor.action.duration").values()
    assert latency.count == 2
    failed = [s for s in spans.get_finished_spans() if s.name == EVENT_SPAN and s.status.status_code.name == "ERROR"]
    assert len(failed) == 1


def test_log_lines_carry_the_correlation_id(
    make_engine: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    raw = event("model_registered")
    raw["data"]["ModelTags"]["mlreactor.correlation"] = "chain-7"
    h = make_engine()
    with caplog.at_level(logging.INFO, logger="mlreactor"):
        h.engine.handle_delivery(json.dumps([raw]))
    (record,) = [r for r in caplog.records if r.name == "mlreactor.engine"]
    assert record.correlation_id == "chain-7"  # type: ignore[attr-defined]
    assert record.outcome == "acted"  # type: ignore[attr-defined]


def test_without_a_connection_string_nothing_of_opentelemetry_is_imported(tmp_path: Any) -> None:
    code = f"""
import json, os, sys
os.environ["MLREACTOR_STATE_DIR"] = {str(tmp_path)!r}
from shared.runtime import engine
engine().handle_delivery(open({str(ROOT / "tests/events/eventgrid/model_registered.json")!r}).read())
print(json.dumps([m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor"))]))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_with_a_connection_string_azure_monitor_is_configured(tmp_path: Any) -> None:
    code = """
import json, sys
from shared.telemetry import OpenTelemetry, configure
telemetry = configure("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                      "IngestionEndpoint=https://127.0.0.1:9/")
from opentelemetry import trace
print(json.dumps({"type": type(telemetry).__name__,
                  "provider": type(trace.get_tracer_provider()).__name__}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"type": "OpenTelemetry", "provider": "TracerProvider"}
