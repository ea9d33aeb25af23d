"""An action adapter whose effect is a line in a shared file: effects can be counted across processes.

It keeps the adapter contract: on ``action.resumed`` it first looks for what an earlier attempt did (its own log) and
returns that instead of acting again. Faults are deterministic by seed: half of them before the effect (nothing
happened), half after it (the effect happened but the caller never heard — a lost response).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

from shared.actions import ActionKind, ActionResult, PlannedAction
from shared.errors import TransientError


class RecordingAdapter:
    live = True

    def __init__(
        self,
        kind: ActionKind,
        log: Path,
        *,
        fail_rate: float = 0.0,
        seed: int = 0,
        hang_marker: Path | None = None,
        hang_after_effect: bool = False,
    ) -> None:
        self.kind = kind
        self.log = log
        self.fail_rate = fail_rate
        self.calls = 0
        self._random = random.Random(f"{seed}-{kind.value}")
        self._hang_marker = hang_marker
        self._hang_after_effect = hang_after_effect

    def execute(self, action: PlannedAction) -> ActionResult:
        self.calls += 1
        if action.resumed and action.key in effects(self.log):
            return ActionResult(external_id=f"rec-{action.short_key}", detail="found the effect of an earlier attempt")
        if self._hang_marker is not None and not self._hang_after_effect:
            self._hang()
        draw = self._random.random()
        if draw < self.fail_rate / 2:
            raise TransientError(f"{self.kind.value}: 503 before the effect (injected)")
        self._effect(action)
        if self._hang_marker is not None:
            self._hang()
        if draw < self.fail_rate:
            raise TransientError(f"{self.kind.value}: timeout after the effect (injected)")
        return ActionResult(external_id=f"rec-{action.short_key}", detail=f"recorded {self.kind.value}")

    def _effect(self, action: PlannedAction) -> None:
        line = f"{action.key} {action.event.id} {os.getpid()}\n".encode()
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines from many processes never interleave
        finally:
            os.close(fd)

    def _hang(self) -> None:
        """Stand still in the middle of the action, for a test to ``kill -9`` this process."""
        assert self._hang_marker is not None
        self._hang_marker.touch()
        while True:
            time.sleep(60)


def effects(log: Path) -> Counter[str]:
    """How many times each action key took effect."""
    if not log.exists():
        return Counter()
    return Counter(line.split(" ", 1)[0] for line in log.read_text().splitlines() if line)
