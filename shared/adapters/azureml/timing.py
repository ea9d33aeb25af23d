"""The clock, the sleep and the deadline every Azure ML request of one action shares.

Real time in production (``time.monotonic`` / ``time.sleep``); a benchmark injects simulated time, so ARM's
throttling waits of a 16,000-model burst pass in seconds. One action (all its requests, retries, waits and timeouts)
never runs past its deadline: ``action_deadline`` sets it, every wait and timeout is cut to what is left of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

#: When the current action's time is up (``Timing.clock``); requests made outside an action have no deadline.
_deadline: ContextVar[float | None] = ContextVar("azureml_action_deadline", default=None)


@dataclass(frozen=True)
class Timing:
    clock: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], None] = field(default=time.sleep)

    @contextmanager
    def action_deadline(self, seconds: float) -> Iterator[None]:
        """Every Azure ML request made inside shares one deadline, ``seconds`` from now."""
        token = _deadline.set(self.clock() + seconds)
        try:
            yield
        finally:
            _deadline.reset(token)

    def left(self) -> float:
        """Seconds left to the current action's deadline (infinite outside an action)."""
        deadline = _deadline.get()
        return float("inf") if deadline is None else max(deadline - self.clock(), 0.0)

    def has_left(self, seconds: float) -> bool:
        return self.left() > seconds
