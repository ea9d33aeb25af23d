"""Merge tags into model versions and jobs without losing anyone else's.

**Workspace models** are tagged key by key through the workspace's MLflow endpoint (``mlflow_tags``): each set or
delete touches one key on the service side, so two writers of different keys cannot lose each other's. One read-back
(the MLflow GET) confirms the change and gives the whole tag map; only if it differs — someone else wrote the version
whole in between — is the change redone after ``azureml_tag_settle_seconds`` (bounded; then ``TransientError``).

**Registries** (a rule's ``workspace:`` naming one) and **archiving** have no per-key API: the version is written
whole (``PUT …/models/{name}/versions/{v}``), so the tag map in the body replaces the stored one. The SDK sends no
``If-Match`` and its REST operations take none. A naive read-modify-write loses a tag when two writers interleave
(``A reads {a}; B reads {a}; A writes {a,x}; B writes {a,y}`` — ``x`` is gone), so:

1. writers of the same model version in one process take a lock (two reactions of one delivery, or two concurrent
   deliveries on one instance, never interleave);
2. every write is read back at once; if a key we set is missing or has another value, or a key we removed is back,
   the merge is redone on what was read after the settle time (bounded; then ``TransientError`` and Event Grid
   redelivers). The sleep is paid only by the write that met a concurrent writer.

What remains is a whole-body writer on another instance whose stale write lands after our read-back; closing that
needs a conditional write the service does not offer.

The whole-body read goes through the SDK's REST operations rather than ``ml.models.get``/``create_or_update``,
because that public round trip drops ``flavors`` and ``jobName`` from the PUT body and adds a GET of the version
list: the stored version is sent back exactly as read, with only its tags (and ``isArchived``) changed. For a
registry these are the registry data-plane calls (``GET``/``PUT …/registries/{name}/models/{model}/versions/{v}``,
api-version ``2021-10-01-dataplanepreview``) that ``ml.models`` makes for a registry client.

**Jobs** have a merge API: the run-history tags PATCH merges set and removed keys on the service side (see ``runs``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.actions import ActionResult, PlannedAction, TagModelParams, TagRunParams
from shared.adapters.azureml import runs
from shared.adapters.azureml.errors import calling, describe
from shared.adapters.azureml.mlflow_tags import MlflowModelTags
from shared.adapters.azureml.throttle import WriteBudget
from shared.adapters.azureml.timing import Timing
from shared.errors import PermanentError, TransientError
from shared.events import Registry, RunCompleted, Workspace

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

#: Writes of one model version before giving up to Event Grid's redelivery (each one verified by a read).
MAX_WRITES = 3


class KeyedLocks:
    """One lock per key (model version), created on demand."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


@dataclass(frozen=True)
class TagChange:
    """What one write must leave on a model version: these tags set, these keys gone, archived or not."""

    set: Mapping[str, str]
    remove: Sequence[str] = ()
    archive: bool = False

    def holds_on(self, tags: Mapping[str, str], archived: bool) -> bool:
        return (
            all(tags.get(k) == v for k, v in self.set.items())
            and not any(k in tags for k in self.remove)
            and (archived or not self.archive)
        )

    def applied_to(self, tags: Mapping[str, str]) -> dict[str, str]:
        merged = {**tags, **self.set}
        for key in self.remove:
            merged.pop(key, None)
        return merged

    def __str__(self) -> str:
        parts = [f"set {', '.join(sorted(self.set))}"] if self.set else []
        if self.remove:
            parts.append(f"removed {', '.join(sorted(self.remove))}")
        if self.archive:
            parts.append("archived")
        return "; ".join(parts) or "no tag change"


