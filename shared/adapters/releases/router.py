"""``queue_release`` goes to the target its rule names: Azure DevOps (``pipeline``, ``classic``) or GitHub Actions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from shared.actions import ActionAdapter, ActionResult, PlannedAction, QueueReleaseParams
from shared.adapters.releases.gates import GateCheck


class GateReader(Protocol):
    """A live release adapter: it can read a target's approvals now, and knows its recent verdicts."""

    def check_gate(self, params: QueueReleaseParams) -> GateCheck: ...

    @property
    def gates(self) -> object: ...


class ReleaseRouter:
    """One ``queue_release`` adapter for every target; each flavour is live or dry-run on its own settings."""

    def __init__(self, devops: ActionAdapter, github: ActionAdapter) -> None:
        self.devops = devops
        self.github = github

    @property
    def live(self) -> bool:
        return self.devops.live or self.github.live

    def for_params(self, params: QueueReleaseParams) -> ActionAdapter:
        return self.github if params.flavour == "github" else self.devops

    def execute(self, action: PlannedAction) -> ActionResult:
        assert isinstance(action.params, QueueReleaseParams)
        return self.for_params(action.params).execute(action)

    def verdicts(self) -> Iterator[GateCheck]:
        """The last verdict of every target this process verified (for ``/api/health``), newest knowledge only."""
        for adapter in (self.devops, self.github):
            book = getattr(adapter, "gates", None)
            if book is not None:
                yield from book.latest()
