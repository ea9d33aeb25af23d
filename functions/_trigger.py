"""What every Event Grid trigger does: rebuild the raw event, hand it to the engine, map the outcome.

Raising makes the host answer 500 and Event Grid redeliver the whole delivery — so only a transient failure raises;
every other outcome (including quarantine) returns normally.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from shared.engine import EventOutcome
from shared.errors import EventParseError, TransientError
from shared.events import ParseFailure, parse_event
from shared.runtime import engine

log = logging.getLogger("mlreactor.functions")


def raw_event(event: func.EventGridEvent) -> dict[str, Any]:
    """The Event Grid schema object the host parsed (``metadataVersion`` is dropped by the worker)."""
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }


def handle(event: func.EventGridEvent) -> EventOutcome:
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
