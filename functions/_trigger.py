"""What every Event Grid trigger does: rebuild the raw event, hand it to the engine, map the outcome.

Raising makes the host answer 500 and Event Grid redeliver the whole delivery — so only a transient failure raises;
every other outcome (including quarantine) returns normally.

The core (pydantic models, rules, ledger) is imported on the first invocation, not when the worker imports
``function_app``: cold start only pays for ``azure.functions`` and these few lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import azure.functions as func

if TYPE_CHECKING:
    from shared.outcomes import EventOutcome


def raw_event(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """The JSON object the host received, rebuilt from the worker's object (either schema)."""
    if isinstance(event, func.CloudEvent):
        return {
            **event.extension_attrs,
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else None,
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }


def handle(event: func.EventGridEvent | func.CloudEvent) -> EventOutcome:
    """Run one event through the engine; raise only when Event Grid should redeliver."""
    from shared.errors import EventParseError, TransientError  # noqa: PLC0415 - see module docstring
    from shared.events import ParseFailure, parse_event  # noqa: PLC0415
    from shared.runtime import engine  # noqa: PLC0415

    raw = raw_event(event)
    try:
        item = parse_event(raw)
    except EventParseError as exc:
        outcome = engine().handle(ParseFailure(index=0, reason=str(exc), raw=raw))
    else:
        outcome = engine().handle(item)
    if outcome.should_raise:
        raise TransientError(f"event {outcome.event_id}: {outcome.reason}")
    return outcome
