"""What each event kind puts in its template context: the one table that ``rules check``, the README and the tests
read.

``AzureMLEvent.context()`` builds the values; this table says which paths exist for which kind. A test renders the
context of a sample of every kind and compares its paths with this table, and another compares the README's
"Paths into the event context" table with ``readme_table()``, so the three cannot drift apart. A new event kind adds
its rows here (and to the README table: the test prints the expected text).

A path ending in ``.*`` is a mapping with free keys (tags, properties): any key below it exists for the checks,
and the mapping itself is a value too (``{{ run.tags | json }}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.events import EventKind

EVERY_EVENT: tuple[EventKind, ...] = ()
_RUNS = (EventKind.RUN_COMPLETED, EventKind.RUN_STATUS_CHANGED, EventKind.MODEL_MONITOR_SIGNAL)
_RELEASES = (
    EventKind.RELEASE_AWAITING_APPROVAL, EventKind.RELEASE_APPROVED, EventKind.RELEASE_REJECTED,
    EventKind.RELEASE_DEPLOYED, EventKind.RELEASE_FAILED, EventKind.RELEASE_EXPIRED,
)


@dataclass(frozen=True)
class Fields:
    """One row: paths (each may carry a note after a space, for the README) and the kinds that have them."""

    paths: tuple[str, ...]
    kinds: tuple[EventKind, ...] = EVERY_EVENT
    #: How the README says "available for" when the kinds alone do not say it all.
    available_for: str = ""

    def names(self) -> list[str]:
        return [entry.split(" ", 1)[0] for entry in self.paths]


CONTEXT_FIELDS: tuple[Fields, ...] = (
    Fields(("event.id", "event.type", "event.kind", "event.subject", "event.source", "event.time")),
    Fields(("workspace.id", "workspace.name", "workspace.resource_group", "workspace.subscription_id")),
    Fields(("correlation_id (the `mlreactor.correlation` tag, else this event's id)",
            "tags.* (the model's tags for model events, the run's for run events, the service's for ModelDeployed)")),
    Fields(
        ("model.name", "model.version", "model.id (`name:version`)", "model.asset (`azureml:name:version`)",
         "model.tags.*", "model.properties.*"),
        (EventKind.MODEL_REGISTERED, EventKind.MODEL_DEPLOYED),
        "ModelRegistered; ModelDeployed (its first model)",
    ),
    Fields(
        ("deployment.service_name", "deployment.compute_type", "deployment.tags.*", "deployment.properties.*",
         "deployment.models (a list: every deployed model)"),
        (EventKind.MODEL_DEPLOYED,),
    ),
    Fields(
        ("run.id", "run.experiment_id", "run.experiment_name", "run.type", "run.status", "run.tags.*",
         "run.properties.*", "run.studio_url"),
        _RUNS,
    ),
    Fields(("monitor.name", "monitor.signal", "monitor.message"),
           (EventKind.DATASET_DRIFT_DETECTED, EventKind.MODEL_MONITOR_SIGNAL)),
    Fields(
        ("drift.id", "drift.name", "drift.run_id", "drift.base_dataset_id", "drift.target_dataset_id",
         "drift.coefficient", "drift.start_time", "drift.end_time"),
        (EventKind.DATASET_DRIFT_DETECTED,),
    ),
    Fields(
        ("model.name", "model.version", "model.id",
         "model.asset (as mlreactor recorded them when it queued the release)", "model.tags.* (empty)",
         "model.properties.* (empty)"),
        _RELEASES,
        "every Release* kind",
    ),
    Fields(
        ("release.target (`azure-devops-pipeline`, `azure-devops-release`, `github-actions`)",
         "release.scope (organization or `owner/repo`)", "release.project", "release.id", "release.url",
         "release.approval_url", "release.environment", "release.transition (the kind)",
         "release.status (the target's words)", "release.actor",
         "release.comment (who and why, where the target says; else empty)", "release.via (`hook` or `reconciler`)",
         "release.reminder (0, or the reminder's number)", "release.waiting_since", "release.waiting_hours"),
        _RELEASES,
        "every Release* kind (`release.reminder` and `waiting_*`: ReleaseAwaitingApproval)",
    ),
)


def paths_for(kind: EventKind) -> list[str]:
    """Every path the context of an event of ``kind`` holds (``.*`` for free-keyed mappings)."""
    return [name for row in CONTEXT_FIELDS if not row.kinds or kind in row.kinds for name in row.names()]


def has_path(declared: Iterable[str], path: str) -> bool:
    """Whether ``path`` names a value among ``declared``: a declared path, a mapping above one, or a key under
    a free-keyed mapping (``run.tags.azureml.pipelineid`` under ``run.tags.*``)."""
    for name in declared:
        base = name.removesuffix(".*")
        if path == base or name.startswith(f"{path}."):
            return True
        if name.endswith(".*") and path.startswith(f"{base}."):
            return True
    return False


def kinds_with(path: str) -> list[EventKind]:
    """The event kinds whose context has ``path``."""
    return [kind for kind in EventKind if kind is not EventKind.UNKNOWN and has_path(paths_for(kind), path)]


def readme_table() -> str:
    """The README's "Paths into the event context" table, as Markdown."""
    lines = ["| path | available for |", "| --- | --- |"]
    for row in CONTEXT_FIELDS:
        paths = ", ".join(
            f"`{name}` {note}".rstrip() for name, _, note in (entry.partition(" ") for entry in row.paths)
        )
        available = row.available_for or (", ".join(k.value for k in row.kinds) if row.kinds else "every event")
        lines.append(f"| {paths} | {available} |")
    return "\n".join(lines)
