"""``mlreactor simulate``: the whole retrain → test → release chain against a simulated workspace and DevOps.

The simulated world answers the chain's actions with the follow-up events a real workspace would emit — a
retraining job completes and registers a model, the offline test completes with metrics as run tags, the release
waits for approval, a simulated person approves it, the model is deployed — and every event goes through the real
engine, rules and ledger. Options make the candidate fail the gate, make a run fail, and deliver every event twice
and out of order, as Event Grid may.

The release end of the chain is told by the simulated Azure DevOps itself, as service-hook notifications through the
real hook endpoint (``shared/releases/hooks.py``: secret, parsing, ledger lookup): approval pending, approval
completed, run completed — never a ModelDeployed. Options make the reviewer reject it, let the approval time out
(after a reminder), or lose every hook, so that the reconciler (``shared/releases/reconciler.py``) closes the chain.

Before the release is queued its gate is verified as the real adapters verify it — the same judges
(``shared/adapters/devops/checks.py``, ``shared/adapters/github/checks.py``) read the simulated project's
configuration: ``production`` carries an Approval check by the ML Release Board, unless ``--ungated`` plays the fresh
project nobody set up (no ``production`` environment): then nothing is queued, the event is quarantined and Ops are
told (``on_quarantine``).
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.actions import (
    ActionAdapter,
    ActionKind,
    ActionResult,
    NotifyParams,
    PlannedAction,
    PublishEventParams,
    QueueReleaseParams,
    RunPipelineParams,
    TagModelParams,
    TagRunParams,
)
from shared.adapters.devops.checks import APPROVAL_CHECK_TYPE, StageApproval, judge_stage
from shared.adapters.devops.checks import judge_environment as judge_devops_environment
from shared.adapters.devops_state import run_signal
from shared.adapters.gate import GateAdapter
from shared.adapters.github.checks import judge_environment as judge_github_environment
from shared.adapters.releases.gates import GateCheck, NotGated
from shared.clock import Clock
from shared.engine import Engine
from shared.errors import TransientError
from shared.ledger.port import Ledger, ReleaseRecord
from shared.outcomes import EventOutcome, Outcome
from shared.reactions import Rules
from shared.releases.hooks import azure_devops
from shared.releases.reconciler import reconcile
from shared.releases.signals import Signal, TargetKind
from shared.releases.tracking import TrackedReleases, organization_name
from shared.settings import Settings

EVENT_TYPE = "Microsoft.MachineLearningServices."
MODEL = "credit-fraud"
MONITOR = "credit_card_fraud_monitor"
SIM_ORGANIZATION = "https://dev.azure.com/contoso"
SIM_HOOK_SECRET = "simulated-hook-secret"  # noqa: S105 - the simulated Azure DevOps' own, nothing real
SIM_SETTINGS = Settings.model_validate({"release_hook_secret": SIM_HOOK_SECRET})


@dataclass
class Options:
    fail_gate: bool = False
    fail_run: Literal["retrain", "test"] | None = None
    duplicates: bool = False
    shuffle: bool = False
    seed: int = 7
    #: Share of adapter calls that fail transiently — half before the effect, half after it (the effect happened
    #: but its answer was lost), which is what the idempotency keys and resumed lookups are for.
    fault_rate: float = 0.0
    max_deliveries: int = 500
    #: The release's end (shared/releases/): the reviewer rejects it, the approval times out, hooks are all lost.
    reject: bool = False
    expire: bool = False
    lose_hooks: bool = False
    #: The release target's environment was never set up: no approval holds it.
    ungated: bool = False


class SimClock:
    """Simulated time: each delivery moves the clock a little, as real deliveries are spread out."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def tick(self, seconds: float = 30) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class Job:
    name: str
    purpose: str
    tags: dict[str, str]
    inputs: dict[str, str]
    status: str = "Running"


@dataclass
class Release:
    id: int
    project: str
    environment: str
    parameters: dict[str, str]
    status: str = "awaiting approval"
    overdue: bool = False


