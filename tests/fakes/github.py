"""A local GitHub REST API for the release adapter (loopback only), answering as api.github.com does.

* ``POST /app/installations/{id}/access_tokens`` — the App's JWT (``Authorization: Bearer``) is verified with the
  App's public key (RS256, ``iss`` = the App id, at most 10 minutes between ``iat`` and ``exp``); 201 with
  ``{token, expires_at, permissions, repository_selection}``; a bad JWT gets 401 "A JSON web token could not be
  decoded" (GitHub's "Authenticating as a GitHub App"). ``GET /repos/{o}/{r}/installation`` answers the installation.
* ``POST /repos/{o}/{r}/actions/workflows/{workflow}/dispatches`` — ``{ref, inputs, return_run_details}``: inputs
  must be strings the workflow declares (else 422 "Unexpected inputs provided"); 204 without a body, or, with
  ``return_run_details: true``, 200 ``{workflow_run_id, run_url, html_url}`` (GitHub changelog 2026-02-19). With
  ``old_server=True`` (GitHub Enterprise Server before the feature) the parameter is refused with 422 "Invalid
  request. "return_run_details" is not a permitted key." — GitHub's schema-validation wording; the exact text an
  old GHES sends is unverified. The job's environment is **created, without protection rules, when it does not
  exist** (github/docs#3126). The run's ``display_title`` is the workflow's ``run-name`` rendered with the inputs
  (``release {model}:{version} [{release_key}]``); ``runs_listed_after`` holds a new run out of the runs list for
  that many list calls (GitHub lists a new run after a short, undocumented delay).
* ``GET /repos/{o}/{r}/actions/workflows/{workflow}/runs?event=&created=>=...&per_page=&page=`` —
  ``{total_count, workflow_runs}``, newest first.
* ``GET /repos/{o}/{r}/actions/runs/{run_id}`` — the run, as GitHub REST "Get a workflow run" answers it
  (https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run, OpenAPI schema ``workflow-run``):
  ``status`` (``queued``, ``in_progress``, ``waiting``, ``requested``, ``pending``, ``completed``) and ``conclusion``
  (null until completed, then ``success``, ``failure``, ``cancelled``, ``timed_out``, ``action_required``,
  ``neutral``, ``skipped``, ``stale``), ``html_url``, ``display_title``, ``updated_at``; 404 ``Not Found`` for an id
  the repository does not have. A dispatched run starts ``waiting`` (its job waits for the environment's reviewer);
  ``set_status`` and ``finish_run`` move it on as GitHub would.
* ``GET /repos/{o}/{r}/environments/{name}`` — ``protection_rules`` (``required_reviewers`` with ``reviewers`` and
  ``prevent_self_review``, ``wait_timer``, ``branch_policy``), ``can_admins_bypass``; 404 ``Not Found`` if missing.

Tokens: installation tokens this fake issued and ``fine_grained`` tokens are accepted (``Bearer``); anything else is
401 "Bad credentials". Faults, resets and the request record come from ``HttpFake``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.http_fake import HttpFake, Recorded, Reply

NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
BAD_CREDENTIALS = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}


class FakeGitHub(HttpFake):
    name = "fake-github"

    def __init__(
        self,
        *,
        repository: str = "contoso/ml-release",
        workflow: str = "release-model.yml",
        environment: str = "production",
        inputs: tuple[str, ...] = ("model", "version", "correlation_id", "release_key"),
        app_id: str = "123456",
        public_key: str | None = None,
        installation_id: int = 4242,
        fine_grained: tuple[str, ...] = (),
        old_server: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self.repository = repository
        self.workflow = workflow
        #: The environment the workflow's release job names (``environment: production``).
        self.job_environment = environment
        self.inputs = set(inputs)
        self.app_id = app_id
        self.public_key = public_key
        self.installation_id = installation_id
        self.fine_grained = set(fine_grained)
        self.old_server = old_server
        self.clock = clock
        self.issued: dict[str, datetime] = {}
        self.environments: dict[str, dict[str, Any]] = {}
        self.runs: dict[int, dict[str, Any]] = {}
        self.runs_listed_after = 0
        self._hidden: dict[int, int] = {}

    # what a person configures ------------------------------------------------------------------------------------
    def add_environment(self, name: str, *, reviewers: tuple[str, ...] = ("ml-release-board",),
                        prevent_self_review: bool = True, wait_timer: int = 0) -> None:
        rules: list[dict[str, Any]] = []
        if wait_timer:
            rules.append({"id": 1, "node_id": "GA_wait", "type": "wait_timer", "wait_timer": wait_timer})
        if reviewers:
            rules.append({"id": 2, "node_id": "GA_reviewers", "type": "required_reviewers",
                          "prevent_self_review": prevent_self_review,
                          "reviewers": [{"type": "Team", "reviewer": {"id": i, "slug": r, "name": r}}
                                        for i, r in enumerate(reviewers, 1)]})
        self.environments[name.lower()] = self._environment(name, rules)

    def _environment(self, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"id": 161088068 + len(self.environments), "node_id": "EN_kwDO", "name": name,
                "url": f"{self.base}/repos/{self.repository}/environments/{name}",
                "html_url": f"https://github.com/{self.repository}/deployments/activity_log?environments_filter={name}",
                "created_at": now, "updated_at": now, "can_admins_bypass": True, "protection_rules": rules,
                "deployment_branch_policy": None}

    # what happens to a run --------------------------------------------------------------------------------------
    def set_status(self, run_id: int, status: str) -> None:
        """The run is ``queued`` / ``in_progress`` / ``waiting`` / ... (not completed: no conclusion yet)."""
        with self._lock:
            run = self.runs[run_id]
            run.update(status=status, conclusion=None, updated_at=self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"))

    def finish_run(self, run_id: int, conclusion: str) -> None:
        """The run completed with ``conclusion`` (``success``, ``failure``, ``cancelled``, ``timed_out``, ...)."""
        with self._lock:
            run = self.runs[run_id]
            run.update(status="completed", conclusion=conclusion,
                       updated_at=self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"))

    # the service ------------------------------------------------------------------------------------------------
    def refuse(self, request: Recorded) -> Reply | None:
        auth = request.headers.get("authorization", "")
        if request.path.startswith("/app/") or request.path.endswith("/installation"):
            return None if self._jwt_ok(auth.removeprefix("Bearer ")) else (
                401, {"message": "A JSON web token could not be decoded",
                      "documentation_url": "https://docs.github.com/rest"}, {})
        token = auth.removeprefix("Bearer ").removeprefix("token ")
        expires = self.issued.get(token)
        if token in self.fine_grained or (expires is not None and expires > self.clock()):
            return None
        return 401, BAD_CREDENTIALS, {}

    def _jwt_ok(self, token: str) -> bool:
        import jwt

        if self.public_key is None:
            return False
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["RS256"], options={"verify_exp": False})
        except jwt.PyJWTError:
            return False
        return str(claims.get("iss")) == self.app_id and 0 < claims["exp"] - claims["iat"] <= 600

    def respond(self, request: Recorded) -> Reply:
        path, method = request.path, request.method
        repo = f"/repos/{self.repository}"
        if method == "POST" and path == f"/app/installations/{self.installation_id}/access_tokens":
            token = "ghs_" + secrets.token_hex(18)
            self.issued[token] = self.clock() + timedelta(hours=1)
            return 201, {"token": token, "expires_at": self.issued[token].strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "permissions": {"actions": "write", "deployments": "read", "metadata": "read"},
                         "repository_selection": "selected"}, {}
        if method == "GET" and path == f"{repo}/installation":
            return 200, {"id": self.installation_id, "app_id": int(self.app_id), "target_type": "Organization"}, {}
        if method == "GET" and path.startswith(f"{repo}/environments/"):
            env = self.environments.get(path.rsplit("/", 1)[1].lower())
            return (200, env, {}) if env else (404, NOT_FOUND, {})
        workflow = f"{repo}/actions/workflows/{self.workflow}"
        if method == "POST" and path == f"{workflow}/dispatches":
            return self._dispatch(request.body or {})
        if method == "GET" and path == f"{workflow}/runs":
            return 200, self._list(request.query), {}
        if method == "GET" and path.startswith(f"{repo}/actions/runs/"):
            return self._run(path.removeprefix(f"{repo}/actions/runs/"))
        return 404, NOT_FOUND, {}

    def _dispatch(self, body: dict[str, Any]) -> Reply:
        body = dict(body)  # the recorded request stays as it was sent
        details = body.pop("return_run_details", None)
        if details is not None and self.old_server:
            return 422, {"message": 'Invalid request.\n\n"return_run_details" is not a permitted key.',
                         "documentation_url": "https://docs.github.com/rest/actions/workflows"}, {}
        inputs = body.get("inputs") or {}
        unexpected = sorted(set(inputs) - self.inputs)
        if unexpected or not all(isinstance(v, str) for v in inputs.values()) or "ref" not in body:
            return 422, {"message": f"Unexpected inputs provided: {unexpected}" if unexpected else "Invalid request.",
                         "documentation_url": "https://docs.github.com/rest/actions/workflows"}, {}
        if self.job_environment.lower() not in self.environments:  # GitHub creates it, unprotected
            self.environments[self.job_environment.lower()] = self._environment(self.job_environment, [])
        with self._lock:
            run_id = 9_000_000_000 + len(self.runs) + 1
            self.runs[run_id] = {
                "id": run_id, "name": "Release model", "event": "workflow_dispatch", "status": "waiting",
                "conclusion": None,
                "display_title": f"release {inputs.get('model')}:{inputs.get('version')} [{inputs.get('release_key')}]",
                "head_branch": str(body["ref"]).removeprefix("refs/heads/"), "inputs": dict(inputs),
                "created_at": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "updated_at": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "url": f"{self.base}/repos/{self.repository}/actions/runs/{run_id}",
                "html_url": f"https://github.com/{self.repository}/actions/runs/{run_id}",
            }
            self._hidden[run_id] = self.runs_listed_after
        if details:
            run = self.runs[run_id]
            return 200, {"workflow_run_id": run_id, "run_url": run["url"], "html_url": run["html_url"]}, {}
        return 204, None, {}

    def _run(self, run_id: str) -> Reply:
        with self._lock:
            run = self.runs.get(int(run_id)) if run_id.isdigit() else None
            if run is None:
                return 404, NOT_FOUND, {}
            return 200, {k: v for k, v in run.items() if k != "inputs"}, {}

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        created = (query.get("created") or [">=1970-01-01T00:00:00Z"])[0].removeprefix(">=")
        per_page, page = int((query.get("per_page") or ["30"])[0]), int((query.get("page") or ["1"])[0])
        with self._lock:
            listed = []
            for run in sorted(self.runs.values(), key=lambda r: r["id"], reverse=True):
                if self._hidden.get(run["id"], 0) > 0:
                    self._hidden[run["id"]] -= 1
                    continue
                if run["created_at"] >= created:
                    listed.append({k: v for k, v in run.items() if k != "inputs"})  # the list carries no inputs
        return {"total_count": len(listed), "workflow_runs": listed[(page - 1) * per_page: page * per_page]}
