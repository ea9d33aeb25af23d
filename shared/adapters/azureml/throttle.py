"""ARM's write budget as one instance sees it: a short wait for a token happens in the delivery, a long one fails it.

Azure Resource Manager throttles writes per subscription and region with a token bucket (Microsoft, "Understand how
Azure Resource Manager throttles requests", checked 2026-12: writes bucket 200, refilled at 10 per second; a job PUT
and a model-version PUT are writes) and reports what is left in ``x-ms-ratelimit-remaining-subscription-writes``; an
empty bucket answers 429 with ``Retry-After``. The retry policy (``clients``) feeds both from every answer into
``observe``; before each write ``write`` decides:

- at most ``azureml_max_concurrent_submissions`` writes wait or fly at once on this instance (the concurrency cap:
  with ``maximumInstanceCount`` it bounds what the whole fleet can have in flight against the bucket);
- while the bucket is low (no more tokens left than the fleet can have in flight) each instance spaces its writes by
  its share of the refill, ``azureml_fleet_instances / 10`` s, so the fleet sends what ARM refills and no more;
- after a 429 this instance sends nothing until the Retry-After has passed.

A wait up to ``azureml_throttle_wait_seconds`` (and within the action's deadline) is slept in the delivery; a longer
one raises ``ThrottledError`` before anything is sent: the reason names the Retry-After, and Event Grid's back-off
(10 s, 30 s, 1 min, 5 min, …) does the waiting instead of the instance.

Example: a burst of 16,000 retrains, 20 instances x 4 slots. The first ~120 go at once; then each instance sends one
write every 2 s (20 / 10): a slot freed at its turn is taken by a delivery whose turn is 4 x 2 = 8 s away, inside the
10 s a delivery may wait, and the fleet holds ARM's 10 writes/s.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from shared.adapters.azureml.timing import Timing
from shared.errors import TransientError
from shared.settings import Settings

#: ARM's refill of the subscription write bucket, tokens per second (the page above).
ARM_WRITE_REFILL = 10.0
ARM_WRITE_BUCKET = 200
REMAINING_WRITES = "x-ms-ratelimit-remaining-subscription-writes"
_SUBSCRIPTION = re.compile(r"/subscriptions/([^/?]+)", re.IGNORECASE)


class ThrottledError(TransientError):
    """Nothing was sent: the instance's share of ARM's write budget is spent for longer than a delivery may wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def subscription_of(url: str) -> str | None:
    match = _SUBSCRIPTION.search(url)
    return match[1].lower() if match else None


class WriteBudget:
    """Per-subscription pacing of this instance's ARM writes (see the module docstring). Thread-safe."""

    def __init__(self, settings: Settings, timing: Timing) -> None:
        self._slots = settings.azureml_max_concurrent_submissions
        self._fleet = settings.azureml_fleet_instances
        self._max_wait = settings.azureml_throttle_wait_seconds
        self._timing = timing
        self._lock = threading.Lock()
        self._in_flight = 0
        self._remaining: dict[str, int] = {}  # the last remaining-writes header per subscription
        self._next: dict[str, float] = {}  # earliest time (timing.clock) this instance sends its next write

    def observe(self, subscription: str, remaining: int | None, retry_after: float | None) -> None:
        """What an ARM answer said: tokens left after it, and (a 429) how long to send nothing."""
        with self._lock:
            if remaining is not None:
                self._remaining[subscription] = remaining
            if retry_after is not None:
                until = self._timing.clock() + retry_after
                self._next[subscription] = max(self._next.get(subscription, until), until)

    @contextmanager
    def write(self, subscription: str, what: str) -> Iterator[None]:
        """Hold a slot and this write's turn for the block (one write); ``ThrottledError`` if the turn is too far."""
        key = subscription.lower()
        with self._lock:
            now = self._timing.clock()
            limit = min(self._max_wait, self._timing.left())
            turn = max(now, self._next.get(key, now))
            wait = turn - now
            if self._in_flight >= self._slots:
                raise ThrottledError(
                    f"{what}: {self._slots} Azure ML writes already wait or run on this instance "
                    "(MLREACTOR_AZUREML_MAX_CONCURRENT_SUBMISSIONS); Retry-After "
                    f"{max(wait, self._fleet / ARM_WRITE_REFILL):.1f} s, Event Grid redelivers",
                    max(wait, self._fleet / ARM_WRITE_REFILL),
                )
            if wait > limit:
                raise ThrottledError(
                    f"{what}: ARM's write budget of subscription {subscription} is spent for this instance: "
                    f"Retry-After {wait:.1f} s, more than the {limit:.1f} s a delivery may wait; nothing was sent, "
                    "Event Grid redelivers",
                    wait,
                )
            low = self._remaining.get(key, ARM_WRITE_BUCKET) <= self._fleet * self._slots
            self._next[key] = turn + (self._fleet / ARM_WRITE_REFILL if low else 0.0)
            self._in_flight += 1
        try:
            if wait > 0:
                self._timing.sleep(wait)
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
