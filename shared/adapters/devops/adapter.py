"""Queue gated Azure DevOps releases (azure-devops SDK): a YAML pipeline run or a classic release.

Production waits for a person, and that is **verified before every queue**, not trusted: the YAML pipeline's
environment must exist and carry an Approval check with an approver, the classic definition's stage must have a
pre-deployment approval that is not automated (``checks.py``). A target that is not gated gets nothing queued: the
event is quarantined with a reason naming organization, project, pipeline/definition, environment/stage and what is
missing, and Ops are told (``on_quarantine``). Nothing here (or anywhere in mlreactor) approves —
``tests/devops/test_no_approvals.py`` greps for it.

**At most one release per (rule, action, model version)**: ``releases/once.py``. Where the key is found again:

* YAML runs: the release pipeline names its runs with the key (``name: mlreactor-${{ parameters.releaseKey }}...``,
  see ``pipelines/release-model.azure-pipelines.yml``), so **one runs-list call** finds an earlier run — the list
  returns run names but no template parameters. Runs whose name carries no key at all (a pipeline without that
  ``name:``) are still read one by one (GET run, at most 50 within ``devops_lookup_hours``), as before;
* classic releases: the releases list returns each release's description, which ends with the key.

**Retries are ours** (msrest never retries a POST): ``releases/retry.py``. **Auth**: ``auth.py`` (Entra ID token
first, the PAT as the fallback, also when the token is refused). **Cold start**: ``azure.devops`` is imported on the
first release, after ``AZURE_DEVOPS_CACHE_DIR`` is pointed at a temp dir (the SDK creates it at import time).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from shared.actions import ActionResult, PlannedAction, QueueReleaseParams
from shared.adapters.devops.auth import DevOpsAuth, TokenCredential
from shared.adapters.devops.checks import StageApproval, judge_environment, judge_stage
from shared.adapters.releases.gates import GateBook, GateCheck, NotGated
from shared.adapters.releases.once import queue_once, release_key
from shared.adapters.releases.retry import Failure, Retrier
from shared.clock import Clock, SystemClock
from shared.errors import PermanentError, TransientError
from shared.ledger.port import Ledger
from shared.settings import Settings

log = logging.getLogger("mlreactor.adapters.devops")

#: A resumed attempt inspects at most this many recent runs one by one (only runs whose name carries no key).
_MAX_CANDIDATES = 50
#: A release key in a run name: 64 hex digits (sha256).
_KEY = re.compile(r"\b[0-9a-f]{64}\b")
#: The Pipelines Checks "configurations" resource (azure.devops.v7_1.pipelines_checks): its SDK model drops
#: ``settings``, so the list is read raw through the same client (same auth, location discovery and api-version).
_CHECK_CONFIGURATIONS = "86c8381e-5aee-4cde-8ae4-25c0c7f5eaea"

T = TypeVar("T")


@dataclass(frozen=True)
class Queued:
    """A run or release that exists in Azure DevOps."""

    id: int
    name: str
    url: str


@dataclass(frozen=True)
class _Target:
    organization: str
    params: QueueReleaseParams

    @property
    def org_name(self) -> str:
        return urlsplit(self.organization).path.strip("/").split("/")[-1] or self.organization

    def describe(self) -> str:
        p = self.params
        what = f"pipeline {p.pipeline_id}" if p.flavour == "pipeline" else f"release definition {p.definition_id}"
        return f"{what} in project {p.project} ({self.organization})"

    @property
    def where(self) -> str:
        """For gate verdicts: ``organization contoso, project mlops, pipeline 42``."""
        p = self.params
        what = f"pipeline {p.pipeline_id}" if p.flavour == "pipeline" else f"release definition {p.definition_id}"
        return f"organization {self.org_name}, project {p.project}, {what}"

    @property
    def gate_key(self) -> str:
        p = self.params
        return f"{self.organization}|{p.project}|{p.flavour}|{p.pipeline_id or p.definition_id}|{p.environment}"


def _import_sdk(settings: Settings) -> SimpleNamespace:
    """The one way into azure-devops, on first use: its cache dir must be set before the import (created then)."""
    os.environ["AZURE_DEVOPS_CACHE_DIR"] = str(settings.devops_cache_dir)
    # Cold start: these load only when the first release is queued.
    from azure.devops.connection import Connection  # noqa: PLC0415
    from azure.devops.v7_1.pipelines import models as pipelines  # noqa: PLC0415
    from azure.devops.v7_1.release import models as release  # noqa: PLC0415

    return SimpleNamespace(Connection=Connection, pipelines=pipelines, release=release)


class DevOpsReleaseAdapter:
    """``queue_release`` to Azure DevOps: a YAML pipeline run or a classic release that waits for a human approval."""

    live = True

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        clock: Clock | None = None,
        credential: TokenCredential | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._clock = clock or SystemClock()
        self._auth = DevOpsAuth(settings, credential)
        self._retrier = Retrier("Azure DevOps", settings.devops_retry_attempts, sleep, rng or random.Random())  # noqa: S311
        self._sleep = sleep
        self.gates = GateBook(timedelta(seconds=settings.release_gate_cache_seconds))
        self._sdk: SimpleNamespace | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # the action -----------------------------------------------------------------------------------------------
    def execute(self, action: PlannedAction) -> ActionResult:
        params = action.params
        assert isinstance(params, QueueReleaseParams)
        target = _Target(self._organization(params), params)
        key = release_key(action, params)
        lease = timedelta(seconds=self._settings.lease_seconds)

        def queue(resumed: bool) -> ActionResult:
            queued, gate = self._queue(target, action, key, resumed=resumed)
            return self._result(target, queued, key, gate)

        result = queue_once(self._ledger, self._clock, lease, action, key, target.describe(), queue)
        log.info("queue_release: %s", result.detail, extra={"correlation_id": action.correlation_id})
        return result

    def check_gate(self, params: QueueReleaseParams) -> GateCheck:
        """Read the target's approvals now (no cache): for ``mlreactor gates`` and ``doctor``. Never queues."""
        target = _Target(self._organization(params), params)
        return self._verify(target, time.monotonic() + self._settings.devops_retry_budget_seconds, use_cache=False)

    def _organization(self, params: QueueReleaseParams) -> str:
        organization = (params.organization or self._settings.devops_organization_url or "").rstrip("/")
        if not organization:
            raise PermanentError("queue_release: no organization (set MLREACTOR_DEVOPS_ORGANIZATION_URL)")
        return organization

    def _result(self, target: _Target, queued: Queued, key: str, gate: GateCheck | None) -> ActionResult:
        p = target.params
        kind = "run" if p.flavour == "pipeline" else "release"
        auth = "Entra ID token" if self._auth.used == "entra" else "PAT"
        detail = (
            f"{kind} {queued.name} (#{queued.id}) of {target.describe()} queued for model {p.model}:{p.version} "
            f"with the {auth}; awaiting approval in environment {p.environment}"
        )
        return ActionResult(
            external_id=str(queued.id), detail=detail, url=queued.url,
            data={
                "target": "azure-devops-pipeline" if p.flavour == "pipeline" else "azure-devops-release",
                "organization": target.organization, "project": p.project,
                "pipeline_id": p.pipeline_id, "definition_id": p.definition_id,
                "id": queued.id, "name": queued.name, "url": queued.url, "flavour": p.flavour,
                "environment": p.environment, "model": p.model, "version": p.version, "release_key": key,
                "status": "awaiting approval", "auth": self._auth.used,
                "gate": gate.reason if gate else "verified by the attempt that queued it",
            },
        )

    # verify, then queue with our own retries ------------------------------------------------------------------
    def _queue(
        self, target: _Target, action: PlannedAction, key: str, *, resumed: bool
    ) -> tuple[Queued, GateCheck | None]:
        p = target.params
        deadline = time.monotonic() + self._settings.devops_retry_budget_seconds
        if resumed:
            found = self._find(target, key, deadline)
            if found is not None:
                log.info("queue_release: found #%s in %s, queued by an earlier attempt", found.id, target.describe())
                return found, None
        gate = self._verify(target, deadline, use_cache=True)
        if not gate.gated:
            raise NotGated(gate)
        create = self._create_run if p.flavour == "pipeline" else self._create_release
        what = f"queue_release of {p.model}:{p.version} to {target.describe()}"
        queued = self._retrier.run(
            what, deadline,
            lambda: self._once(what, lambda: create(target, action, key)),
            before_retry=lambda failure: self._find(target, key, deadline),  # the POST may have worked
        )
        return queued, gate

    def _verify(self, target: _Target, deadline: float, *, use_cache: bool) -> GateCheck:
        """The gate verdict: a recent positive one from the book, else read now (and remember it)."""
        now = self._clock.now()
        cached = self.gates.fresh(target.gate_key, now) if use_cache else None
        if cached is not None:
            return cached
        p = target.params
        what = (f"verifying the approvals of {target.describe()}, environment {p.environment} "
                f"(for {p.model}:{p.version})")
        if p.flavour == "pipeline":
            check = self._verify_environment(target, what, deadline)
        else:
            check = self._verify_stage(target, what, deadline)
        self.gates.remember(target.gate_key, check)
        log.info("queue_release: %s, environment %s: %s", target.where, p.environment, check.summary)
        return check

    def _verify_environment(self, target: _Target, what: str, deadline: float) -> GateCheck:
        p = target.params

        def environments() -> list[Any]:
            # Clients are made inside the call: making one may already ask the organization where its area lives.
            client = self._client(target.organization, "task_agent")
            return list(client.get_environments(p.project, name=p.environment) or [])

        found = self._call(what, deadline, environments)
        match = next((e for e in found if (e.name or "").lower() == p.environment.lower()), None)
        if match is None:
            return judge_environment(target.where, p.environment, None, [], self._clock.now())

        def checks() -> list[dict[str, Any]]:
            client = self._client(target.organization, "pipelines_checks")
            response = client._send(  # the SDK's model has no ``settings``: read the documented JSON
                http_method="GET", location_id=_CHECK_CONFIGURATIONS, version="7.1-preview.1",
                route_values={"project": client._serialize.url("project", p.project, "str")},
                query_parameters={"resourceType": "environment", "resourceId": str(match.id), "$expand": "settings"},
            )
            return list(response.json().get("value") or [])

        configured = self._call(what, deadline, checks)
        return judge_environment(target.where, match.name, int(match.id), configured, self._clock.now())

    def _verify_stage(self, target: _Target, what: str, deadline: float) -> GateCheck:
        p = target.params
        definition = self._call(what, deadline, lambda: self._client(
            target.organization, "release"
        ).get_release_definition(p.project, p.definition_id))
        stages: dict[str, list[StageApproval]] = {}
        options: dict[str, Any] = {}
        for stage in definition.environments or []:
            approvals = getattr(stage.pre_deploy_approvals, "approvals", None) or []
            stages[stage.name] = [
                StageApproval(bool(a.is_automated), getattr(a.approver, "display_name", None)) for a in approvals
            ]
            if (stage.name or "").lower() == p.environment.lower():
                opts = getattr(stage.pre_deploy_approvals, "approval_options", None)
                options = {"creator_can_approve": getattr(opts, "release_creator_can_be_approver", None),
                           "required": getattr(opts, "required_approver_count", None)}
        return judge_stage(target.where, p.environment, stages, self._clock.now(), **options)

    def _call(self, what: str, deadline: float, call: Callable[[], T]) -> T:
        """A read: retried as the service allows (reads are always safe to repeat)."""
        return self._retrier.run(what, deadline, lambda: self._once(what, call))

    def _once(self, what: str, call: Callable[[], T]) -> T:
        """One SDK call; its failure becomes a ``Failure`` with the status the SDK's exception lacks.

        A 401/203 to the Entra token is tried once more with the PAT when ``auto`` allows it (``auth.py``).
        """
        for attempt in range(2):
            self._auth.prepare(self._clock.now())
            try:
                return call()
            except (PermanentError, TransientError):
                raise
            except Exception as exc:  # msrest / azure-devops exceptions (imported lazily)
                status, retry_after = self._auth.last()
                if attempt == 0 and self._auth.refused(status):
                    continue  # refused before processing: nothing happened, repeating is safe
                if status is not None and status < 300:
                    raise PermanentError(f"{what}: unreadable answer from Azure DevOps: {_message(exc)}") from exc
                raise Failure(status, _message(exc), retry_after) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # pipelines (YAML) -----------------------------------------------------------------------------------------
    def _create_run(self, target: _Target, action: PlannedAction, key: str) -> Queued:
        client = self._client(target.organization, "pipelines")
        models = self._sdk_().pipelines
        p = target.params
        event = action.event
        source_event = {
            "id": event.id, "type": event.event_type, "source": event.source, "subject": event.subject,
            "time": event.time.isoformat() if event.time else "",
        }
        standard = {
            "modelName": p.model, "modelVersion": p.version, "correlationId": action.correlation_id,
            "sourceEvent": json.dumps(source_event, sort_keys=True), "releaseKey": key,
        }
        resources = None
        if p.branch:
            resources = models.RunResourcesParameters(
                repositories={"self": models.RepositoryResourceParameters(ref_name=p.branch)}
            )
        run_parameters = models.RunPipelineParameters(
            template_parameters={**p.parameters, **standard},
            variables={k: models.Variable(value=v, is_secret=False) for k, v in p.variables.items()} or None,
            resources=resources,
            stages_to_skip=p.stages_to_skip or None,
        )
        run = client.run_pipeline(run_parameters, p.project, p.pipeline_id)
        return self._run(target, run)

    def _run(self, target: _Target, run: Any) -> Queued:
        p = target.params
        fallback = f"{target.organization}/{p.project}/_build/results?buildId={run.id}"
        return Queued(id=run.id, name=run.name or str(run.id), url=_web_link(run) or fallback)

    def _find_run(self, target: _Target, key: str, deadline: float) -> Queued | None:
        """One runs-list call: the run whose name carries the key. Only runs named without any key are read."""
        p = target.params
        since = self._clock.now() - timedelta(hours=self._settings.devops_lookup_hours)
        what = f"looking for a run of {p.model}:{p.version} in {target.describe()}"
        runs = self._call(what, deadline, lambda: self._client(target.organization, "pipelines").list_runs(
            p.project, p.pipeline_id
        )) or []
        recent = sorted(
            (r for r in runs if r.created_date is None or r.created_date >= since), key=lambda r: r.id, reverse=True
        )
        named = next((r for r in recent if key in (r.name or "")), None)
        if named is not None:
            return self._run(target, named)
        unnamed = [r for r in recent if not _KEY.search(r.name or "")]
        if len(unnamed) > _MAX_CANDIDATES:
            raise PermanentError(
                f"cannot tell whether {target.describe()} already has a run for {p.model}:{p.version}: "
                f"{len(unnamed)} runs in the last {self._settings.devops_lookup_hours:g} h whose name carries no "
                "release key (name the pipeline's runs with ${{ parameters.releaseKey }}); not queueing blindly"
            )
        for ref in unnamed:
            run = self._call(what, deadline, partial(self._client(target.organization, "pipelines").get_run, p.project,
                                                      p.pipeline_id, ref.id))
            if str((run.template_parameters or {}).get("releaseKey", "")) == key:
                return self._run(target, run)
        return None

    # classic releases -----------------------------------------------------------------------------------------
    def _create_release(self, target: _Target, action: PlannedAction, key: str) -> Queued:
        client = self._client(target.organization, "release")
        models = self._sdk_().release
        p = target.params
        artifacts = [
            models.ArtifactMetadata(
                alias=a["alias"], instance_reference=models.BuildVersion(id=a["version_id"], name=a.get("version_name"))
            )
            for a in p.artifacts
        ]
        metadata = models.ReleaseStartMetadata(
            definition_id=p.definition_id,
            description=_description(p, action, key),
            artifacts=artifacts or None,
            variables={k: models.ConfigurationVariableValue(value=v) for k, v in p.variables.items()} or None,
        )
        release = client.create_release(metadata, p.project)
        return self._release(target, release)

    def _release(self, target: _Target, release: Any) -> Queued:
        fallback = f"{target.organization}/{target.params.project}/_release?releaseId={release.id}&_a=release-summary"
        return Queued(id=release.id, name=release.name or str(release.id), url=_web_link(release) or fallback)

    def _find_release(self, target: _Target, key: str, deadline: float) -> Queued | None:
        """Releases list with their description, where the key travels."""
        p = target.params
        since = self._clock.now() - timedelta(hours=self._settings.devops_lookup_hours)
        what = f"looking for a release of {p.model}:{p.version} in {target.describe()}"
        releases = self._call(what, deadline, lambda: self._client(target.organization, "release").get_releases(
            project=p.project, definition_id=p.definition_id, min_created_time=since, query_order="descending",
            top=100,
        )) or []
        for release in releases:
            if key in (release.description or ""):
                return self._release(target, release)
        return None

    def _find(self, target: _Target, key: str, deadline: float) -> Queued | None:
        if target.params.flavour == "pipeline":
            return self._find_run(target, key, deadline)
        return self._find_release(target, key, deadline)

    # reads for the release reconciler (shared/releases/reconciler.py) --------------------------------------------
    def read(self, organization: str, area: str, what: str, call: Callable[[Any], T]) -> T:
        """One GET through this adapter's clients, auth and retries: ``call(client)`` with the ``pipelines`` or
        ``release`` client of ``organization``. Throttling and 5xx past the budget raise ``TransientError``, other
        failures ``PermanentError`` (both name ``what``)."""
        deadline = time.monotonic() + self._settings.devops_retry_budget_seconds
        client = self._client(organization.rstrip("/"), area)
        return self._call(what, deadline, lambda: call(client))

    def _sdk_(self) -> SimpleNamespace:
        if self._sdk is None:
            self._sdk = _import_sdk(self._settings)
        return self._sdk

    # clients --------------------------------------------------------------------------------------------------
    def _client(self, organization: str, area: str) -> Any:
        """One SDK client per organization and area, built on first use and kept for the process."""
        with self._lock:
            cached = self._clients.get((organization, area))
            if cached is not None:
                return cached
            sdk = self._sdk_()
            # The SDK made its location-cache folder when it was imported; a warm instance whose temp dir was
            # cleaned since would fail discovery with FileNotFoundError (reported as an unreadable answer).
            self._settings.devops_cache_dir.mkdir(parents=True, exist_ok=True)
            connection = sdk.Connection(base_url=organization, creds=self._auth)
            factory = connection.clients_v7_1
            client = {
                "pipelines": factory.get_pipelines_client, "release": factory.get_release_client,
                "task_agent": factory.get_task_agent_client, "pipelines_checks": factory.get_pipelines_checks_client,
            }[area]()
            # Our retries, not msrest's (it cannot retry a POST under urllib3 2 anyway): no hidden waits.
            client.config.retry_policy.retries = 0
            client.config.retry_policy.policy.status_forcelist = frozenset()
            client.config.connection.timeout = self._settings.devops_timeout_seconds
            self._clients[(organization, area)] = client
            return client


def _description(p: QueueReleaseParams, action: PlannedAction, key: str) -> str:
    """The release description carries the key: the releases list returns it, so a resumed attempt can match it."""
    text = p.description or f"mlreactor: release {p.model}:{p.version}"
    return f"{text} (correlation {action.correlation_id}; mlreactor release key {key})"


def _web_link(resource: Any) -> str | None:
    links = getattr(getattr(resource, "_links", None), "links", None) or {}
    web = links.get("web") or {}
    href = web.get("href") if isinstance(web, dict) else getattr(web, "href", None)
    return str(href) if href else None


def _message(exc: BaseException) -> str:
    """What the service said (the WrappedException message), on one line; never a header or a token."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:500]