@dataclass
class World:
    """A workspace (models, jobs) and a DevOps project (releases), plus what Ops was told and what was published."""

    workspace: str
    clock: SimClock
    options: Options
    models: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    releases: list[Release] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    #: Service-hook notifications the simulated Azure DevOps is about to POST, and whether the reconciler runs next.
    hooks: list[dict[str, Any]] = field(default_factory=list)
    reconcile_due: bool = False
    gate_checks: list[GateCheck] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # the release target's configuration, judged as the real adapters judge it ---------------------------------
    def verify(self, p: QueueReleaseParams) -> GateCheck:
        now, approver = self.clock.now(), "ML Release Board"
        gated = not self.options.ungated
        if p.flavour == "github":
            rule = {"type": "required_reviewers", "prevent_self_review": True,
                    "reviewers": [{"type": "Team", "reviewer": {"slug": "ml-release-board"}}]}
            environment = {"name": p.environment, "protection_rules": [rule], "can_admins_bypass": False}
            check = judge_github_environment(f"repository {p.repository}, workflow {p.workflow}", p.environment,
                                             environment if gated else None, now)
        elif p.flavour == "classic":
            stages = {p.environment: [StageApproval(False, approver) if gated else StageApproval(True, None)]}
            check = judge_stage(f"organization contoso, project {p.project}, release definition {p.definition_id}",
                                p.environment, stages, now, creator_can_approve=False)
        else:
            approval = {"type": {"id": APPROVAL_CHECK_TYPE, "name": "Approval"}, "settings": {
                "approvers": [{"displayName": approver}], "minRequiredApprovers": 1,
                "requesterCannotBeApprover": True}}
            check = judge_devops_environment(f"organization contoso, project {p.project}, pipeline {p.pipeline_id}",
                                             p.environment, 1 if gated else None, [approval], now)
        self.gate_checks.append(check)
        return check

    # ModelState (what the quality gate reads) ------------------------------------------------------------------
    authoritative = True

    def model_tags(self, workspace: str, name: str, version: str) -> Mapping[str, str] | None:
        return self.models.get((name, version))

    def find_model_by_tag(
        self, workspace: str, name: str, key: str, value: str
    ) -> tuple[str, Mapping[str, str]] | None:
        found = [(int(v), v, t) for (n, v), t in self.models.items() if n == name and t.get(key) == value]
        return (max(found)[1], max(found)[2]) if found else None

    def run_tags(self, workspace: str, run_id: str) -> Mapping[str, str]:
        job = self.jobs.get(run_id)
        return dict(job.tags) if job else {}

    # events the world emits -------------------------------------------------------------------------------------
    def emit(self, kind: str, subject: str, data: dict[str, Any]) -> None:
        self.pending.append({
            "id": f"sim-{next(self._ids):04d}", "topic": self.workspace, "subject": subject,
            "eventType": EVENT_TYPE + kind, "eventTime": self.clock.now().isoformat(), "data": data,
            "dataVersion": "", "metadataVersion": "1",
        })

    def finish_job(self, job: Job) -> None:
        failing = self.options.fail_run == {"retrain": "retrain", "offline-test": "test"}.get(job.purpose)
        run = {"experimentId": "exp-" + job.purpose, "experimentName": f"mlreactor-{job.purpose}", "runId": job.name,
               "runType": "azureml.PipelineRun", "runTags": job.tags, "runProperties": {}}
        subject = f"experiments/exp-{job.purpose}/runs/{job.name}"
        if failing:
            job.status = "Failed"
            self.emit("RunStatusChanged", subject, {**run, "runStatus": "Failed"})
            return
        if job.purpose == "offline-test":
            good = not self.options.fail_gate
            job.tags.update({"mlreactor.metric.auc": "0.91" if good else "0.74",
                             "mlreactor.metric.latency_ms": "32" if good else "61"})
        job.status = "Completed"
        self.emit("RunCompleted", subject, {**run, "runTags": dict(job.tags)})
        if job.purpose == "retrain":
            version = str(1 + max((int(v) for (n, v) in self.models if n == MODEL), default=0))
            tags = {"mlreactor.correlation": job.tags.get("mlreactor.correlation", ""), "source_job": job.name}
            self.models[(MODEL, version)] = dict(tags)
            self.emit("ModelRegistered", f"models/{MODEL}:{version}",
                      {"modelName": MODEL, "modelVersion": version, "modelTags": tags, "modelProperties": {}})

    # the simulated Azure DevOps: its service hooks and what GET run shows (shared/releases/) ------------------------
    def notify_hook(self, event_type: str, release: Release, **resource: Any) -> None:
        """A Web Hooks notification shaped as Microsoft's "Service hooks events" samples (tests/events/hooks/)."""
        if self.options.lose_hooks:
            return
        url = f"{SIM_ORGANIZATION}/{release.project}/_build/results?buildId={release.id}"
        self.hooks.append({
            "id": f"hook-{next(self._ids):04d}", "eventType": event_type, "publisherId": "pipelines",
            "message": {"text": f"Run {release.id}: {event_type}"},
            "resource": {"run": {"id": release.id, "_links": {"web": {"href": url}}}, **resource},
            "resourceVersion": "5.1-preview.1", "createdDate": self.clock.now().isoformat(),
        })

    def approval(self, release: Release, status: str, who: str | None = None, why: str | None = None) -> None:
        step = {"status": status, "comment": why, "actualApprover": {"displayName": who} if who else None}
        event = "approval-pending" if status == "pending" else "approval-completed"
        self.notify_hook(f"ms.vss-pipelinechecks-events.{event}", release,
                         approval={"id": f"approval-{release.id}", "status": status, "steps": [step]})

    def run_completed(self, release: Release, result: str) -> None:
        self.notify_hook("ms.vss-pipelines.run-state-changed-event", release,
                         run={"id": release.id, "state": "completed", "result": result, "_links": {"web": {
                             "href": f"{SIM_ORGANIZATION}/{release.project}/_build/results?buildId={release.id}"}}})

    def decide(self, release: Release) -> None:
        """A person approves (or rejects) the waiting release, or nobody does until the approval times out."""
        if self.options.expire and not release.overdue:
            release.overdue = True  # two days pass without anyone deciding: the reconciler sends a reminder
            self.clock.tick(49 * 3600)
            self.reconcile_due = True
            return
        if self.options.expire:
            release.status = "approval expired"
            self.approval(release, "timedOut")
            self.run_completed(release, "failed")
        elif self.options.reject:
            release.status = "rejected"
            self.approval(release, "rejected", "Dana Reviewer", "AUC gain too small for a Friday release")
            self.run_completed(release, "failed")
        else:
            release.status = "approved and deployed"
            self.approval(release, "approved", "Dana Reviewer")
            self.run_completed(release, "succeeded")
        self.reconcile_due = self.options.lose_hooks

    def read(self, record: ReleaseRecord) -> Signal | None:
        """``GET .../runs/{id}`` of the simulated Azure DevOps: the reconciler's one look at a release."""
        release = next((r for r in self.releases if str(r.id) == record.release_id), None)
        result = {"approved and deployed": "succeeded", "rejected": "failed", "approval expired": "failed"}.get(
            release.status if release else "")
        base = {"target": TargetKind.AZURE_DEVOPS_PIPELINE, "scope": record.scope, "release_id": record.release_id,
                "link": record.url}
        return run_signal(base, "completed", result) if result else None


