"""Every chain has a verdict: how it ended, or where it stands — computed from its audit entries alone.

A chain is every audit entry carrying one correlation id. Its entries are grouped into **steps**, one per event:
a redelivery or a redrive of an event is another *attempt* of the same step, never a new step. The verdict is the
last step that says something about the chain's end, read oldest first:

==============================  ==========================================================================
verdict                         what says so
==============================  ==========================================================================
deployed as champion            ``ReleaseDeployed`` acted on (or ``ModelDeployed``, the older trigger)
rejected by the gate            a ``quality_gate`` action whose recorded result did not pass
rejected by a reviewer          ``ReleaseRejected``
approval expired                ``ReleaseExpired``
awaiting approval since …       a ``queue_release`` action done, or ``ReleaseAwaitingApproval``
failed at step …                a step quarantined or rejected, ``ReleaseFailed``, or a chain run that failed
stalled at step …               none of the above, and no event for longer than ``MLREACTOR_CHAIN_STALL_AFTER``
in progress at step …           none of the above, and the last event is recent
==============================  ==========================================================================

A failed chain run is a ``RunStatusChanged`` step after the chain's first step: the chain starts with a drift
signal (a model monitor's ``RunStatusChanged``), and the Event Grid subscriptions forward ``RunStatusChanged`` only
for ``Failed``/``Canceled`` runs (``infra/app/workspace-events.bicep``).

A chain waiting for a person (awaiting approval) never stalls: the wait is the person's, and the release target
tells when it expires. Each step has a tone for the views (good, bad, waiting, running, neutral); the last step
takes the verdict's tone when the chain ended badly, so a bad chain never ends on a green dot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.clock import format_duration
from shared.ledger.port import AuditEntry


class Ending(StrEnum):
    DEPLOYED = "deployed"
    REJECTED_BY_GATE = "rejected-by-gate"
    REJECTED_BY_REVIEWER = "rejected-by-reviewer"
    APPROVAL_EXPIRED = "approval-expired"
    AWAITING_APPROVAL = "awaiting-approval"
    FAILED = "failed"
    STALLED = "stalled"
    IN_PROGRESS = "in-progress"


class Tone(StrEnum):
    GOOD = "good"
    BAD = "bad"
    WAITING = "waiting"
    RUNNING = "running"
    NEUTRAL = "neutral"


TONES = {
    Ending.DEPLOYED: Tone.GOOD, Ending.REJECTED_BY_GATE: Tone.BAD, Ending.REJECTED_BY_REVIEWER: Tone.BAD,
    Ending.APPROVAL_EXPIRED: Tone.BAD, Ending.FAILED: Tone.BAD, Ending.STALLED: Tone.BAD,
    Ending.AWAITING_APPROVAL: Tone.WAITING, Ending.IN_PROGRESS: Tone.RUNNING,
}
#: Endings after which nothing more is expected of the chain.
FINAL = frozenset({Ending.DEPLOYED, Ending.REJECTED_BY_GATE, Ending.REJECTED_BY_REVIEWER, Ending.APPROVAL_EXPIRED,
                   Ending.FAILED})

_OUTCOME_TONES = {"acted": Tone.GOOD, "quarantined": Tone.BAD, "rejected": Tone.BAD, "failed": Tone.BAD}


def short_type(event_type: str) -> str:
    """``Microsoft.MachineLearningServices.RunCompleted`` → ``RunCompleted``; release signals keep their name."""
    return event_type.rsplit(".", 1)[-1] if event_type else "unparseable event"


@dataclass(frozen=True)
class Step:
    """One event of the chain with every attempt at it (deliveries, redeliveries, redrives), oldest first."""

    event_id: str | None
    kind: str
    attempts: list[AuditEntry]
    tone: Tone = Tone.NEUTRAL
    note: str = ""

    @property
    def at(self) -> datetime:
        return self.attempts[0].at

    @property
    def last_at(self) -> datetime:
        return self.attempts[-1].at

    @property
    def decisive(self) -> AuditEntry:
        """The attempt that says what the step did: the last one that was not a duplicate."""
        real = [a for a in self.attempts if a.outcome != "duplicate"]
        return real[-1] if real else self.attempts[-1]

    @property
    def outcome(self) -> str:
        return self.decisive.outcome

    @property
    def actions(self) -> list[dict[str, Any]]:
        """Each action of the step once, as the attempt that did it recorded it (a later attempt only says
        "already done"), else as the last attempt left it."""
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for attempt in self.attempts:
            for action in attempt.actions:
                key = (str(action.get("rule")), str(action.get("kind")), str(action.get("key")))
                if found.get(key, {}).get("status") != "done":
                    found[key] = action
        return list(found.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "kind": self.kind, "at": self.at.isoformat(), "outcome": self.outcome,
            "tone": self.tone.value, "note": self.note, "attempts": [a.as_dict() for a in self.attempts],
        }


@dataclass(frozen=True)
class Verdict:
    ending: Ending
    text: str
    step: str
    since: datetime | None = None

    @property
    def tone(self) -> Tone:
        return TONES[self.ending]

    @property
    def final(self) -> bool:
        return self.ending in FINAL

    def as_dict(self) -> dict[str, Any]:
        return {"ending": self.ending.value, "text": self.text, "step": self.step, "tone": self.tone.value,
                "final": self.final, "since": self.since.isoformat() if self.since else None}


@dataclass(frozen=True)
class Chain:
    correlation_id: str
    steps: list[Step]
    verdict: Verdict
    models: list[str] = field(default_factory=list)

    @property
    def last_at(self) -> datetime | None:
        return max((s.last_at for s in self.steps), default=None)

    @property
    def started_work(self) -> bool:
        """More than one step, or a first step that launched a run or a release that will come back: a lone
        event that only notified (a failed run outside any chain) carries its own id as correlation too, but is
        no chain."""
        if len(self.steps) > 1:
            return True
        return any(a.get("kind") in _LAUNCHES and a.get("status") != "not run"
                   for s in self.steps for a in s.actions)

    def as_dict(self) -> dict[str, Any]:
        last = self.last_at
        return {"correlation_id": self.correlation_id, "verdict": self.verdict.as_dict(), "models": self.models,
                "last_event_at": last.isoformat() if last else None, "steps": [s.as_dict() for s in self.steps]}


def chain(correlation_id: str, entries: Iterable[AuditEntry], now: datetime, stall_after: timedelta) -> Chain:
    """The chain's steps (oldest first) and its verdict, from its audit entries in any order."""
    steps = _steps(entries)
    if not steps:
        return Chain(correlation_id, [], Verdict(Ending.IN_PROGRESS, "no audit records for this chain", "-"))
    judged: tuple[int, Verdict] | None = None
    toned: list[Step] = []
    models: list[str] = []
    for index, step in enumerate(steps):
        found = _judge(step, index, models)
        tone = _OUTCOME_TONES.get(step.outcome, Tone.NEUTRAL)
        if found is not None:
            earlier = judged[1] if judged is not None else None
            if found.ending is Ending.AWAITING_APPROVAL and earlier and earlier.ending is Ending.AWAITING_APPROVAL:
                found = earlier  # a reminder: the wait began with the first signal
            judged = (index, found)
            tone = TONES[found.ending] if found.ending is not Ending.IN_PROGRESS else tone
        toned.append(Step(step.event_id, step.kind, step.attempts, tone, found.text if found else ""))
    if judged is not None and judged[1].ending is not Ending.IN_PROGRESS:
        verdict = judged[1]
    else:  # a transient failure or an approval tells where the chain stands only while it is the last step
        current = judged[1] if judged is not None and judged[0] == len(toned) - 1 else None
        verdict = _in_progress(toned[-1], current, now, stall_after)
    if verdict.tone is Tone.BAD and toned[-1].tone is not Tone.BAD:
        last = toned[-1]
        toned[-1] = Step(last.event_id, last.kind, last.attempts, Tone.BAD, last.note or verdict.text)
    return Chain(correlation_id, toned, verdict, models)