@dataclass(frozen=True)
class ModelTagger:
    """Tags of model versions: per key (MLflow) in a workspace, read-merge-write-verify otherwise (module docstring)."""

    ml: MLClient
    workspace: Workspace | Registry
    locks: KeyedLocks
    settle: float
    timing: Timing
    budget: WriteBudget
    #: The workspace's MLflow endpoint (built on first use, cached by the adapter); None for a registry.
    mlflow: Callable[[], MlflowModelTags] | None = None

    def tag(self, params: TagModelParams) -> ActionResult:
        """Tag the version; then, for ``exclusive`` tags, demote every other version of the model holding one."""
        ref = f"{params.model}:{params.version}"
        change = TagChange(params.tags, params.remove, params.archive)
        tags, writes = self.merge(params.model, params.version, change)
        demoted = self._demote_others(params) if params.exclusive else []
        where = describe(self.workspace)
        done = "tagged" if writes else "already carried"
        detail = f"model {ref} in {where} {done}: {change}"
        if demoted:
            detail += f"; demoted {', '.join(f'{params.model}:{v}' for v in demoted)}"
        return ActionResult(
            external_id=ref,
            detail=detail,
            data={"workspace": self.workspace.resource_id, "model": ref, "tags": tags, "writes": writes,
                  "demoted": demoted},
        )

    def merge(self, name: str, version: str, change: TagChange) -> tuple[dict[str, str], int]:
        """Until a read shows ``change`` holds: write it, read back; settle only when the read-back differs."""
        ref = f"{name}:{version}"
        with self.locks(f"{self.workspace.resource_id.lower()}|{ref}"):
            if self.mlflow is not None and not change.archive:
                return self._per_key(self.mlflow(), name, version, change)
            return self._whole(name, version, change)

    def _per_key(self, mlflow: MlflowModelTags, name: str, version: str,
                 change: TagChange) -> tuple[dict[str, str], int]:
        for writes in range(1, MAX_WRITES + 1):
            for key, value in change.set.items():
                mlflow.set(name, version, key, value)
            for key in change.remove:
                mlflow.delete(name, version, key)
            tags = mlflow.get(name, version)
            if change.holds_on(tags, archived=False):
                return tags, writes
            if writes < MAX_WRITES:
                self.timing.sleep(self.settle)  # a whole-body writer replaced ours: let it land, then redo
        raise self._contended(f"{name}:{version}", change, MAX_WRITES)

    def _whole(self, name: str, version: str, change: TagChange) -> tuple[dict[str, str], int]:
        ref = f"{name}:{version}"
        versions = _RegistryVersions(self.ml) if isinstance(self.workspace, Registry) else _WorkspaceVersions(
            self.ml, self.workspace, self.budget)
        writes = 0

        def read() -> tuple[Any, dict[str, str], bool]:
            with calling(self.workspace, f"GET model {ref}"):
                stored = versions.get(name, version)
            tags = dict(stored.properties.tags or {})
            return stored, tags, change.holds_on(tags, bool(stored.properties.is_archived))

        while True:
            stored, tags, holds = read()  # after a write: the read-back, at once
            if holds:
                return tags, writes
            if writes == MAX_WRITES:
                raise self._contended(ref, change, writes)
            if writes:  # the read-back differed: let a concurrent stale write land, then merge on a fresh read
                self.timing.sleep(self.settle)
                stored, tags, holds = read()
                if holds:
                    return tags, writes
            stored.properties.tags = change.applied_to(tags)
            if change.archive:
                stored.properties.is_archived = True
            _drop_nulls(stored)
            with calling(self.workspace, f"PUT model {ref}"):
                versions.put(name, version, stored)
            writes += 1

    def _contended(self, ref: str, change: TagChange, writes: int) -> TransientError:
        return TransientError(
            f"Azure ML {describe(self.workspace)}: model {ref}: concurrent writers keep replacing its "
            f"tags ({change} still not there after {writes} writes); will retry on redelivery"
        )

    def _demote_others(self, params: TagModelParams) -> list[str]:
        """Other active versions holding an exclusive tag get ``demote_to``'s value, or lose the key."""
        with calling(self.workspace, f"list versions of model {params.model}"):
            versions = [(str(m.version), dict(m.tags or {})) for m in self.ml.models.list(name=params.model)]
        demoted = []
        for version, tags in versions:
            holding = [k for k, v in params.exclusive.items() if tags.get(k) == v]
            if version == params.version or not holding:
                continue
            demotion = TagChange(
                {k: params.demote_to[k] for k in holding if k in params.demote_to},
                [k for k in holding if k not in params.demote_to],
            )
            self.merge(params.model, version, demotion)
            demoted.append(version)
        return demoted