class SimAdapter:
    """Carries out every action kind against the ``World``; idempotent like the real adapters."""

    live = False

    def __init__(self, world: World, kind: ActionKind, rng: random.Random) -> None:
        self.world = world
        self.kind = kind
        self.rng = rng

    def execute(self, action: PlannedAction) -> ActionResult:
        rate = self.world.options.fault_rate
        if rate and self.rng.random() < rate / 2:
            raise TransientError(f"simulated {self.kind.value} fault before the call")
        result = self._apply(action)
        if rate and self.rng.random() < rate / 2:
            raise TransientError(f"simulated {self.kind.value} fault after the call: its answer was lost")
        return result

    def _apply(self, action: PlannedAction) -> ActionResult:
        w, p = self.world, action.params
        if isinstance(p, RunPipelineParams):
            name = f"mlr-{action.key[:12]}"  # the real adapter derives the job name from the idempotency key too
            if name not in w.jobs:
                tags = {**p.tags, "mlreactor.correlation": action.correlation_id, "mlreactor.purpose": p.purpose,
                        "mlreactor.reaction": action.rule}
                w.jobs[name] = Job(name, p.purpose, tags, dict(p.inputs))
            return ActionResult(external_id=name, detail=f"{p.purpose} job {name} submitted",
                                url=f"https://ml.azure.com/runs/{name}?wsid={w.workspace}",
                                data={"workspace": w.workspace, "job": name, "experiment": p.experiment_name or ""})
        if isinstance(p, TagModelParams):
            tags = w.models.setdefault((p.model, p.version), {})
            for (name, version), other in w.models.items():
                for key, value in p.exclusive.items():
                    if (name, version) != (p.model, p.version) and name == p.model and other.get(key) == value:
                        if key in p.demote_to:  # like the live adapter: no demotion value removes the tag
                            other[key] = p.demote_to[key]
                        else:
                            del other[key]
            tags.update(p.tags)
            for key in p.remove:
                tags.pop(key, None)
            shown = ", ".join(f"{k}={v}" for k, v in p.tags.items())
            return ActionResult(external_id=f"{p.model}:{p.version}", detail=f"tagged {p.model}:{p.version} {shown}")
        if isinstance(p, TagRunParams):
            job = w.jobs.get(p.run)
            if job:
                job.tags.update(p.set)
            return ActionResult(external_id=p.run, detail=f"tagged run {p.run}")
        if isinstance(p, QueueReleaseParams):
            # Like the real adapter: the release key (rule + model version) travels as a parameter and is looked up.
            parameters = {**p.parameters, "modelName": p.model, "modelVersion": p.version,
                          "correlationId": action.correlation_id, "releaseKey": f"{action.rule}|{p.model}:{p.version}"}
            release = next((r for r in w.releases if r.parameters["releaseKey"] == parameters["releaseKey"]), None)
            if release is None:
                check = w.verify(p)
                if not check.gated:
                    raise NotGated(check)
                release = Release(100 + len(w.releases), p.project or p.repository or "", p.environment, parameters)
                w.releases.append(release)
                w.approval(release, "pending")  # the run reaches the production stage and waits
            url = f"{SIM_ORGANIZATION}/{p.project}/_build/results?buildId={release.id}"
            return ActionResult(
                external_id=str(release.id), url=url,
                detail=f"release {release.id} queued, awaiting approval in environment {p.environment}",
                data={"id": release.id, "url": url, "environment": p.environment, "model": p.model,
                      "version": p.version, "status": release.status},
            )
        if isinstance(p, NotifyParams):
            w.notifications.append(_message(p, action))
            return ActionResult(detail=f"notified {', '.join(p.channels)}: {p.message}")
        if isinstance(p, PublishEventParams):
            w.published.append(p.type)
            return ActionResult(external_id=action.key[:16], detail=f"published {p.type}")
        raise AssertionError(f"no simulation for {self.kind}")


