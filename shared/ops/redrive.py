"""Redrive: replay dead-lettered and quarantined events through the engine once their cause is fixed.

Event Grid writes an event it gave up on to the dead-letter container as a blob holding a JSON array
(``{topic}/{subscription}/{yyyy}/{MM}/{dd}/{HH}/{guid}.json``), each event with ``deadLetterReason``,
``deliveryAttempts``, ``lastDeliveryOutcome``... added. mlreactor's own quarantine keeps the raw payload with the
reason. Both go back through exactly the engine the function uses, so deduplication still applies: redriving twice
is safe, and an event that was in fact handled is reported as a duplicate.

A quarantined event was finished (outcome ``quarantined``), so it is reopened first; its done actions stay done and
only the failed ones run again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.engine import Engine
from shared.errors import EventParseError
from shared.events import AzureMLEvent, ParseFailure, parse_delivery, parse_event
from shared.outcomes import EventOutcome, Outcome


@dataclass(frozen=True)
class DeadLettered:
    """One event to redrive and where it came from (a blob name, or ``quarantine``)."""

    origin: str
    raw: Any
    reason: str


class BlobSource(Protocol):
    """The dead-letter container: blob names modified since a time, and a blob's bytes."""

    def names(self, since: datetime | None) -> Iterator[str]: ...

    def read(self, name: str) -> bytes: ...


def from_blobs(source: BlobSource, since: datetime | None) -> Iterator[DeadLettered]:
    """Every event in every dead-letter blob modified since ``since`` (a blob that is not JSON is reported too)."""
    for name in source.names(since):
        body = source.read(name)
        try:
            items = json.loads(body)
        except ValueError as exc:
            yield DeadLettered(name, body.decode("utf-8", errors="replace"), f"blob is not JSON: {exc}")
            continue
        for item in items if isinstance(items, list) else [items]:
            reason = ""
            if isinstance(item, dict):
                reason = str(item.get("deadLetterReason") or item.get("deadletterreason") or "")
            yield DeadLettered(name, item, reason)


@dataclass(frozen=True)
class Redriven:
    origin: str
    event_id: str | None
    dead_letter_reason: str
    outcome: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "event_id": self.event_id, "dead_letter_reason": self.dead_letter_reason,
                "outcome": self.outcome, "reason": self.reason}


def redrive(
    engine: Engine,
    items: Iterable[DeadLettered],
    *,
    reopen: bool = False,
    dry_run: bool = False,
    progress: Callable[[Redriven], None] | None = None,
) -> list[Redriven]:
    """Replay each item; ``reopen`` lets a finished (quarantined) event run again. ``dry_run`` only plans."""
    results = []
    for item in items:
        result = _one(engine, item, reopen=reopen, dry_run=dry_run)
        results.append(result)
        if progress:
            progress(result)
    return results


def _one(engine: Engine, item: DeadLettered, *, reopen: bool, dry_run: bool) -> Redriven:
    try:
        parsed = parse_event(item.raw) if not isinstance(item.raw, str) else _single(item.raw)
    except EventParseError as exc:
        if dry_run:
            return Redriven(item.origin, None, item.reason, "quarantined", f"would quarantine: {exc}")
        outcome = engine.handle(ParseFailure(index=0, reason=str(exc), raw=item.raw))
        return _result(item, outcome)
    if dry_run:
        plan = engine.plan(parsed)
        fired = ", ".join(rule.name for rule in plan.fired) or "no rule"
        return Redriven(item.origin, parsed.id, item.reason, "planned",
                        f"would run {len(plan.actions)} action(s) of {fired} unless already done")
    if reopen:
        engine.ledger.reopen_event(parsed.key, parsed.id, engine.clock.now())
    return _result(item, engine.handle(parsed))


def _single(raw: str) -> AzureMLEvent:
    """A quarantined payload is the raw JSON of one event (or a delivery holding one)."""
    items = parse_delivery(raw)
    if len(items) != 1:
        raise EventParseError(f"expected one event, found {len(items)}", field="$", value=None)
    (item,) = items
    if isinstance(item, ParseFailure):
        raise EventParseError(item.reason, field="$", value=None)
    return item


def _result(item: DeadLettered, outcome: EventOutcome) -> Redriven:
    return Redriven(item.origin, outcome.event_id, item.reason, outcome.outcome.value, outcome.reason)


def transient(results: list[Redriven]) -> list[Redriven]:
    """The items that failed transiently and should be redriven again later."""
    return [r for r in results if r.outcome == Outcome.FAILED.value]

