"""The few exceptions the engine reasons about.

Adapters classify failures where they happen: a ``TransientError`` means "try again later" (the trigger raises and
Event Grid redelivers), a ``PermanentError`` means "this will never succeed as is" (the event is quarantined with
the reason and never retried). Infrastructure exceptions are wrapped ``from exc`` so the cause stays visible.
"""

from __future__ import annotations


class MlreactorError(Exception):
    """Base of every error mlreactor raises on purpose."""


class TransientError(MlreactorError):
    """A failure that may succeed later: throttling, timeouts, 5xx, a lease held by another instance."""


class PermanentError(MlreactorError):
    """A failure that will not go away by retrying: bad input, 4xx, a missing asset."""


class NotReadyError(TransientError):
    """The event arrived before what it depends on was processed; redelivery later will find it ready."""


class EventParseError(PermanentError):
    """A payload that cannot be turned into a typed event. Names the field and the bad value."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class RulesError(MlreactorError):
    """A rules file that cannot be used. ``errors`` lists every problem found, not just the first."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  - {e}" for e in errors))


class RulesUnreadable(RulesError):
    """The rules file is missing or cannot be read: an operational error (exit 2), not a mistake in the rules."""


class ConfigError(MlreactorError):
    """A setting is missing or invalid; names the setting."""
