"""Telemetry: a span per event with a child span per action, counters and latency histograms.

With ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set, OpenTelemetry is configured through
``azure-monitor-opentelemetry`` (imported then, not before: it costs ~1 s). Unset, ``NoTelemetry`` is used and
nothing is imported. Tests pass their own tracer and meter providers (in-memory exporters).

Span attributes never carry secrets or parameter values — only ids, kinds, outcomes and external ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.actions import PlannedAction
    from shared.events import AzureMLEvent
    from shared.outcomes import ActionOutcome, EventOutcome

EVENT_SPAN = "mlreactor.event"
ACTION_SPAN = "mlreactor.action"


class Telemetry(Protocol):
    def event(self, event: AzureMLEvent) -> AbstractContextManager[Any]: ...

    def event_done(self, span: Any, outcome: EventOutcome) -> None: ...

    def unparsed(self, outcome: EventOutcome) -> None:
        """A payload that is not an event: counted, no span (nothing in it can be trusted as an attribute)."""
        ...

    def action(self, action: PlannedAction) -> AbstractContextManager[Any]: ...

    def action_done(self, span: Any, outcome: ActionOutcome, seconds: float) -> None: ...


class NoTelemetry:
    """Telemetry off: no imports, no cost."""

    def event(self, event: AzureMLEvent) -> AbstractContextManager[Any]:
        return nullcontext()

    def event_done(self, span: Any, outcome: EventOutcome) -> None:
        return None

    def unparsed(self, outcome: EventOutcome) -> None:
        return None

    def action(self, action: PlannedAction) -> AbstractContextManager[Any]:
        return nullcontext()

    def action_done(self, span: Any, outcome: ActionOutcome, seconds: float) -> None:
        return None


class OpenTelemetry:
    """Spans, counters and histograms through the OpenTelemetry API."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from opentelemetry import metrics, trace  # noqa: PLC0415 - only when telemetry is on

        self._status = trace.Status
        self._status_code = trace.StatusCode
        self.tracer = trace.get_tracer("mlreactor", tracer_provider=tracer_provider)
        meter = metrics.get_meter("mlreactor", meter_provider=meter_provider)
        self.events = meter.create_counter("mlreactor.events", description="events handled, by outcome")
        self.actions = meter.create_counter("mlreactor.actions", description="actions, by kind and status")
        self.latency = meter.create_histogram(
            "mlreactor.action.duration", unit="s", description="time an action took, by kind"
        )

    @contextmanager
    def event(self, event: AzureMLEvent) -> Iterator[Any]:
        attributes = {
            "mlreactor.event.id": event.id,
            "mlreactor.event.type": event.event_type,
            "mlreactor.event.kind": event.kind.value,
            "mlreactor.workspace": event.source,
            "mlreactor.correlation_id": event.correlation_id,
        }
        with self.tracer.start_as_current_span(EVENT_SPAN, attributes=attributes) as span:
            yield span

    def event_done(self, span: Any, outcome: EventOutcome) -> None:
        span.set_attribute("mlreactor.outcome", outcome.outcome.value)
        span.set_attribute("mlreactor.reason", outcome.reason[:512])
        if outcome.outcome.value in ("failed", "quarantined"):
            span.set_status(self._status(self._status_code.ERROR, outcome.outcome.value))
        self.events.add(1, {"outcome": outcome.outcome.value})

    def unparsed(self, outcome: EventOutcome) -> None:
        # Counted like any event, so the quarantine alert (infra/app/alerts.bicep) sees a poison payload too.
        self.events.add(1, {"outcome": outcome.outcome.value})

    @contextmanager
    def action(self, action: PlannedAction) -> Iterator[Any]:
        attributes = {
            "mlreactor.action.kind": action.kind.value,
            "mlreactor.action.rule": action.rule,
            "mlreactor.action.key": action.short_key,
            "mlreactor.action.target": _target(action),
        }
        with self.tracer.start_as_current_span(ACTION_SPAN, attributes=attributes) as span:
            yield span

    def action_done(self, span: Any, outcome: ActionOutcome, seconds: float) -> None:
        span.set_attribute("mlreactor.action.status", outcome.status)
        if outcome.external_id:
            span.set_attribute("mlreactor.action.external_id", outcome.external_id)
        if outcome.status in ("failed", "retry"):
            span.set_status(self._status(self._status_code.ERROR, outcome.detail[:256]))
        self.actions.add(1, {"kind": outcome.kind, "status": outcome.status})
        self.latency.record(seconds, {"kind": outcome.kind})


def _target(action: PlannedAction) -> str:
    """What the action works on, without parameter values that might be sensitive."""
    params = action.params.model_dump()
    for key in ("model", "run", "project", "channels", "type", "purpose"):
        if params.get(key):
            value = params[key]
            version = params.get("version")
            return f"{value}:{version}" if key == "model" and version else str(value)
    return action.kind.value


def configure(connection_string: str | None) -> Telemetry:
    """``OpenTelemetry`` exporting to Application Insights when a connection string is set, else ``NoTelemetry``."""
    if not connection_string:
        return NoTelemetry()
    from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 - ~1 s, only when on

    configure_azure_monitor(connection_string=connection_string, logger_name="mlreactor")
    return OpenTelemetry()

