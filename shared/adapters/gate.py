"""The ``quality_gate`` action: gather the numbers, judge them (``shared/gate.py``), record the verdict.

Metrics come from the RunCompleted event's run tags/properties first (``mlreactor.metric.<name>``: no call), then
from the run itself through ``ModelState``. The champion is the model version carrying the champion tag; its numbers
are its own ``mlreactor.metric.*`` tags, written when it passed its gate.

Out of order: if the candidate model does not yet carry the chain's candidate tag (its ModelRegistered event was not
processed yet), the gate raises ``NotReadyError`` so Event Grid redelivers later — for ``wait_for_candidate`` after
the event, then it gives up permanently (a test run of a model the chain never registered).

The gate's ``workspace`` may name a registry the chain promotes champions to: the champion is then looked up there,
while the run and the candidate (registered where the run ran) are read in the event's workspace.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from shared.actions import ActionResult, PlannedAction, QualityGateParams
from shared.clock import Clock, SystemClock, parse_duration
from shared.errors import NotReadyError, PermanentError
from shared.events import Registry, RunCompleted
from shared.gate import evaluate, metrics_from_tags


class ModelState(Protocol):
    """What the gate reads from a workspace. ``authoritative`` is False where nothing can be read (dry-run)."""

    @property
    def authoritative(self) -> bool: ...

    def model_tags(self, workspace: str, name: str, version: str) -> Mapping[str, str] | None:
        """The version's tags, or None if there is no such model version."""
        ...

    def find_model_by_tag(
        self, workspace: str, name: str, key: str, value: str
    ) -> tuple[str, Mapping[str, str]] | None:
        """The newest version of ``name`` whose tag ``key`` equals ``value``: (version, tags)."""
        ...

    def run_tags(self, workspace: str, run_id: str) -> Mapping[str, str]:
        """A run's tags and properties, merged with those of its child (step) runs."""
        ...


class UnknownState:
    """Dry-run: no workspace to read. The gate judges the event's own numbers and says what it could not check."""

    authoritative = False

    def model_tags(self, workspace: str, name: str, version: str) -> Mapping[str, str] | None:
        return None

    def find_model_by_tag(
        self, workspace: str, name: str, key: str, value: str
    ) -> tuple[str, Mapping[str, str]] | None:
        return None

    def run_tags(self, workspace: str, run_id: str) -> Mapping[str, str]:
        return {}


class GateAdapter:
    def __init__(self, state: ModelState, clock: Clock | None = None) -> None:
        self.state = state
        self.clock = clock or SystemClock()

    @property
    def live(self) -> bool:
        return self.state.authoritative

    def execute(self, action: PlannedAction) -> ActionResult:
        params = action.params
        assert isinstance(params, QualityGateParams)
        event = action.event
        champions_in = params.workspace or event.source
        # Runs and candidates live in workspaces; a registry named here is only where the champion is.
        workspace = event.source if Registry.parse(champions_in) else champions_in
        model = f"{params.model}:{params.version}"
        if not params.model or not params.version:
            raise PermanentError(f"quality gate: no model to judge (model {params.model!r} version {params.version!r})")

        notes: list[str] = []
        if self.state.authoritative and params.candidate_tag:
            self._require_candidate(params, workspace, model, event.time or self.clock.now())
        elif not self.state.authoritative:
            notes.append("dry-run: registration and champion not checked")

        sources = [event.run_tags, event.run_properties] if isinstance(event, RunCompleted) else []
        candidate = metrics_from_tags(*sources)
        required = params.required if params.required is not None else list(params.metrics)
        if self.state.authoritative and any(name not in candidate for name in required):
            candidate = metrics_from_tags(*sources, self.state.run_tags(workspace, params.run))

        champion_version, champion = None, None
        if self.state.authoritative:
            key, _, value = params.champion_tag.partition("=")
            found = self.state.find_model_by_tag(champions_in, params.model, key, value)
            if found is not None and found[0] != params.version:
                champion_version, champion = found[0], metrics_from_tags(found[1])

        verdict = evaluate(params.metrics, required, candidate, champion, champion_version)
        data = {**verdict.as_data(candidate), "model": params.model, "version": params.version, "notes": notes}
        return ActionResult(detail=f"{model} {verdict.verdict} — {verdict.summary}", data=data)

    def _require_candidate(self, params: QualityGateParams, workspace: str, model: str, since: datetime) -> None:
        """The chain's mark (any value: the stage moves on) must be on the model before it is judged."""
        assert params.candidate_tag is not None
        key = params.candidate_tag.partition("=")[0]
        tags = self.state.model_tags(workspace, params.model, params.version)
        if tags is not None and key in tags:
            return
        waited = self.clock.now() - since
        limit = parse_duration(params.wait_for_candidate)
        state = "is not registered" if tags is None else f"has no {key!r} tag yet"
        if waited < limit:
            raise NotReadyError(f"model {model} {state}; waiting for its ModelRegistered to be processed")
        raise PermanentError(
            f"model {model} {state} {limit} after the run completed ({since:%Y-%m-%d %H:%M}Z):"
            " the chain never registered it as a candidate"
        )
