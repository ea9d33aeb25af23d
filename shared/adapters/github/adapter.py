"""Queue gated releases on GitHub Actions: a ``workflow_dispatch`` into a job whose environment needs a reviewer.

Verified before every dispatch (``checks.py``): the workflow job's environment exists and has a required-reviewers
rule with a reviewer; a target that is not gated gets nothing dispatched (quarantined, Ops told). Nothing here
approves, rejects or reviews a deployment — ``tests/devops/test_no_approvals.py`` greps for GitHub's review API too.

**Exactly once** per (rule, action, model version) — ``releases/once.py`` — and the release key travels twice: as the
input ``release_key`` and in the run name (the workflow's ``run-name`` carries ``${{ inputs.release_key }}``; the runs
list returns it as ``display_title``), so one runs-list call finds an earlier dispatch's run:

    POST .../actions/workflows/{workflow}/dispatches  {ref, inputs{model, version, correlation_id, release_key},
                                                       return_run_details: true}
      200 {workflow_run_id, run_url, html_url}   GitHub since 2026-02-19 (changelog "Workflow dispatch API now
                                                 returns run IDs")
      400/422                                    older GitHub Enterprise Server refuses the parameter: dispatch again
                                                 without it (remembered per API root) ...
      204                                        ... and find the run by the key in the runs list
      lost answer (5xx, reset)                   look for the run first — it may take a moment to be listed, so the
                                                 list is read again for ``github_run_settle_seconds`` — and dispatch
                                                 again only if it is not there

Unverified: how long a dispatched run takes to appear in the runs list (GitHub documents no bound). A run not yet
listed after a 204 is recorded as dispatched without an id (never dispatched again); one not listed after a lost
answer is dispatched again once the settle time has passed — the window in which two runs could exist.

Retries: 429 and secondary rate limits (403 with ``retry-after`` / ``x-ratelimit-reset``) within the budget, and a
lost answer only after the lookup above (``releases/retry.py``, ``http.py``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import quote

from shared.actions import ActionResult, PlannedAction, QueueReleaseParams
from shared.adapters.github.auth import GitHubAuth
from shared.adapters.github.checks import judge_environment
from shared.adapters.github.http import Answer, GitHubHttp
from shared.adapters.releases.gates import GateBook, GateCheck, NotGated
from shared.adapters.releases.once import queue_once, release_key
from shared.adapters.releases.retry import Failure, Retrier
from shared.clock import Clock, SystemClock
from shared.ledger.port import Ledger
from shared.settings import Settings

log = logging.getLogger("mlreactor.adapters.github")

_PAGES = 5
_SETTLE_STEP_SECONDS = 1.0


@dataclass(frozen=True)
class Run:
    id: int | None
    url: str


@dataclass(frozen=True)
class _Target:
    params: QueueReleaseParams

    @property
    def repository(self) -> str:
        assert self.params.repository
        return self.params.repository

    @property
    def workflow(self) -> str:
        assert self.params.workflow
        return quote(self.params.workflow, safe="")

    @property
    def where(self) -> str:
        return f"repository {self.repository}, workflow {self.params.workflow}"

    def describe(self) -> str:
        return f"workflow {self.params.workflow} of {self.repository} on {self.params.branch}"

    @property
    def gate_key(self) -> str:
        return f"github|{self.repository}|{self.params.environment}"


class GitHubReleaseAdapter:
    """``queue_release`` with ``flavour: github``."""

    live = True

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._clock = clock or SystemClock()
        self._http = GitHubHttp(settings.github_api_url, settings.github_timeout_seconds,
                                lambda: self._clock.now().timestamp())
        self._auth = GitHubAuth(settings, self._http, self._clock)
        self._retrier = Retrier("GitHub", settings.github_retry_attempts, sleep, rng or random.Random())  # noqa: S311
        self._sleep = sleep
        self.gates = GateBook(timedelta(seconds=settings.release_gate_cache_seconds))
        #: API roots that refused ``return_run_details`` (GitHub Enterprise Server before the feature).
        self._no_run_details: set[str] = set()

    # the action -----------------------------------------------------------------------------------------------
    def execute(self, action: PlannedAction) -> ActionResult:
        params = action.params
        assert isinstance(params, QueueReleaseParams)
        target = _Target(params)
        key = release_key(action, params)
        lease = timedelta(seconds=self._settings.lease_seconds)

        def queue(resumed: bool) -> ActionResult:
            run, gate = self._queue(target, action, key, resumed=resumed)
            return self._result(target, run, key, gate)

        result = queue_once(self._ledger, self._clock, lease, action, key, target.describe(), queue)
        log.info("queue_release: %s", result.detail, extra={"correlation_id": action.correlation_id})
        return result

    def check_gate(self, params: QueueReleaseParams) -> GateCheck:
        """Read the environment's protection rules now (no cache): for ``mlreactor gates``. Never dispatches."""
        return self._verify(_Target(params), self._deadline(), use_cache=False)

    def read(self, repository: str, path: str, what: str) -> Any:
        """One GET of ``path`` (under the API root) through this adapter's client, credentials for ``repository``
        and retries; its JSON body. 429, rate-limited 403s, 5xx and lost answers past the budget raise
        ``TransientError``, other failures (404 included) ``PermanentError`` (both name ``what``)."""
        answer = self._retrier.run(what, self._deadline(), partial(self._get, repository, path))
        return answer.body

    def _get(self, repository: str, path: str) -> Answer:
        return self._http.send("GET", path, authorization=self._auth.header(repository))

    def _deadline(self) -> float:
        return time.monotonic() + self._settings.github_retry_budget_seconds

    def _result(self, target: _Target, run: Run, key: str, gate: GateCheck | None) -> ActionResult:
        p = target.params
        which = f"run #{run.id}" if run.id is not None else "a run (not listed yet)"
        detail = (f"{which} of {target.describe()} dispatched for model {p.model}:{p.version} with the "
                  f"{'GitHub App' if self._auth.used == 'github-app' else 'fine-grained token'}; awaiting approval "
                  f"in environment {p.environment}")
        return ActionResult(
            external_id=str(run.id) if run.id is not None else None, detail=detail, url=run.url,
            data={
                "target": "github-actions", "repository": target.repository, "workflow": p.workflow,
                "ref": p.branch, "id": run.id, "url": run.url, "environment": p.environment, "model": p.model,
                "version": p.version, "release_key": key, "status": "awaiting approval", "auth": self._auth.used,
                "gate": gate.reason if gate else "verified by the attempt that dispatched it",
            },
        )

    # verify, then dispatch ------------------------------------------------------------------------------------
    def _queue(
        self, target: _Target, action: PlannedAction, key: str, *, resumed: bool
    ) -> tuple[Run, GateCheck | None]:
        deadline = self._deadline()
        if resumed:
            found = self._find(target, key, deadline, settle=True)
            if found is not None:
                log.info("queue_release: found run #%s of %s, dispatched by an earlier attempt", found.id,
                         target.describe())
                return found, None
        gate = self._verify(target, deadline, use_cache=True)
        if not gate.gated:
            raise NotGated(gate)
        what = f"dispatching {target.describe()} for {target.params.model}:{target.params.version}"
        run = self._retrier.run(
            what, deadline, lambda: self._dispatch(target, action, key, deadline),
            before_retry=lambda failure: self._find(target, key, deadline, settle=True),  # it may have worked
        )
        return run, gate

    def _verify(self, target: _Target, deadline: float, *, use_cache: bool) -> GateCheck:
        now = self._clock.now()
        cached = self.gates.fresh(target.gate_key, now) if use_cache else None
        if cached is not None:
            return cached
        name = target.params.environment
        what = f"verifying the reviewers of environment {name} in {target.repository}"

        def read() -> Any:
            try:
                return self._send("GET", target, f"/repos/{target.repository}/environments/{quote(name, safe='')}")
            except Failure as failure:
                if failure.status == 404:
                    return None
                raise

        answer = self._retrier.run(what, deadline, read)
        check = judge_environment(target.where, name, answer.body if answer else None, self._clock.now())
        self.gates.remember(target.gate_key, check)
        log.info("queue_release: %s, environment %s: %s", target.where, name, check.summary)
        return check

    def _dispatch(self, target: _Target, action: PlannedAction, key: str, deadline: float) -> Run:
        p = target.params
        body: dict[str, Any] = {
            "ref": p.branch,
            "inputs": {**p.parameters, "model": p.model, "version": p.version,
                       "correlation_id": action.correlation_id, "release_key": key},
        }
        path = f"/repos/{target.repository}/actions/workflows/{target.workflow}/dispatches"
        details = self._http.api_url not in self._no_run_details
        try:
            answer = self._send("POST", target, path, {**body, "return_run_details": True} if details else body)
        except Failure as failure:
            if not details or failure.status not in (400, 422):
                raise
            # Refused before anything was dispatched: a server without the parameter (or bad inputs — then the
            # second POST is refused too, with GitHub's message).
            log.info("GitHub at %s refused return_run_details (%s); dispatching without it",
                     self._http.api_url, failure)
            self._no_run_details.add(self._http.api_url)
            answer = self._send("POST", target, path, body)
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("workflow_run_id"):
            return Run(int(answer.body["workflow_run_id"]), str(answer.body.get("html_url") or ""))
        found = self._find(target, key, deadline, settle=True)
        if found is not None:
            return found
        repo_url = self._web_root(target)
        return Run(None, f"{repo_url}/actions/workflows/{p.workflow}")

    def _find(self, target: _Target, key: str, deadline: float, *, settle: bool) -> Run | None:
        """The run whose name carries the key, from the runs list (one call per 100 runs); ``settle`` waits a little
        for a run that was just dispatched to be listed."""
        waited = 0.0
        while True:
            found = self._list_runs(target, key, deadline)
            if found is not None or not settle or waited >= self._settings.github_run_settle_seconds:
                return found
            if time.monotonic() + _SETTLE_STEP_SECONDS > deadline:
                return None
            self._sleep(_SETTLE_STEP_SECONDS)
            waited += _SETTLE_STEP_SECONDS

    def _list_runs(self, target: _Target, key: str, deadline: float) -> Run | None:
        since = self._clock.now() - timedelta(hours=self._settings.github_lookup_hours)
        what = f"looking for the run of {target.params.model}:{target.params.version} in {target.describe()}"
        path = f"/repos/{target.repository}/actions/workflows/{target.workflow}/runs"
        for page in range(1, _PAGES + 1):
            query = {"event": "workflow_dispatch", "created": f">={since:%Y-%m-%dT%H:%M:%SZ}", "per_page": 100,
                     "page": page}
            answer = self._retrier.run(what, deadline, partial(self._send, "GET", target, path, query=query))
            runs = (answer.body or {}).get("workflow_runs") or []
            for run in runs:
                if key in str(run.get("display_title") or "") or key in str(run.get("name") or ""):
                    return Run(int(run["id"]), str(run.get("html_url") or ""))
            if len(runs) < 100:
                return None
        return None

    def _send(self, method: str, target: _Target, path: str, body: Any = None,
              query: dict[str, Any] | None = None) -> Answer:
        return self._http.send(method, path, authorization=self._auth.header(target.repository), body=body,
                               query=query)

    def _web_root(self, target: _Target) -> str:
        api = self._http.api_url
        web = "https://github.com" if api == "https://api.github.com" else api.removesuffix("/api/v3")
        return f"{web}/{target.repository}"
