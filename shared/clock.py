"""Time: an injectable UTC clock and human durations (``90s``, ``10m``, ``6h``, ``7d``, ISO 8601 ``PT6H``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Protocol

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d|w)\s*$", re.IGNORECASE)
_ISO = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$", re.I)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real clock: timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def parse_duration(value: object) -> timedelta:
    """``"6h"`` → 6 hours. Raises ValueError naming the bad value (also for NaN and for more than 999999999 days)."""
    try:
        return _parse_duration(value)
    except OverflowError:
        raise ValueError(f"{_shown(value)} is too long a duration") from None


def bounded_duration(value: object, low: timedelta, high: timedelta) -> timedelta:
    """``parse_duration`` within ``[low, high]``: a rules file's windows and waits are sane (``6h``, not 600 years)."""
    delta = parse_duration(value)
    if not low <= delta <= high:
        raise ValueError(f"{_shown(value)} is out of range: use {format_duration(low)} to {format_duration(high)}")
    return delta


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
            raise ValueError(f"{_shown(value)} is not a duration: use e.g. 30s, 10m, 6h, 7d or PT6H")
        return timedelta(seconds=value)
    if isinstance(value, str) and len(value) <= 64:
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match["n"]) * _UNITS[match["unit"].lower()])
        iso = _ISO.match(value.strip())
        if iso and any(iso.groupdict().values()):
            d, h, m, s = (float(iso[k] or 0) for k in "dhms")
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
    raise ValueError(f"{_shown(value)} is not a duration: use e.g. 30s, 10m, 6h, 7d or PT6H")


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