def _message(p: NotifyParams, action: PlannedAction) -> str:
    """What Ops would read first, in one line (the real notify adapter renders cards and messages)."""
    release, gate = action.steps.get("release"), action.steps.get("gate")
    if p.message == "event_quarantined":
        return f"{p.message}: {p.facts.get('Reason', '')}"
    if p.title and p.message == "generic":
        return f"{p.message}: {p.title}"
    if p.message == "release_queued" and release:
        return (f"{p.message}: {release['model']}:{release['version']} awaits approval in environment "
                f"{release['environment']} ({release['url']})")
    if gate:
        return f"{p.message}: {gate['model']}:{gate['version']} {gate['verdict']} ({gate['summary']})"
    ctx = action.event.context()
    about = ctx.get("monitor", {}).get("name") or ctx.get("model", {}).get("id") or ctx.get("run", {}).get("id", "")
    return f"{p.message}: {about}"


@dataclass
class Result:
    world: World
    outcomes: list[tuple[str, EventOutcome]]
    correlation_id: str


def simulate(rules: Rules, ledger: Ledger, options: Options, start: datetime | None = None) -> Result:
    """Run the chain from one drift signal until nothing is pending; return the world and every outcome."""
    workspace = rules.spec.allowed_workspaces[0]
    clock = SimClock(start or datetime.now(UTC))
    world = World(workspace, clock, options)
    world.models[(MODEL, "1")] = {"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.88",
                                  "mlreactor.metric.latency_ms": "30"}
    rng = random.Random(options.seed)  # noqa: S311 - simulated faults and order, not security
    adapters: dict[ActionKind, ActionAdapter] = {kind: SimAdapter(world, kind, rng) for kind in ActionKind}
    adapters[ActionKind.QUALITY_GATE] = GateAdapter(world, clock)
    adapters[ActionKind.QUEUE_RELEASE] = TrackedReleases(  # as build_adapters wraps the live release adapter
        adapters[ActionKind.QUEUE_RELEASE], ledger, default_organization=SIM_ORGANIZATION, clock=_as(clock))
    engine = Engine(rules, ledger, adapters, clock=_as(clock))
    world.emit("RunStatusChanged", f"experiments/monitor/runs/{MONITOR}_signal_1", {
        "experimentId": "monitor", "experimentName": MONITOR, "runId": f"{MONITOR}_signal_1",
        "runType": "azureml.PipelineRun", "runStatus": "Completed", "runProperties": {},
        "runTags": {"azureml_modelmonitor_threshold_breached": f"The signal '{MONITOR}_data_drift' has failed due"
                    " to one or more features violating metric thresholds."},
    })
    correlation_id = world.pending[0]["id"]
    outcomes: list[tuple[str, EventOutcome]] = []
    deliveries = 0
    while deliveries < options.max_deliveries:
        if not world.pending and (world.reconcile_due or world.hooks):
            deliveries += 1
            outcomes.extend(_release_signals(world, engine, rng))
            continue
        if not world.pending:
            if not _advance(world):
                break
            continue
        batch, world.pending = world.pending, []
        if options.duplicates:
            batch = batch + [copy.deepcopy(e) for e in batch]
        if options.shuffle:
            rng.shuffle(batch)
        for raw in batch:
            deliveries += 1
            clock.tick()
            (outcome,) = engine.handle_delivery(json.dumps([raw]))
            outcomes.append((raw["eventType"].removeprefix(EVENT_TYPE), outcome))
            if outcome.outcome is Outcome.FAILED:  # Event Grid redelivers later
                world.pending.append(raw)
    return Result(world, outcomes, correlation_id)