def tag_run(ml: MLClient, workspace: Workspace, action: PlannedAction, params: TagRunParams) -> ActionResult:
    experiment = params.experiment or _experiment_of(ml, workspace, params.run, action)
    with calling(workspace, f"PATCH run {params.run} (tags)"):
        tags = runs.merge_tags(ml, workspace, experiment, params.run, set_tags=params.set, remove=params.remove)
    missing = sorted(k for k, v in params.set.items() if tags.get(k) != v)
    if missing:
        raise PermanentError(
            f"Azure ML {describe(workspace)}: run {params.run}: the service did not keep tags {', '.join(missing)}"
        )
    return ActionResult(
        external_id=params.run,
        detail=f"tagged run {params.run} in {describe(workspace)}: {TagChange(params.set, params.remove)}",
        url=f"https://ml.azure.com/runs/{params.run}?wsid={workspace.resource_id}",
        data={"workspace": workspace.resource_id, "run": params.run, "experiment": experiment},
    )


def _experiment_of(ml: MLClient, workspace: Workspace, run_id: str, action: PlannedAction) -> str:
    """Run events carry the experiment name; only a run the event is not about costs a ``jobs.get``."""
    event = action.event
    if isinstance(event, RunCompleted) and event.run_id == run_id and event.experiment_name:
        return event.experiment_name
    with calling(workspace, f"GET job {run_id}"):
        job = ml.jobs.get(run_id)
    if not job.experiment_name:
        raise PermanentError(f"Azure ML {describe(workspace)}: job {run_id} has no experiment name")
    return str(job.experiment_name)


@dataclass(frozen=True)
class _WorkspaceVersions:
    """A workspace's model versions through the generated REST operations behind ``ml.models`` (private): see the
    module docstring for why not the public get/create_or_update pair. Pinned by the contract tests in tests/azureml.
    """

    ml: MLClient
    workspace: Workspace
    budget: WriteBudget

    def get(self, name: str, version: str) -> Any:
        return self.ml.models._model_versions_operation.get(name=name, version=version, **self._scope)

    def put(self, name: str, version: str, body: Any) -> None:
        with self.budget.write(self.workspace.subscription_id, f"PUT model {name}:{version}"):  # an ARM write
            self.ml.models._model_versions_operation.create_or_update(name=name, version=version, body=body,
                                                                      **self._scope)

    @property
    def _scope(self) -> dict[str, str]:
        return {"resource_group_name": self.workspace.resource_group, "workspace_name": self.workspace.name}


@dataclass(frozen=True)
class _RegistryVersions:
    """A registry's model versions through the SDK's registry data-plane helpers (private; what ``ml.models`` calls
    for a registry client, minus the public round trip's losses). Pinned by tests/azureml/test_registry.py."""

    ml: MLClient

    def get(self, name: str, version: str) -> Any:
        from azure.ai.ml._restclient.arm_ml_service.models import ModelVersion  # noqa: PLC0415 - SDK on first use
        from azure.ai.ml._utils._registry_utils import get_registry_versioned_asset  # noqa: PLC0415

        models = self.ml.models
        raw = get_registry_versioned_asset(models._registry_service_client, "models", name, version,
                                           models._resource_group_name, models._registry_name)
        return ModelVersion._deserialize(raw, [])  # type: ignore[no-untyped-call]

    def put(self, name: str, version: str, body: Any) -> None:
        from azure.ai.ml._utils._registry_utils import (  # noqa: PLC0415 - the SDK loads on first use
            begin_create_or_update_registry_versioned_asset,
        )

        models = self.ml.models
        begin_create_or_update_registry_versioned_asset(models._registry_service_client, "models", name, version,
                                                        models._resource_group_name, models._registry_name, body)


def _drop_nulls(resource: Any) -> None:
    """Send back what was read, minus explicit nulls (the SDK's own archive PUT prunes them the same way)."""
    props = resource.properties
    for key in [k for k, v in list(props.items()) if v is None]:
        del props[key]
