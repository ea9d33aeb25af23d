"""Dry-run: record the fully rendered action instead of calling Azure.

Used for every action kind without live settings (local runs, ``make run``, the CLI by default) and in tests of the
engine. What would have been sent is the action's result — ``data["params"]``, the rendered parameters — which the
engine stores in the ledger and the audit like any result; the adapter itself keeps nothing, so a long dry run
holds no more memory after 100k events than after ten (``benchmarks/replay_memory.py``).
"""

from __future__ import annotations

from typing import Any

from shared.actions import ActionKind, ActionResult, PlannedAction, stand_in_result
from shared.jsontext import canonical

_DETAIL = 300
_TEXT = 1_000  # characters kept of one text parameter in the recorded result
_ITEMS = 50  # entries kept of one mapping or list parameter


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
            # The fields a live result holds (so what follows "if: release.id" shows as it would run live), and
            # the rendered parameters: what would have been sent.
            data=_bounded({**stand_in_result(action.kind, action.params.model_dump(mode="json"), "dryrun"),
                           "dry_run": True, "params": rendered}),
        )


def _bounded(value: Any) -> Any:
    """The parameters with every long text cut: event data can be huge (a 70,000-character tag value), and the
    result is stored in the ledger (a Table Storage property holds at most 64 KiB)."""
    if isinstance(value, str):
        return value if len(value) <= _TEXT else value[: _TEXT - 1] + "…"
    if isinstance(value, dict):
        return {k: _bounded(v) for k, v in list(value.items())[:_ITEMS]}
    if isinstance(value, list):
        return [_bounded(v) for v in value[:_ITEMS]]
    return value


def _summary(params: dict[str, object]) -> str:
    """One readable line; the full parameters are in the result's ``data``."""
    text = ", ".join(f"{k}={canonical(v)}" for k, v in params.items())
    return text if len(text) <= _DETAIL else text[: _DETAIL - 1] + "…"
