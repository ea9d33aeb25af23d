"""Dry-run: record the fully rendered action instead of calling Azure.

Used for every action kind when Azure settings are absent (local runs, ``make run``, the CLI by default) and in
tests of the engine. ``executed`` keeps what would have been sent, in order, so tests can count effects.
"""

from __future__ import annotations

import threading

from shared.actions import ActionKind, ActionResult, PlannedAction, stand_in_result


class DryRunAdapter:
    """Accepts any action of its kind and remembers it; never touches the network."""

    live = False

    def __init__(self, kind: ActionKind) -> None:
        self.kind = kind
        self.executed: list[PlannedAction] = []
        self._lock = threading.Lock()

    def execute(self, action: PlannedAction) -> ActionResult:
        with self._lock:
            self.executed.append(action)
        rendered = action.params.model_dump(exclude_defaults=True)
        return ActionResult(
            external_id=f"dryrun-{action.short_key}",
            detail=f"dry-run: would {action.kind.value} {_summary(rendered)}",
            # The fields a live result holds, so what follows "if: release.id" shows as it would run live.
            data=stand_in_result(action.kind, action.params.model_dump(mode="json"), "dryrun"),
        )


def _summary(params: dict[str, object]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= 300 else text[:297] + "..."
