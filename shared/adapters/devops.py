"""Queue gated Azure DevOps releases (azure-devops SDK): a YAML pipeline run or a classic release.

Production waits for a person: the YAML pipeline's production stage targets an environment with approvals and checks,
the classic release definition has a pre-deployment approval on its production stage. This module only *queues*;
nothing here (or anywhere in mlreactor) approves — ``tests/devops/test_no_approvals.py`` greps for it.

**At most one release per (rule, action, model version)**, across redeliveries, crashes and different events about
the same version (a duplicate ModelRegistered, two RunCompleted events). The engine's idempotency key is per event, so
a second, model-scoped guard lives here, in the same ledger::

    release key = sha256({"rule", "index", "model", "version"})    carried in the run (template parameter
                                                                      ``releaseKey``) or the release description
    claim_event("release|<key>")   a lease: one instance at a time queues this model version (the claim is the intent)
      CLAIMED  → POST → settle_event(lock done, with the result (key, DONE, id, url)) in one write
      DONE     → already queued (by this or another event): answer with the recorded run/release, queue nothing
      BUSY     → another instance is queueing it right now: TransientError, Event Grid redelivers
      RESUMED  → an earlier attempt may have POSTed and died before recording: find its run/release by the key
                 and only queue if there is none

Where the key is found again: the pipeline runs list (7.1) returns run references without template parameters or
variables, so each run created within ``devops_lookup_hours`` is read (GET run, at most 50) and its ``releaseKey``
template parameter compared; the releases list does return each release's description, which ends with the key.

**Retries are ours** (msrest never retries a POST): 408, 429, 500, 502, 503, 504 and dropped connections are retried
with exponential backoff and full jitter, honouring ``Retry-After``, inside ``devops_retry_budget_seconds``. A 429 was
rejected before it was processed, so the POST is simply repeated; after a 5xx or a dropped connection the outcome is
unknown, so the idempotency lookup runs before the POST is repeated. 4xx are permanent (quarantined).

**Auth**: an Entra ID token for Azure DevOps' resource id from ``DefaultAzureCredential`` (managed identity in
Azure), refreshed five minutes before it expires; a PAT from ``MLREACTOR_DEVOPS_PAT`` as the fallback. Neither is
logged or put in a message: the SDK only ever sees an object that sets the header.

**Cold start**: ``azure.devops`` is imported on the first release, after ``AZURE_DEVOPS_CACHE_DIR`` is pointed at a
temp dir (the SDK creates its cache directory at import time).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

from shared.actions import ActionResult, PlannedAction, QueueReleaseParams, derived_key
from shared.clock import Clock, SystemClock
from shared.errors import PermanentError, TransientError
from shared.lease import Held
from shared.ledger.port import ActionRecord, ActionStatus, ClaimOutcome, Ledger
from shared.redact import redact
from shared.settings import Settings

log = logging.getLogger("mlreactor.adapters.devops")

#: The Azure DevOps resource (application id) whose token Entra ID issues for the REST API.
DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
_REFRESH_MARGIN = timedelta(minutes=5)
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
#: A resumed attempt inspects at most this many recent runs one by one (the runs list carries no parameters).
_MAX_CANDIDATES = 50
_MAX_BACKOFF_SECONDS = 8.0

T = TypeVar("T")


class TokenCredential(Protocol):
    """What azure-identity credentials offer (``get_token(scope).token`` / ``.expires_on``)."""

    def get_token(self, *scopes: str) -> Any: ...


def release_key(action: PlannedAction, params: QueueReleaseParams) -> str:
    """The model-version-scoped key: the same rule and action releasing the same model version is one release."""
    return derived_key({"rule": action.rule, "index": action.index, "model": params.model, "version": params.version})


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

    def describe(self) -> str:
        p = self.params
        what = f"pipeline {p.pipeline_id}" if p.flavour == "pipeline" else f"release definition {p.definition_id}"
        return f"{what} in project {p.project} ({self.organization})"


class _Failure(Exception):
    """One failed call, classified from the HTTP status the SDK's exceptions do not carry."""

    def __init__(self, status: int | None, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in _RETRYABLE

    @property
    def unprocessed(self) -> bool:
        """A 429 is refused before anything happens; after anything else a POST may have taken effect."""
        return self.status == 429

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status else "no response"
        return f"{status}: {self.args[0]}"


class _Auth:
    """The msrest credentials object: sets the Authorization header and records each response's status.

    msrest calls ``signed_session`` before every request, on every client (including the SDK's internal location
    client), so the status of the last response is known here even though the SDK's exceptions drop it.
    """

    def __init__(self, settings: Settings, credential: TokenCredential | None) -> None:
        self._settings = settings
        self._credential = credential
        self._mode = settings.devops_auth
        self._token: Any = None
        self._header = ""
        self._lock = threading.Lock()
        self._last = threading.local()

    # credentials ----------------------------------------------------------------------------------------------
    def prepare(self, now: datetime) -> None:
        """Have a header that stays valid for this call: refresh the token five minutes before it expires."""
        with self._lock:
            if self._mode == "pat":
                self._header = self._pat_header()
                return
            if self._token is not None and self._token.expires_on - _REFRESH_MARGIN.total_seconds() > now.timestamp():
                return
            try:
                self._token = self._entra().get_token(DEVOPS_SCOPE)
            except Exception as exc:  # azure.core ClientAuthenticationError and friends; azure-core is lazy here
                if self._mode == "auto" and self._settings.devops_pat is not None:
                    log.warning("no Entra ID token for Azure DevOps (%s); using the PAT fallback", type(exc).__name__)
                    self._mode = "pat"
                    self._header = self._pat_header()
                    return
                unavailable = type(exc).__name__ == "CredentialUnavailableError"
                error = PermanentError if unavailable else TransientError
                raise error(f"cannot get an Entra ID token for Azure DevOps: {type(exc).__name__}") from None
            self._header = f"Bearer {self._token.token}"

    def _entra(self) -> TokenCredential:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - cold start

            client_id = self._settings.managed_identity_client_id
            self._credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return self._credential

    def _pat_header(self) -> str:
        pat = self._settings.devops_pat
        if pat is None:
            raise PermanentError("MLREACTOR_DEVOPS_AUTH is 'pat' but MLREACTOR_DEVOPS_PAT is not set")
        return "Basic " + base64.b64encode(f":{pat.get_secret_value()}".encode()).decode()

    def signed_session(self, session: Any) -> Any:
        """Called by msrest before every request: a fresh start for the wire facts of this one request."""
        self._last.status = None
        self._last.retry_after = None
        session.headers["Authorization"] = self._header
        session.hooks["response"] = [self._record]
        return session

    def refresh_session(self, session: Any) -> Any:
        return self.signed_session(session)

    def __repr__(self) -> str:
        return f"<Azure DevOps credentials: {self._mode}>"

    # wire facts -----------------------------------------------------------------------------------------------
    def _record(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._last.status = response.status_code
        self._last.retry_after = response.headers.get("Retry-After")

    def last(self) -> tuple[int | None, float | None]:
        """Status and ``Retry-After`` of the last request this thread sent (None, None: no response at all)."""
        status = getattr(self._last, "status", None)
        raw = getattr(self._last, "retry_after", None)
        try:
            retry_after = float(raw) if raw is not None else None
        except ValueError:  # an HTTP date: not sent by Azure DevOps, treated as "no hint"
            retry_after = None
        return status, retry_after


def _import_sdk(settings: Settings) -> SimpleNamespace:
    """The one way into azure-devops, on first use: its cache dir must be set before the import (created then)."""
    os.environ["AZURE_DEVOPS_CACHE_DIR"] = str(settings.devops_cache_dir)
    # Cold start: these load only when the first release is queued.
    from azure.devops.connection import Connection  # noqa: PLC0415
    from azure.devops.v7_1.pipelines import models as pipelines  # noqa: PLC0415
    from azure.devops.v7_1.release import models as release  # noqa: PLC0415

    return SimpleNamespace(Connection=Connection, pipelines=pipelines, release=release)


class DevOpsReleaseAdapter:
    """``queue_release``: a YAML pipeline run or a classic release that waits for a human approval."""

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
        self._auth = _Auth(settings, credential)
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._sdk: SimpleNamespace | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # the action -----------------------------------------------------------------------------------------------
    def execute(self, action: PlannedAction) -> ActionResult:
        params = action.params
        assert isinstance(params, QueueReleaseParams)
        organization = (params.organization or self._settings.devops_organization_url or "").rstrip("/")
        if not organization:
            raise PermanentError("queue_release: no organization (set MLREACTOR_DEVOPS_ORGANIZATION_URL)")
        target = _Target(organization, params)
        key = release_key(action, params)
        lock = f"release|{key}"
        ledger = self._ledger
        now = self._clock.now()
        lease = timedelta(seconds=self._settings.lease_seconds)
        # The lock is shared by every event that releases this model version: its claims all name the lock itself
        # as their event id (the Tables ledger places records by it).
        claim = ledger.claim_event(lock, lock, now, lease)
        if claim.outcome is ClaimOutcome.DONE:
            done = claim.actions.get(key)
            if done is None:  # the lock outlived its record (purged): say so rather than queue again
                raise PermanentError(f"the release of {params.model}:{params.version} was queued before; its record "
                                     "is gone")
            return ActionResult(
                external_id=done.external_id, url=done.url, data=done.data,
                detail=f"already queued for {params.model}:{params.version}: {done.detail}",
            )
        if claim.outcome is ClaimOutcome.BUSY:
            raise TransientError(
                f"the release of {params.model}:{params.version} to {target.describe()} is being queued by another "
                "delivery; Event Grid will redeliver"
            )
        def record(status: ActionStatus, detail: str, done: ActionResult | None = None) -> ActionRecord:
            return ActionRecord(
                key=key, event_key=lock, event_id=lock, rule=action.rule, kind=action.kind.value, status=status,
                external_id=done.external_id if done else None, detail=detail, url=done.url if done else None,
                updated_at=self._clock.now(), data=dict(done.data) if done else {},
            )

        # The lock is renewed while a slow lookup runs, and checked before the POST (see shared/lease.py).
        held = Held(ledger, claim.record, lease, self._clock)
        try:
            with held.kept():
                queued = self._queue(target, action, key, held, resumed=claim.outcome is ClaimOutcome.RESUMED)
        except PermanentError as exc:
            failed = record(ActionStatus.FAILED, redact(str(exc)))
            ledger.settle_event(held.record, None, self._clock.now(), actions=[failed])
            raise
        except TransientError:
            ledger.settle_event(held.record, None, self._clock.now())
            raise
        result = self._result(target, queued, key)
        ledger.settle_event(
            held.record, "queued", self._clock.now(), actions=[record(ActionStatus.DONE, result.detail, result)]
        )
        log.info("queue_release: %s", result.detail, extra={"correlation_id": action.correlation_id})
        return result

    def _result(self, target: _Target, queued: Queued, key: str) -> ActionResult:
        p = target.params
        kind = "run" if p.flavour == "pipeline" else "release"
        detail = (
            f"{kind} {queued.name} (#{queued.id}) of {target.describe()} queued for model {p.model}:{p.version}; "
            f"awaiting approval in environment {p.environment}"
        )
        return ActionResult(
            external_id=str(queued.id), detail=detail, url=queued.url,
            data={
                "id": queued.id, "name": queued.name, "url": queued.url, "flavour": p.flavour,
                "environment": p.environment, "model": p.model, "version": p.version, "release_key": key,
                "status": "awaiting approval",
            },
        )

    # queue with our own retries -------------------------------------------------------------------------------
    def _queue(self, target: _Target, action: PlannedAction, key: str, held: Held, *, resumed: bool) -> Queued:
        p = target.params
        deadline = time.monotonic() + self._settings.devops_retry_budget_seconds
        if resumed or action.resumed:
            found = self._find(target, key, deadline)
            if found is not None:
                log.info("queue_release: found #%s in %s, queued by an earlier attempt", found.id, target.describe())
                return found
        held.check(timedelta(seconds=self._settings.devops_timeout_seconds))  # the POST only while the lock is ours
        create = self._create_run if p.flavour == "pipeline" else self._create_release

        def safe_to_repeat(failure: _Failure) -> Queued | None:
            """After a 5xx or a dropped connection the POST may have worked: look before posting again."""
            return None if failure.unprocessed else self._find(target, key, deadline)

        return self._with_retries(
            f"queue_release of {p.model}:{p.version} to {target.describe()}", deadline,
            lambda: create(target, action, key), before_retry=safe_to_repeat,
        )

    def _with_retries(
        self,
        what: str,
        deadline: float,
        call: Callable[[], T],
        *,
        before_retry: Callable[[_Failure], T | None] | None = None,
    ) -> T:
        """Retry 408/429/5xx/no response: backoff with full jitter, at least ``Retry-After``, within the deadline.

        ``before_retry`` may answer instead of the next try (the idempotency check before a POST is repeated).
        """
        attempt = 0
        while True:
            if time.monotonic() > deadline:  # the release's overall deadline, not each request's
                raise TransientError(f"{what}: out of time ({self._settings.devops_retry_budget_seconds:g} s for "
                                     "this release); Event Grid will redeliver")
            try:
                return self._once(what, call)
            except _Failure as failure:
                attempt += 1
                if not failure.retryable:
                    raise PermanentError(f"{what}: Azure DevOps answered {failure}") from failure
                backoff = self._rng.uniform(0, min(_MAX_BACKOFF_SECONDS, 0.5 * 2**attempt))
                delay = max(failure.retry_after or 0.0, backoff)
                if attempt > self._settings.devops_retry_attempts or time.monotonic() + delay > deadline:
                    raise TransientError(
                        f"{what}: {failure} (after {attempt} attempt(s)); Event Grid will redeliver"
                    ) from failure
                log.warning("%s: %s; retry %d in %.1f s", what, failure, attempt, delay)
                self._sleep(delay)
                if before_retry is not None:
                    answer = before_retry(failure)
                    if answer is not None:
                        return answer

    def _once(self, what: str, call: Callable[[], T]) -> T:
        """One SDK call; its failure becomes a ``_Failure`` with the status the SDK's exception lacks."""
        self._auth.prepare(self._clock.now())
        try:
            return call()
        except (PermanentError, TransientError):
            raise
        except Exception as exc:  # msrest / azure-devops exceptions (imported lazily)
            status, retry_after = self._auth.last()
            if status is not None and status < 300:
                raise PermanentError(f"{what}: unreadable answer from Azure DevOps: {_message(exc)}") from exc
            raise _Failure(status, _message(exc), retry_after) from exc

    # pipelines (YAML) -----------------------------------------------------------------------------------------
    def _create_run(self, target: _Target, action: PlannedAction, key: str) -> Queued:
        client = self._client(target, "pipelines")
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
        """The runs list carries no template parameters: fetch each recent run and compare ``releaseKey``."""
        p = target.params
        client = self._client(target, "pipelines")
        since = self._clock.now() - timedelta(hours=self._settings.devops_lookup_hours)
        what = f"looking for a run of {p.model}:{p.version} in {target.describe()}"
        runs = self._with_retries(what, deadline, lambda: client.list_runs(p.project, p.pipeline_id)) or []
        recent = sorted(
            (r for r in runs if r.created_date is None or r.created_date >= since), key=lambda r: r.id, reverse=True
        )
        if len(recent) > _MAX_CANDIDATES:
            raise PermanentError(
                f"cannot tell whether {target.describe()} already has a run for {p.model}:{p.version}: "
                f"{len(recent)} runs in the last {self._settings.devops_lookup_hours:g} h; not queueing blindly"
            )
        for ref in recent:
            run = self._with_retries(what, deadline, partial(client.get_run, p.project, p.pipeline_id, ref.id))
            if str((run.template_parameters or {}).get("releaseKey", "")) == key:
                return self._run(target, run)
        return None

    # classic releases -----------------------------------------------------------------------------------------
    def _create_release(self, target: _Target, action: PlannedAction, key: str) -> Queued:
        client = self._client(target, "release")
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
        client = self._client(target, "release")
        since = self._clock.now() - timedelta(hours=self._settings.devops_lookup_hours)
        what = f"looking for a release of {p.model}:{p.version} in {target.describe()}"
        releases = self._with_retries(what, deadline, lambda: client.get_releases(
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

    def _sdk_(self) -> SimpleNamespace:
        if self._sdk is None:
            self._sdk = _import_sdk(self._settings)
        return self._sdk

    # clients --------------------------------------------------------------------------------------------------
    def _client(self, target: _Target, area: str) -> Any:
        """One SDK client per organization and area, built on first use and kept for the process."""
        with self._lock:
            cached = self._clients.get((target.organization, area))
            if cached is not None:
                return cached
            sdk = self._sdk_()
            # The SDK made its location-cache folder when it was imported; a warm instance whose temp dir was
            # cleaned since would fail discovery with FileNotFoundError (reported as an unreadable answer).
            self._settings.devops_cache_dir.mkdir(parents=True, exist_ok=True)
            connection = sdk.Connection(base_url=target.organization, creds=self._auth)
            factory = connection.clients_v7_1
            client = factory.get_pipelines_client() if area == "pipelines" else factory.get_release_client()
            # Our retries, not msrest's (it cannot retry a POST under urllib3 2 anyway): no hidden waits.
            client.config.retry_policy.retries = 0
            client.config.retry_policy.policy.status_forcelist = frozenset()
            client.config.connection.timeout = self._settings.devops_timeout_seconds
            self._clients[(target.organization, area)] = client
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