def _release_signals(world: World, engine: Engine, rng: random.Random) -> list[tuple[str, EventOutcome]]:
    """The reconciler's pass, when due, then the hooks Azure DevOps POSTs — through the real hook endpoint."""
    clock = world.clock
    done: list[tuple[str, EventOutcome]] = []
    if world.reconcile_due:
        world.reconcile_due = False
        clock.tick(300)  # the timer's next run
        report = reconcile(engine, {TargetKind.AZURE_DEVOPS_PIPELINE.value: world}, SIM_SETTINGS, clock.now())
        done.extend(("reconciler", outcome) for outcome in report.outcomes)
        return done
    batch, world.hooks = world.hooks, []
    if world.options.duplicates:
        batch = batch + [copy.deepcopy(h) for h in batch]
    for body in batch:
        clock.tick()
        answer = azure_devops(engine, SIM_SETTINGS, {"X-Mlreactor-Hook-Secret": SIM_HOOK_SECRET},
                              json.dumps(body).encode(), organization_name(SIM_ORGANIZATION), clock.now())
        if answer.status >= 500:  # Azure DevOps retries a failed notification
            world.hooks.append(body)
        done.append(("hook " + body["eventType"].rsplit(".", 1)[1], _hook_outcome(answer.body)))
    return done


def _hook_outcome(body: Mapping[str, Any]) -> EventOutcome:
    return EventOutcome(body.get("event_id"), body.get("event_type"), body.get("subject"), None,
                        body.get("correlation_id"), Outcome(body["outcome"]), str(body.get("reason", "")))


def _advance(world: World) -> bool:
    """Time passes in the world: a running job finishes, or a person decides on a waiting release."""
    running = [job for job in world.jobs.values() if job.status == "Running"]
    if running:
        world.finish_job(running[0])
        return True
    waiting = [r for r in world.releases if r.status == "awaiting approval"]
    if waiting:
        world.decide(waiting[0])
        return True
    return False


def _as(clock: SimClock) -> Clock:
    return clock
