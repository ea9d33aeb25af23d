"""Retries of release-target calls, ours and bounded: neither msrest nor urllib retries a POST.

408, 429, 5xx and dropped connections are retried with exponential backoff and full jitter, honouring the service's
wait hint (``Retry-After``, GitHub's ``x-ratelimit-reset``), inside a deadline that keeps the whole release within
Event Grid's 30 s window. A refusal before processing (429, a rate-limited 403) is simply repeated; after anything
else the POST may have taken effect, so ``before_retry`` — the idempotency lookup — runs before the next try and may
answer instead of it. Other 4xx are permanent (the event is quarantined with the service's message).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from shared.errors import PermanentError, TransientError

log = logging.getLogger("mlreactor.adapters.releases")

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
_MAX_BACKOFF_SECONDS = 8.0

T = TypeVar("T")


class Failure(Exception):
    """One failed call, classified by its HTTP status (None: no response at all)."""

    def __init__(
        self, status: int | None, message: str, retry_after: float | None = None, *, unprocessed: bool | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self._unprocessed = unprocessed

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE or bool(self._unprocessed)

    @property
    def unprocessed(self) -> bool:
        """Refused before anything happened (429, a rate limit): repeating it cannot create a second release."""
        return self._unprocessed if self._unprocessed is not None else self.status == 429

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status else "no response"
        return f"{status}: {self.args[0]}"


@dataclass
class Retrier:
    """The loop, with its knobs; ``sleep`` and ``rng`` are injectable so tests neither wait nor vary."""

    service: str
    attempts: int
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def run(
        self,
        what: str,
        deadline: float,
        call: Callable[[], T],
        *,
        before_retry: Callable[[Failure], T | None] | None = None,
    ) -> T:
        """``call`` until it answers; ``deadline`` is a ``time.monotonic()`` instant."""
        attempt = 0
        while True:
            if time.monotonic() > deadline:  # the release's overall deadline, not each request's
                raise TransientError(f"{what}: out of time for this release; Event Grid will redeliver")
            try:
                return call()
            except Failure as failure:
                attempt += 1
                if not failure.retryable:
                    raise PermanentError(f"{what}: {self.service} answered {failure}") from failure
                backoff = self.rng.uniform(0, min(_MAX_BACKOFF_SECONDS, 0.5 * 2**attempt))
                delay = max(failure.retry_after or 0.0, backoff)
                if attempt > self.attempts or time.monotonic() + delay > deadline:
                    raise TransientError(
                        f"{what}: {failure} (after {attempt} attempt(s)); Event Grid will redeliver"
                    ) from failure
                log.warning("%s: %s; retry %d in %.1f s", what, failure, attempt, delay)
                self.sleep(delay)
                if before_retry is not None and not failure.unprocessed:
                    answer = before_retry(failure)
                    if answer is not None:
                        return answer
