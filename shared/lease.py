"""A claim's lease kept alive while its holder works, and the check that stops a holder that lost it.

Why a heartbeat rather than a fencing token: the effects go to services that cannot check a token (Teams, Slack,
SMTP, Azure DevOps, Azure ML take no "only if claim N is still current" condition), so a token could only be checked
by us, before the effect — which is what ``Held.check`` does anyway. What a token cannot do is keep a second instance
from starting the same event while a slow effect is in flight; renewing the lease can.

So the holder of a claim (the engine's event claim, the Azure DevOps adapter's release lock):

- renews the lease from a background thread every ``lease / 3`` while it works — a fast event ends before the first
  beat and costs no round-trip; only a long action renews;
- before each effect calls ``check(need)``: the lease must still cover the effect's whole deadline (``need``), else it
  renews at once; if the claim was taken over or settled meanwhile, or cannot be renewed (ledger down) before it
  runs out, ``LeaseLost`` is raised — the holder stops and says so, and the event comes back on redelivery.

``record`` is the claim's current version (renewing changes it on Tables): settle with it once ``kept`` has ended.
Ending ``kept`` waits for a heartbeat renewal in flight and stops any later one: a renewal landing after ``record`` was
read would change the version the settle is conditional on, and the holder would take its own renewal for a takeover
(its outcome unstored, the event held for another lease).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from shared.clock import Clock
from shared.errors import TransientError
from shared.ledger.port import EventRecord, Ledger

log = logging.getLogger("mlreactor.lease")


class LeaseLost(TransientError):
    """This instance no longer holds the claim: it must not act; a redelivery resumes (or finds it done)."""


class Held:
    """One claim while its holder works (see the module docstring)."""

    def __init__(
        self, ledger: Ledger, record: EventRecord, lease: timedelta, clock: Clock, *, every: timedelta | None = None
    ) -> None:
        self.ledger = ledger
        self.record = record
        self.lease = lease
        self.clock = clock
        self.every = every if every is not None else lease / 3
        self.lost: str | None = None
        self.renewals = 0
        self._beating = False  # True while ``kept`` runs: the heartbeat renews only then
        self._lock = threading.Lock()  # one renewal at a time; ``record`` changes only under it

    def renew(self) -> bool:
        """Push the lease on now; False (and ``lost`` says why) if the claim is no longer ours."""
        with self._lock:
            return self._renew()

    def beat(self) -> bool:
        """The heartbeat's renewal: none once ``kept`` has ended (the holder is settling with ``record``)."""
        with self._lock:
            return self._beating and self._renew()

    def _renew(self) -> bool:
        if self.lost:
            return False
        try:
            renewed = self.ledger.renew_event(self.record, self.clock.now(), self.lease)
        except TransientError as exc:
            log.warning("cannot renew the lease of %s: %s", self.record.key[:40], exc)
            return False
        if renewed is None:
            self.lost = "another instance took the event over, or it was settled, while this one worked"
            log.warning("lost the claim of %s: %s", self.record.key[:40], self.lost)
            return False
        self.record = renewed
        self.renewals += 1
        return True

    def check(self, need: timedelta = timedelta(0)) -> None:
        """Raise ``LeaseLost`` unless the claim is ours and its lease covers ``need`` from now (renewing if not)."""
        if self.lost is None and self._covers(need):
            return
        if self.lost is None and self.renew() and self._covers(need):
            return
        until = self.record.lease_until.isoformat(timespec="seconds") if self.record.lease_until else "?"
        raise LeaseLost(f"lost the claim ({self.lost or f'its lease ends {until} and cannot be renewed'}); "
                        "stopped before the next effect, a redelivery resumes")

    def _covers(self, need: timedelta) -> bool:
        until = self.record.lease_until
        return until is not None and self.clock.now() + need < until

    @contextmanager
    def kept(self) -> Iterator[Held]:
        """Renew in the background for as long as the block runs (one shared thread beats every held claim); on
        leaving, wait for a renewal in flight, so ``record`` is the claim's last version."""
        self._beating = True
        _BEATER.add(self)
        try:
            yield self
        finally:
            _BEATER.remove(self)
            with self._lock:
                self._beating = False


class _Beater:
    """One daemon thread for every claim held in the process. Holding a claim costs a dict insertion — no thread
    start and no wake-up: the thread looks at least every ``tick`` (the shortest heartbeat seen), so a claim's first
    renewal comes within two heartbeats, well inside its lease (three)."""

    def __init__(self) -> None:
        self._due: dict[Held, float] = {}
        self._tick = 60.0
        self._lock = threading.Lock()
        self._shorter = threading.Event()  # set only when a shorter heartbeat than any before arrives
        self._thread: threading.Thread | None = None

    def add(self, held: Held) -> None:
        every = held.every.total_seconds()
        with self._lock:
            self._due[held] = time.monotonic() + every
            if every < self._tick:
                self._tick = every
                self._shorter.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mlreactor-lease", daemon=True)
                self._thread.start()

    def remove(self, held: Held) -> None:
        with self._lock:
            self._due.pop(held, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                ready = [h for h, due in self._due.items() if due <= now]
                for held in ready:
                    self._due[held] = now + held.every.total_seconds()
                pause = min([due - now for due in self._due.values()] + [self._tick])
            for held in ready:  # outside the lock: a renewal is a ledger round-trip
                if not held.beat() and held.lost:
                    self.remove(held)
            if not ready:
                self._shorter.wait(max(pause, 0.001))
                self._shorter.clear()


_BEATER = _Beater()