def _steps(entries: Iterable[AuditEntry]) -> list[Step]:
    by_event: dict[str, list[AuditEntry]] = {}
    for entry in sorted(entries, key=lambda e: e.at):
        key = entry.event_key or entry.event_id or f"unparsed@{entry.at.isoformat()}"
        by_event.setdefault(key, []).append(entry)
    steps = [Step(a[0].event_id, short_type(a[0].event_type), a) for a in by_event.values()]
    return sorted(steps, key=lambda s: s.at)


def _judge(step: Step, index: int, models: list[str]) -> Verdict | None:
    """What this step says about the chain's end, or None (it only moved the chain along)."""
    entry, kind = step.decisive, step.kind
    if entry.outcome in ("quarantined", "rejected"):
        return Verdict(Ending.FAILED, f"failed at step {kind}: {entry.outcome} — {entry.reason}", kind, entry.at)
    if entry.outcome == "failed":
        return Verdict(Ending.IN_PROGRESS, f"at step {kind}, failing transiently (redelivered): {entry.reason}",
                       kind, entry.at)
    if entry.outcome != "acted":
        return None
    for action in entry.actions:
        model = _model(action)
        if model and model not in models:
            models.append(model)
    about = f": {models[-1]}" if models else ""
    when = f"{entry.at:%Y-%m-%d %H:%M} UTC"
    if kind in ("ReleaseDeployed", "ModelDeployed"):
        return Verdict(Ending.DEPLOYED, f"deployed as champion{about} ({kind} at {when})", kind, entry.at)
    if kind == "ReleaseRejected":
        return Verdict(Ending.REJECTED_BY_REVIEWER, f"rejected by a reviewer{about} at {when}", kind, entry.at)
    if kind == "ReleaseExpired":
        return Verdict(Ending.APPROVAL_EXPIRED, f"approval expired{about} at {when}", kind, entry.at)
    if kind == "ReleaseFailed":
        return Verdict(Ending.FAILED, f"failed at step release{about}: the deployment failed at {when}", kind,
                       entry.at)
    if kind == "ReleaseAwaitingApproval":
        return Verdict(Ending.AWAITING_APPROVAL, f"awaiting approval since {when}{about}", kind, entry.at)
    if kind == "ReleaseApproved":
        return Verdict(Ending.IN_PROGRESS, f"at step {kind}: approved at {when}{about}, deploying", kind, entry.at)
    gate = next((a for a in entry.actions if a.get("kind") == "quality_gate" and a.get("status") in _DONE), None)
    if gate is not None and not _passed(gate):
        detail = str(gate.get("data", {}).get("summary") or gate.get("detail") or "")
        return Verdict(Ending.REJECTED_BY_GATE, f"rejected by the gate{about}: {detail}", kind, entry.at)
    release = next((a for a in entry.actions if a.get("kind") == "queue_release" and a.get("status") in _DONE), None)
    if release is not None:
        number = release.get("external_id") or release.get("data", {}).get("id")
        name = f" (release #{number})" if number else ""
        return Verdict(Ending.AWAITING_APPROVAL, f"awaiting approval since {when}{about}{name}", kind, entry.at)
    if kind == "RunStatusChanged" and index > 0:
        run = entry.subject.rsplit("/", 1)[-1] or entry.subject
        return Verdict(Ending.FAILED, f"failed at step RunStatusChanged: run {run} failed or was canceled", kind,
                       entry.at)
    return None


