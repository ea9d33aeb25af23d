"""Dry-run: record the fully rendered action instead of calling Azure.

Used for every action kind without live settings (local runs, ``make run``, the CLI by default) and in tests of the
engine. What would have been sent is the action's result — ``data["params"]``, the rendered parameters — which the
engine stores in the ledger and the audit like any result; the adapter itself keeps nothing, so a long dry run
holds no more memory after 100k events than after ten (``benchmarks/replay_memory.py``).
"""

from __future__ import annotations

import json

from shared.actions import ActionKind, ActionResult, PlannedAction

_DETAIL = 300


class DryRunAdapter:
    """Accepts any action of its kind and answers with what it would have done; never touches the network."""

    live = False

    def __init__(self, kind: ActionKind) -> None:
        self.kind = kind

    def execute(self, action: PlannedAction) -> ActionResult:
        rendered = action.params.model_dump(mode="json", exclude_defaults=True)
        return ActionResult(
            external_id=f"dryrun-{action.short_key}",
            detail=f"dry-run: would {action.kind.value} {_summary(rendered)}",
            data={"dry_run": True, "params": rendered},
        )


def _summary(params: dict[str, object]) -> str:
    """One readable line; the full parameters are in the result's ``data``."""
    text = ", ".join(f"{k}={json.dumps(v, sort_keys=True, default=str)}" for k, v in params.items())
    return text if len(text) <= _DETAIL else text[: _DETAIL - 1] + "…"
