"""The reconciler: hooks make the chain fast, this makes it certain.

Every run of the timer reads the releases the ledger still holds as pending — at most ``release_reconcile_max``,
least recently checked first, **one GET each** — and hands what it sees to ``intake.receive`` exactly as a hook
would. The event id depends only on (target, scope, id, transition), so a transition both a hook and the reconciler
report is one event: the second is a ``duplicate``.

It also sends the reminders: a release that has waited for approval ``release_reminder_after`` (48 h by default)
gets reminder 1, after twice that reminder 2, and so on — each its own ReleaseAwaitingApproval event (``release.
reminder`` = n), so each is sent once however often the timer runs.

What one GET can tell (Azure DevOps):

* YAML run (``GET {project}/_apis/pipelines/{pipeline}/runs/{run}``): completed succeeded → deployed, failed /
  canceled → failed. A run does not say it waits for an approval, nor that a reviewer rejected it (it then just
  fails): those come from the hooks only;
* classic release (``GET {project}/_apis/release/releases/{id}``): the stage named by the record (``environment``)
  with its status and pre-deployment approvals: pending → awaiting approval, approved, rejected (with who and the
  comment), succeeded → deployed, canceled / partially succeeded → failed.

What one GET can tell (GitHub Actions, ``GET /repos/{owner}/{repo}/actions/runs/{run}`` through the release
adapter's client and credentials — ``shared/adapters/github/state.py``): completed success → deployed; completed
failure / cancelled / timed_out (and the hook's other failing conclusions) → failed; ``waiting`` → awaiting approval.
Who approved or rejected, and whether a ``timed_out`` run was an approval that expired, come from the hooks only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.engine import Engine
from shared.errors import PermanentError, TransientError
from shared.ledger.port import Ledger, ReleaseRecord, ReleaseState
from shared.outcomes import EventOutcome
from shared.releases import intake
from shared.releases.signals import Signal
from shared.settings import Settings

log = logging.getLogger("mlreactor.releases.reconciler")


class StateReader(Protocol):
    """Reads one release's state with one request; None when it shows no transition mlreactor follows."""

    def read(self, record: ReleaseRecord) -> Signal | None: ...


@dataclass
class Report:
    read: int = 0
    outcomes: list[EventOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        told = ", ".join(f"{o.event_type} {o.outcome.value}" for o in self.outcomes) or "no transitions"
        errors = f"; {len(self.errors)} not readable: {'; '.join(self.errors)}" if self.errors else ""
        return f"{self.read} release(s) read: {told}{errors}"


def reconcile(engine: Engine, readers: Mapping[str, StateReader], settings: Settings, now: datetime) -> Report:
    """One pass over the pending releases (see the module docstring)."""
    ledger = engine.ledger
    report = Report()
    for record in ledger.pending_releases(settings.release_reconcile_max):
        reader = readers.get(record.target)
        signal: Signal | None = None
        if reader is None:
            report.errors.append(f"{record.target} #{record.release_id}: no reader for this target")
        else:
            report.read += 1
            try:
                signal = reader.read(record)
            except (TransientError, PermanentError) as exc:
                report.errors.append(f"{record.target} #{record.release_id}: {exc}")
                log.warning("cannot read release %s %s: %s", record.target, record.release_id, exc)
        if signal is not None:
            report.outcomes.append(intake.receive(engine, signal, now, via="reconciler"))
        else:
            ledger.advance_release(record.key, record.state, now)  # checked: next time, the others first
        current = ledger.find_release(record.target, record.scope, record.release_id) if signal else record
        reminder = _reminder_number(current, settings, now)
        if current is not None and reminder:
            report.outcomes.append(intake.remind(engine, current, reminder, now))
    return report


def _reminder_number(record: ReleaseRecord | None, settings: Settings, now: datetime) -> int:
    if record is None or record.state is not ReleaseState.AWAITING_APPROVAL or record.waiting_since is None:
        return 0
    return int((now - record.waiting_since) / settings.release_reminder_after)


def readers(settings: Settings, ledger: Ledger) -> dict[str, StateReader]:
    """The live readers the settings allow (Azure DevOps when an organization is configured, GitHub Actions when
    an App or a fine-grained token is)."""
    found: dict[str, StateReader] = {}
    if settings.devops_organization_url and settings.dry_run is not True:
        from shared.adapters.devops import DevOpsReleaseAdapter  # noqa: PLC0415 - only the timer needs it
        from shared.adapters.devops_state import DevOpsStateReader  # noqa: PLC0415

        reader = DevOpsStateReader(DevOpsReleaseAdapter(settings, ledger), settings.devops_organization_url)
        found.update(dict.fromkeys(reader.targets, reader))
    if settings.github_is_configured and settings.dry_run is not True:
        from shared.adapters.github import GitHubReleaseAdapter  # noqa: PLC0415 - only the timer needs it
        from shared.adapters.github.state import GitHubStateReader  # noqa: PLC0415

        github = GitHubStateReader(GitHubReleaseAdapter(settings, ledger))
        found.update(dict.fromkeys(github.targets, github))
    return found