_DONE = ("done", "skipped")
_LAUNCHES = ("run_pipeline", "queue_release")


def _passed(gate: Mapping[str, Any]) -> bool:
    """The gate's recorded result; an entry written before results were recorded is read from its detail."""
    data = gate.get("data") or {}
    if "passed" in data:
        return bool(data["passed"])
    return " rejected — " not in str(gate.get("detail", ""))


def _model(action: Mapping[str, Any]) -> str | None:
    """``name:version`` of the model an action judged or released (its result, or dry-run's parameters)."""
    if action.get("kind") not in ("quality_gate", "queue_release"):
        return None
    data = action.get("data") or {}
    params = data.get("params")
    source: Mapping[str, Any] = params if isinstance(params, dict) else data
    name, version = source.get("model"), source.get("version")
    return f"{name}:{version}" if name and version else None


def _in_progress(last: Step, current: Verdict | None, now: datetime, stall_after: timedelta) -> Verdict:
    """Not ended: in progress at the last step, or stalled there when nothing happened for too long."""
    quiet = now - last.last_at
    where = current.text if current is not None else f"at step {last.kind}"
    if quiet > stall_after:
        text = f"stalled at step {last.kind}: no event for {_ago(quiet)} (more than {format_duration(stall_after)})"
        return Verdict(Ending.STALLED, text if current is None else f"{text}; {where}", last.kind, last.last_at)
    return Verdict(Ending.IN_PROGRESS, f"in progress {where} (last event {_ago(quiet)} ago)", last.kind,
                   last.last_at)


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes and not days else ""]
    return " ".join(p for p in parts if p) or f"{seconds}s"
