"""A local Azure DevOps that speaks the wire protocol the real azure-devops SDK expects (loopback only).

What it serves, as dev.azure.com / vsrm.dev.azure.com do:

* ``OPTIONS /{org}/_apis`` and ``OPTIONS /vsrm/{org}/_apis`` — resource-location discovery with the real location ids
  and route templates (the SDK builds every URL from these);
* ``GET /{org}/_apis/ResourceAreas`` — where the areas live (Release: ``/vsrm/{org}/`` on the same port; distributed
  task and pipeline checks: the organization);
* pipelines: ``POST/GET {project}/_apis/pipelines/{id}/runs`` and ``GET .../runs/{runId}`` — the list, like the
  service, returns run references *without* template parameters or variables. A run's name is what the pipeline's
  ``name:`` makes of it: with ``run_names_carry_key`` (the shipped pipeline's ``name:`` uses
  ``${{ parameters.releaseKey }}``) it carries the key, else it is the default ``yyyyMMdd.N``;
* **a run auto-creates the environment its pipeline targets when it does not exist, with no checks** — Microsoft's
  "Create and target an environment": "If a YAML pipeline refers to an environment that doesn't exist ... Azure
  Pipelines automatically creates the environment" (no approvals are added);
* environments: ``GET {project}/_apis/distributedtask/environments?name=`` (the name filter is matched as a
  case-insensitive substring here; whether the service matches exactly is not documented — the adapter picks the exact
  name either way);
* check configurations: ``GET {project}/_apis/pipelines/checks/configurations?resourceType=environment&resourceId=``
  — ``settings`` (approvers, ``minRequiredApprovers``, ``requesterCannotBeApprover``) only with ``$expand=settings``,
  as Microsoft's "Check Configurations - List" documents; a removed check is simply no longer listed;
* classic releases: ``POST/GET {project}/_apis/Release/releases`` (the list carries each release's description) and
  ``GET {project}/_apis/Release/definitions/{id}`` with each stage's ``preDeployApprovals`` — a new definition's
  stages have one **automated** approval (``isAutomated: true``, no approver), as the service creates them.

Every request is recorded (method, path, query, headers, JSON body). Faults are queued per method and path fragment:
an HTTP status with headers/body, a connection reset before the request is processed, or a reset *after* it was
processed (the run exists but the client never hears of it). Credentials are checked: a request without an accepted
Authorization header gets a bare 401, like the service — or, with ``refused_status=203``, the 203 "Non-Authoritative
Information" with an HTML sign-in page that Azure DevOps answers unrecognised credentials with
(MicrosoftDocs/vsts-rest-api-specs#97 and #574; which answer a non-member managed identity gets is unverified).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.fakes.http_fake import Fault, HttpFake, Recorded, Reply

__all__ = ["FakeAzureDevOps", "Fault", "Recorded", "wrapped_exception"]

LOCATION_AREAS = "e81700f7-3be2-46de-8624-2eb35882fcaa"
PIPELINE_RUNS = "7859261e-d2e9-4a68-b820-a5d84cc5bb3d"
RELEASES = "a166fde7-27ad-408e-ba75-703c2cc9d500"
RELEASE_AREA = "efc2f575-36ef-48e9-b672-0c6fb4a48ac5"
TASK_AGENT_AREA = "a85b8835-c1a1-4aac-ae97-1c3d0ba72dbd"
PIPELINES_CHECKS_AREA = "4a933897-0488-45af-bd82-6fd3ad33f46a"
ENVIRONMENTS = "8572b1fc-2482-47fa-8f74-7e3ed53ee54b"
CHECK_CONFIGURATIONS = "86c8381e-5aee-4cde-8ae4-25c0c7f5eaea"
RELEASE_DEFINITIONS = "d8f96f24-8ea7-4cb6-baab-2df8fc515665"
APPROVAL_TYPE = {"id": "8c6f20a7-a545-4486-9777-f762fafe0d4d", "name": "Approval"}
BRANCH_CONTROL_TYPE = {"id": "fe1de3ee-a436-41b4-bb20-f6eb4cb879a7", "name": "Task Check"}
SIGN_IN_PAGE = "<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head><body></body></html>"

_ORG_LOCATIONS = [
    {"id": LOCATION_AREAS, "area": "Location", "resourceName": "ResourceAreas",
     "routeTemplate": "_apis/{resource}/{areaId}", "resourceVersion": 1, "minVersion": 3.2, "maxVersion": 7.2,
     "releasedVersion": "0.0"},
    {"id": PIPELINE_RUNS, "area": "pipelines", "resourceName": "runs",
     "routeTemplate": "{project}/_apis/pipelines/{pipelineId}/runs/{runId}", "resourceVersion": 1,
     "minVersion": 5.1, "maxVersion": 7.2, "releasedVersion": "7.1"},
    {"id": ENVIRONMENTS, "area": "distributedtask", "resourceName": "environments",
     "routeTemplate": "{project}/_apis/distributedtask/environments/{environmentId}", "resourceVersion": 1,
     "minVersion": 5.0, "maxVersion": 7.2, "releasedVersion": "0.0"},
    {"id": CHECK_CONFIGURATIONS, "area": "PipelinesChecks", "resourceName": "configurations",
     "routeTemplate": "{project}/_apis/pipelines/checks/configurations/{id}", "resourceVersion": 1,
     "minVersion": 5.1, "maxVersion": 7.2, "releasedVersion": "0.0"},
]
_VSRM_LOCATIONS = [
    {"id": RELEASES, "area": "Release", "resourceName": "releases",
     "routeTemplate": "{project}/_apis/{area}/{resource}/{releaseId}", "resourceVersion": 8, "minVersion": 3.0,
     "maxVersion": 7.2, "releasedVersion": "7.1"},
    {"id": RELEASE_DEFINITIONS, "area": "Release", "resourceName": "definitions",
     "routeTemplate": "{project}/_apis/{area}/{resource}/{definitionId}", "resourceVersion": 4, "minVersion": 3.0,
     "maxVersion": 7.2, "releasedVersion": "7.1"},
]

# ---- release signals (issue 12): service-hooks subscriptions, projects, one run's / release's state -------------
HOOK_SUBSCRIPTIONS = "fc50d02a-849f-41fb-8af1-0a5216103269"
PROJECTS = "603fe2ac-9723-48b9-88ad-09305aa6c6e1"
CORE_AREA = "79134c72-4a58-4b42-976c-04e7115f32bf"
_ORG_LOCATIONS.extend([
    {"id": HOOK_SUBSCRIPTIONS, "area": "hooks", "resourceName": "subscriptions",
     "routeTemplate": "_apis/{area}/{resource}/{subscriptionId}", "resourceVersion": 1, "minVersion": 1.0,
     "maxVersion": 7.2, "releasedVersion": "7.1"},
    {"id": PROJECTS, "area": "core", "resourceName": "projects", "routeTemplate": "_apis/{resource}/{*projectId}",
     "resourceVersion": 4, "minVersion": 1.0, "maxVersion": 7.2, "releasedVersion": "7.1"},
])
#: What the service shows of a subscription's secret inputs when it lists them (not verified against the live
#: service: Microsoft's REST reference does not say; the fake assumes they are masked, so nothing may rely on reading
#: a secret back).
MASKED = "********"
# ---- end release signals ------------------------------------------------------------------------------------------


def wrapped_exception(message: str, type_key: str) -> dict[str, Any]:
    """The JSON error body Azure DevOps sends (the SDK turns it into ``AzureDevOpsServiceError``)."""
    return {"$id": "1", "innerException": None, "message": message,
            "typeName": f"Microsoft.Azure.Pipelines.WebApi.{type_key}, Microsoft.Azure.Pipelines.WebApi",
            "typeKey": type_key, "errorCode": 0, "eventId": 3000}


class FakeAzureDevOps(HttpFake):
    """Start with ``start()``, point the SDK at ``organization_url``, read ``requests``; ``stop()`` when done."""

    name = "fake-azure-devops"

    def __init__(
        self,
        *,
        org: str = "contoso",
        pipelines: tuple[int, ...] = (42,),
        definitions: tuple[int, ...] = (7,),
        accepted_auth: tuple[str, ...] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        targets: str = "production",
        stages: tuple[str, ...] = ("Staging", "Production"),
        run_names_carry_key: bool = True,
        refused_status: int = 401,
    ) -> None:
        self.org = org
        self.pipelines = set(pipelines)
        #: The environment each pipeline's deployment job targets (what its YAML says).
        self.targets = dict.fromkeys(pipelines, targets)
        self.accepted_auth = set(accepted_auth)
        self.clock = clock
        self.run_names_carry_key = run_names_carry_key
        self.refused_status = refused_status
        self.environments: dict[int, dict[str, Any]] = {}
        self.checks: dict[int, dict[str, Any]] = {}
        self.definitions: dict[int, dict[str, Any]] = {d: self._definition(d, stages) for d in definitions}
        self.runs: dict[int, dict[str, Any]] = {}
        self.releases: dict[int, dict[str, Any]] = {}
        super().__init__()
        # release signals (issue 12): service-hooks subscriptions by id; project name → id
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, str] = {"mlops": "be9b3917-87e6-42a4-a549-2bc06a7a878f"}

    @property
    def organization_url(self) -> str:
        return f"{self.base}/{self.org}"

    # what a person configures in the portal ---------------------------------------------------------------------
    def add_environment(self, name: str, *, approvers: tuple[str, ...] = ("ML Release Board",),
                        min_required: int = 1, requester_cannot_be_approver: bool = True,
                        branch_control: bool = False) -> int:
        """An environment, with an Approval check naming ``approvers`` (none: no Approval check)."""
        with self._lock:
            env_id = len(self.environments) + 1
            self.environments[env_id] = self._environment(env_id, name)
        if branch_control:
            self._add_check(env_id, BRANCH_CONTROL_TYPE, {"displayName": "Branch control",
                                                          "inputs": {"allowedBranches": "refs/heads/main"}})
        if approvers:
            self._add_check(env_id, APPROVAL_TYPE, {
                "approvers": [{"displayName": a, "id": f"00000000-0000-0000-0000-{i:012d}"}
                              for i, a in enumerate(approvers, 1)],
                "executionOrder": 1, "instructions": "", "blockedApprovers": [],
                "minRequiredApprovers": min_required, "requesterCannotBeApprover": requester_cannot_be_approver,
            })
        return env_id

    def remove_approval(self, name: str) -> None:
        """Someone deletes the environment's Approval check: the list no longer shows it."""
        env = self.environment(name)
        assert env is not None, f"no environment {name}"
        for check_id, check in list(self.checks.items()):
            if check["resource"]["id"] == str(env["id"]) and check["type"] == APPROVAL_TYPE:
                del self.checks[check_id]

    def set_stage_approval(self, definition: int, stage: str, approver: str | None,
                           *, creator_can_approve: bool = False) -> None:
        """A classic stage's pre-deployment approval: a person (``approver``) or automated (None)."""
        [env] = [e for e in self.definitions[definition]["environments"] if e["name"] == stage]
        step: dict[str, Any] = {"rank": 1, "isAutomated": approver is None, "isNotificationOn": False, "id": 1}
        if approver is not None:
            step["approver"] = {"displayName": approver, "id": "00000000-0000-0000-0000-0000000000aa"}
        env["preDeployApprovals"]["approvals"] = [step]
        env["preDeployApprovals"]["approvalOptions"]["releaseCreatorCanBeApprover"] = creator_can_approve

    def environment(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.environments.values() if e["name"].lower() == name.lower()), None)

    def _environment(self, env_id: int, name: str) -> dict[str, Any]:
        now = self.clock().isoformat().replace("+00:00", "Z")
        return {"id": env_id, "name": name, "description": "", "createdOn": now, "lastModifiedOn": now,
                "createdBy": {"displayName": "Project Collection Build Service", "id": "build-service"},
                "project": {"id": "11111111-1111-1111-1111-111111111111", "name": "mlops"}}

    def _add_check(self, env_id: int, kind: dict[str, str], settings: dict[str, Any]) -> None:
        with self._lock:
            check_id = len(self.checks) + 1 + max(self.checks, default=0)
            env = self.environments[env_id]
            self.checks[check_id] = {
                "id": check_id, "type": dict(kind), "timeout": 43200, "settings": settings,
                "resource": {"type": "environment", "id": str(env_id), "name": env["name"]},
                "createdOn": self.clock().isoformat().replace("+00:00", "Z"),
                "url": f"{self.base}/{self.org}/_apis/pipelines/checks/configurations/{check_id}",
            }

    def _definition(self, definition: int, stages: tuple[str, ...]) -> dict[str, Any]:
        return {"id": definition, "name": f"release-model-{definition}", "revision": 1, "environments": [
            {"id": i, "name": stage, "rank": i, "preDeployApprovals": {
                "approvals": [{"rank": 1, "isAutomated": True, "isNotificationOn": False, "id": i}],
                "approvalOptions": {"requiredApproverCount": None, "releaseCreatorCanBeApprover": False,
                                    "autoTriggeredAndPreviousEnvironmentApprovedCanBeSkipped": False,
                                    "enforceIdentityRevalidation": False, "timeoutInMinutes": 0,
                                    "executionOrder": "beforeGates"}}}
            for i, stage in enumerate(stages, 1)
        ]}

    def refuse(self, request: Recorded) -> Reply | None:
        if self.accepted_auth and request.headers.get("authorization") not in self.accepted_auth:
            if self.refused_status == 203:
                return 203, SIGN_IN_PAGE, {"Content-Type": "text/html; charset=utf-8"}
            return 401, None, {}
        return None

    def respond(self, request: Recorded) -> Reply:
        status, body = self.answer(request.method, request.path, request.query, request.body)
        return status, body, {"Content-Type": "application/json; charset=utf-8; api-version=7.1"}

    # the service ------------------------------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        org, vsrm = f"/{self.org}", f"/vsrm/{self.org}"
        if method == "OPTIONS" and path.rstrip("/") == f"{org}/_apis":
            return 200, {"count": len(_ORG_LOCATIONS), "value": _ORG_LOCATIONS}
        if method == "OPTIONS" and path.rstrip("/") == f"{vsrm}/_apis":
            return 200, {"count": len(_VSRM_LOCATIONS), "value": _VSRM_LOCATIONS}
        if method == "GET" and path == f"{org}/_apis/ResourceAreas":
            areas = [{"id": RELEASE_AREA, "name": "Release", "locationUrl": f"{self.base}{vsrm}/"},
                     {"id": TASK_AGENT_AREA, "name": "distributedtask", "locationUrl": f"{self.base}{org}/"},
                     {"id": PIPELINES_CHECKS_AREA, "name": "PipelinesChecks", "locationUrl": f"{self.base}{org}/"},
                     {"id": CORE_AREA, "name": "core", "locationUrl": f"{self.base}{org}/"}]
            return 200, {"count": len(areas), "value": areas}
        routed = self._release_signal_routes(method, path, query, body)
        if routed is not None:
            return routed
        parts = path.strip("/").split("/")
        if parts[:1] == [self.org] and parts[2:4] == ["_apis", "pipelines"] and parts[5:6] == ["runs"]:
            return self._pipelines(method, parts[1], int(parts[4]), parts[6] if len(parts) > 6 else None, body)
        if parts[:2] == ["vsrm", self.org] and [p.lower() for p in parts[3:6]] == ["_apis", "release", "releases"]:
            return self._releases(method, parts[2], query, body)
        if parts[:2] == ["vsrm", self.org] and [p.lower() for p in parts[3:6]] == ["_apis", "release", "definitions"]:
            definition = self.definitions.get(int(parts[6])) if len(parts) > 6 else None
            if method != "GET" or definition is None:
                return 404, wrapped_exception(f"VS402881: No release definition found with id {parts[6:7]}.",
                                              "ReleaseDefinitionNotFoundException")
            return 200, definition
        if parts[:1] == [self.org] and parts[2:5] == ["_apis", "distributedtask", "environments"] and method == "GET":
            wanted = (query.get("name") or [""])[0].lower()
            found = [e for e in self.environments.values() if wanted in e["name"].lower()]
            return 200, {"count": len(found), "value": found}
        if parts[:1] == [self.org] and parts[2:6] == ["_apis", "pipelines", "checks", "configurations"]:
            return self._check_configurations(method, query)
        return 404, wrapped_exception(f"no route for {method} {path}", "RouteNotFoundException")

    def _check_configurations(self, method: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if method != "GET":
            return 405, wrapped_exception(f"{method} not supported here", "MethodNotAllowed")
        kind, resource = (query.get("resourceType") or [""])[0], (query.get("resourceId") or [""])[0]
        expand = (query.get("$expand") or ["none"])[0].lower() == "settings"
        found = [
            c if expand else {k: v for k, v in c.items() if k != "settings"}
            for c in self.checks.values()
            if c["resource"]["type"] == kind and c["resource"]["id"] == resource
        ]
        return 200, {"count": len(found), "value": found}

    def _pipelines(self, method: str, project: str, pipeline: int, run_id: str | None, body: Any) -> tuple[int, Any]:
        if pipeline not in self.pipelines:
            return 404, wrapped_exception(f"Pipeline with id {pipeline} not found.", "PipelineNotFoundException")
        if method == "POST" and run_id is None:
            target = self.targets.get(pipeline)
            if target and self.environment(target) is None:  # Azure Pipelines creates it, with no checks
                with self._lock:
                    env_id = len(self.environments) + 1
                    self.environments[env_id] = self._environment(env_id, target)
            with self._lock:
                run_id_new = 100 + len(self.runs) + 1
                web = f"{self.base}/{self.org}/{project}/_build/results?buildId={run_id_new}"
                name = f"{self.clock():%Y%m%d}.{len(self.runs) + 1}"
                key = (body.get("templateParameters") or {}).get("releaseKey")
                if self.run_names_carry_key and key:  # name: mlreactor-${{ parameters.releaseKey }}-$(Date:yyyyMMdd)
                    name = f"mlreactor-{key}-{self.clock():%Y%m%d}.{len(self.runs) + 1}"
                run = {
                    "id": run_id_new, "name": name, "state": "inProgress",
                    "createdDate": self.clock().isoformat().replace("+00:00", "Z"),
                    "url": f"{self.base}/{self.org}/{project}/_apis/pipelines/{pipeline}/runs/{run_id_new}",
                    "_links": {"web": {"href": web}},
                    "pipeline": {"id": pipeline, "name": "release-model"},
                    "templateParameters": dict(body.get("templateParameters") or {}),
                    "variables": dict(body.get("variables") or {}),
                    "resources": body.get("resources") or {},
                }
                self.runs[run_id_new] = run
            return 200, run
        if method == "GET" and run_id is None:
            refs = [
                {k: v for k, v in r.items() if k not in ("templateParameters", "variables", "resources")}
                for r in sorted(self.runs.values(), key=lambda r: r["id"], reverse=True)
                if r["pipeline"]["id"] == pipeline
            ]
            return 200, {"count": len(refs), "value": refs}
        if method == "GET" and run_id is not None and int(run_id) in self.runs:
            return 200, self.runs[int(run_id)]
        return 404, wrapped_exception(f"Run {run_id} not found.", "PipelineRunNotFoundException")

    def _releases(self, method: str, project: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "POST":
            definition = int(body.get("definitionId") or 0)
            if definition not in self.definitions:
                return 404, wrapped_exception(
                    f"VS402881: No release definition found with id {definition}.", "ReleaseDefinitionNotFoundException"
                )
            with self._lock:
                release_id = len(self.releases) + 1
                release = {
                    "id": release_id, "name": f"Release-{release_id}", "status": "active",
                    "createdOn": self.clock().isoformat().replace("+00:00", "Z"),
                    "description": body.get("description") or "",
                    "releaseDefinition": {"id": definition},
                    "variables": body.get("variables") or {},
                    "artifacts": body.get("artifacts") or [],
                    "_links": {"web": {"href": f"{self.base}/{self.org}/{project}/_release?releaseId={release_id}"
                                                f"&_a=release-summary"}},
                }
                self.releases[release_id] = release
            return 200, release
        if method == "GET":
            definition = int(query.get("definitionId", ["0"])[0])
            listed = [
                {k: v for k, v in r.items() if k not in ("variables", "artifacts")}
                for r in sorted(self.releases.values(), key=lambda r: r["id"], reverse=True)
                if r["releaseDefinition"]["id"] == definition
            ]
            return 200, {"count": len(listed), "value": listed}
        return 405, wrapped_exception(f"{method} not supported", "MethodNotAllowed")

    # ---- release signals (issue 12) -------------------------------------------------------------------------
    def finish_run(self, run_id: int, result: str) -> None:
        """The run ends (``succeeded``, ``failed``, ``canceled``), as ``GET .../runs/{id}`` then shows it."""
        with self._lock:
            self.runs[run_id].update(state="completed", result=result,
                                     finishedDate=self.clock().isoformat().replace("+00:00", "Z"))

    def set_stage(self, release_id: int, name: str, status: str, approvals: list[dict[str, Any]] | None = None) -> None:
        """A classic release's stage as ``GET .../releases/{id}`` shows it: status and pre-deployment approvals
        (``{"status": "pending"|"approved"|"rejected", "approvedBy": {"displayName": ...}, "comments": ...}``)."""
        with self._lock:
            release = self.releases[release_id]
            stages = [s for s in release.setdefault("environments", []) if s["name"] != name]
            stage = {"id": 10 + len(stages), "name": name, "status": status, "releaseId": release_id,
                     "preDeployApprovals": [{"id": 100 + i, "approvalType": "preDeploy", "isAutomated": False,
                                             **a} for i, a in enumerate(approvals or [])]}
            release["environments"] = [*stages, stage]

    def _release_signal_routes(self, method: str, path: str, query: dict[str, list[str]],
                               body: Any) -> tuple[int, Any] | None:
        parts = path.strip("/").split("/")
        if parts[:1] == [self.org] and parts[1:4] == ["_apis", "hooks", "subscriptions"]:
            return self._hook_subscriptions(method, parts[4] if len(parts) > 4 else None, query, body)
        if method == "GET" and parts[:1] == [self.org] and parts[1:3] == ["_apis", "projects"] and len(parts) == 4:
            project_id = self.projects.get(parts[3])
            if project_id is None:
                return 404, wrapped_exception(f"TF200016: The following project does not exist: {parts[3]}.",
                                              "ProjectDoesNotExistWithNameException")
            return 200, {"id": project_id, "name": parts[3], "state": "wellFormed"}
        if (method == "GET" and parts[:2] == ["vsrm", self.org] and len(parts) == 7
                and [p.lower() for p in parts[3:6]] == ["_apis", "release", "releases"]):
            release = self.releases.get(int(parts[6]))
            if release is None:
                return 404, wrapped_exception(f"VS402853: Release with id {parts[6]} does not exist.",
                                              "ReleaseNotFoundException")
            return 200, release
        return None

    def _hook_subscriptions(self, method: str, subscription_id: str | None, query: dict[str, list[str]],
                            body: Any) -> tuple[int, Any]:
        def shown(subscription: dict[str, Any]) -> dict[str, Any]:
            inputs = {k: (MASKED if k == "basicAuthPassword" or k == "httpHeaders" else v)
                      for k, v in subscription["consumerInputs"].items()}
            return {**subscription, "consumerInputs": inputs}

        with self._lock:
            if method == "GET" and subscription_id is None:
                listed = [shown(s) for s in self.subscriptions.values()
                          if all(s.get(k) == query[k][0] for k in ("publisherId", "eventType", "consumerId")
                                 if k in query)]
                return 200, {"count": len(listed), "value": listed}
            if method == "POST" and subscription_id is None:
                created = {**body, "id": f"00000000-0000-0000-0000-{len(self.subscriptions) + 1:012d}",
                           "status": "enabled"}
                self.subscriptions[created["id"]] = created
                return 200, shown(created)
            if method == "PUT" and subscription_id in self.subscriptions:
                replaced = {**body, "id": subscription_id, "status": "enabled"}
                self.subscriptions[subscription_id] = replaced
                return 200, shown(replaced)
        return 404, wrapped_exception(f"no subscription {subscription_id}", "SubscriptionNotFoundException")
    # ---- end release signals ----------------------------------------------------------------------------------
