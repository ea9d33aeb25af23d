"""The retrain → test → release chain through the real adapters, against local fakes that speak the wire protocols.

``LiveChain`` starts a fake Azure ML (HTTPS), a fake Azure DevOps, Teams and Slack webhook receivers and a fake Event
Grid topic, builds the adapters exactly as the Function App does (``build_adapters`` with live settings pointing at
the fakes) on a Tables ledger in Azurite, and drives the chain: every follow-up event is derived from what the fakes
recorded — the job the fake Azure ML received a PUT for completes, the retraining job registers a model version with
the correlation id it was given as an input, the offline test finishes with metric tags added to that job, the
pipeline run the fake Azure DevOps received is approved and the model deployed.

With ``Chaos`` every fake — and a ``FaultyProxy`` in front of Azurite's Tables endpoint, which all ledger traffic
passes — answers a share of requests with a fault chosen by a seeded generator: half refused before any effect (503),
half lost after the effect (the connection is reset, or an error is returned, after the request was applied).
Deliveries that fail are redelivered, as Event Grid does, until they are acted on or recognised as duplicates.

How the release's end is told (``signals``): ``model_deployed`` — Azure ML's ModelDeployed event, as before;
``hooks`` — the fake Azure DevOps' service-hook notifications (the documented payloads, tests/events/hooks/)
POSTed to the hook endpoint's logic with the shared secret; ``reconciler`` — no hook at all: the reconciler reads the
run from the fake Azure DevOps through the SDK and closes the chain.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from shared.adapters import build_adapters
from shared.engine import Engine
from shared.ledger.tables import TablesLedger
from shared.outcomes import EventOutcome, Outcome
from shared.reactions import Rules
from shared.releases import hooks, reconciler
from shared.settings import Settings
from tests.conftest import EVENTS
from tests.fakes import azure_devops, azureml, eventgrid_topic, faulty_proxy
from tests.fakes.azure_devops import FakeAzureDevOps
from tests.fakes.azureml import FakeAzureML, FakeCredential
from tests.fakes.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from tests.fakes.eventgrid_topic import FakeEventGridTopic, RecordedPost
from tests.fakes.faulty_proxy import FaultyProxy
from tests.fakes.webhook_receiver import Recorded, Reply, WebhookReceiver

EVENT_TYPE = "Microsoft.MachineLearningServices."
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-prod"
)
MODEL = "credit-fraud"
MONITOR = "credit_card_fraud_monitor"
CHAMPION_TAGS = {"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.88", "mlreactor.metric.latency_ms": "30"}
#: What the offline test writes on its run (the shipped gate: auc ≥ 0.80 and no worse, latency ≤ 50 ms, +5 at most).
TEST_METRICS = {"mlreactor.metric.auc": "0.91", "mlreactor.metric.latency_ms": "32"}
PAT = "e2e-pat-never-logged"
HOOK_SECRET = "e2e-hook-secret"
TOPIC_KEY = "e2e-topic-key-0123456789abcdef"


class Chaos:
    """Seeded faults at ``rate`` of remote calls: half before the effect, half after it (the answer is lost)."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self._rng = random.Random(seed)  # test faults, not security
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.faults: list[tuple[str, str, str]] = []  # (service, before|after, "METHOD path")
        self.calls = 0

    def draw(self, service: str, call: str) -> str | None:
        """``"before"``, ``"after"`` or None for the next call (``"METHOD path"``) to ``service``."""
        with self._lock:
            self.calls += 1
            x = self._rng.random()
            when = "before" if x < self.rate / 2 else "after" if x < self.rate else None
            if when:
                self.injected[f"{service} {when}"] += 1
                self.faults.append((service, when, call))
            return when


class LoseFirstAnswers(Chaos):
    """The first answer to every call that changes something (PUT / POST / PATCH) is lost after its effect."""

    def __init__(self) -> None:
        super().__init__(0.0, 0)
        self._seen: set[tuple[str, str]] = set()

    def draw(self, service: str, call: str) -> str | None:
        with self._lock:
            self.calls += 1
            if not call.startswith(("PUT ", "POST ", "PATCH ")) or (service, call) in self._seen:
                return None
            self._seen.add((service, call))
            self.injected[f"{service} after"] += 1
            self.faults.append((service, "after", call))
            return "after"


@dataclass
class Receiver:
    """A webhook receiver; ``delivered`` are the messages that reached the channel (refused ones did not)."""

    server: WebhookReceiver
    delivered: list[Recorded] = field(default_factory=list)


@dataclass
class LiveChain:
    folder: Path
    azurite: Azurite
    rules: Rules
    devops_cache_dir: Path
    chaos: Chaos | None = None
    max_deliveries: int = 400
    duplicates: bool = False
    shuffle: bool = False
    seed: int = 0
    #: Settings to change, e.g. no in-process retries so that every fault reaches the engine.
    overrides: dict[str, Any] = field(default_factory=dict)
    signals: Literal["model_deployed", "hooks", "reconciler"] = "model_deployed"
    hook_bodies: list[dict[str, Any]] = field(default_factory=list)
    reconcile_due: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[tuple[str, EventOutcome]] = field(default_factory=list)
    correlation_id: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    # lifecycle -----------------------------------------------------------------------------------------------
    @contextmanager
    def running(self) -> Iterator[LiveChain]:
        self.aml = FakeAzureML(self.folder / "tls").start()
        self.devops = FakeAzureDevOps(accepted_auth=("Basic " + base64.b64encode(f":{PAT}".encode()).decode(),))
        self.devops.start()
        self.devops.add_environment("production")  # the release environment, set up with its Approval check
        self.topic = FakeEventGridTopic(self.aml.cert, key=TOPIC_KEY).start()  # one certificate for both HTTPS fakes
        self.tables = FaultyProxy(self.azurite.table_endpoint).start()  # the ledger's table traffic passes here
        self.teams = self._receiver()
        self.slack = self._receiver()
        self.published: list[RecordedPost] = []
        if self.chaos is not None:
            self._inject(self.chaos)
        try:
            with pytest.MonkeyPatch.context() as env:
                self._environment(env)
                settings = self._settings()
                # Short SDK back-off only (the production retry count is kept): faults should not cost seconds.
                self.ledger = TablesLedger.from_settings(settings, retry_backoff_factor=0.01, retry_backoff_max=0.05)
                try:
                    self.adapters = build_adapters(settings, self.rules, self.ledger)
                    self.engine = Engine(self.rules, self.ledger, self.adapters)
                    self.settings = settings
                    yield self
                finally:
                    self.ledger.close()
        finally:
            for server in (self.aml, self.devops, self.topic, self.tables, self.teams.server, self.slack.server):
                server.stop()

    def _receiver(self) -> Receiver:
        receiver = Receiver(WebhookReceiver())

        def respond(request: Recorded) -> Reply:
            when = self.chaos.draw("webhook", f"POST {request.path}") if self.chaos else None
            if when != "before":
                receiver.delivered.append(request)
            # after: the channel posted the message, a gateway timed out on the way back
            return Reply(503, b"busy") if when == "before" else Reply(504, b"gateway") if when else Reply()

        receiver.server.responder = respond
        receiver.server.start()
        return receiver

    def _environment(self, env: pytest.MonkeyPatch) -> None:
        """What the Function App's environment would hold, pointed at the fakes (loopback only)."""
        env.setenv("AZUREML_DEV_URL_MFE", self.aml.base_url)  # the SDK's own switch for its ARM host
        env.setenv("REQUESTS_CA_BUNDLE", str(self.aml.cert.cert_path))  # trust the fakes' self-signed certificate
        env.setattr("azure.identity.DefaultAzureCredential", lambda **_: FakeCredential())  # no Entra ID here
        env.setenv("MLREACTOR_TEAMS_OPS_URL", self.teams.server.url("/workflows/ops/triggers/manual?sig=SIG"))
        env.setenv("MLREACTOR_SLACK_OPS_URL", self.slack.server.url("/services/T000/B000/TOKEN"))

    def _settings(self) -> Settings:
        name = uuid.uuid4().hex[:12]
        return Settings.model_validate({
            "dry_run": False, "state_dir": self.folder,
            "ledger": "tables", "storage_connection_string": (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"TableEndpoint={self.tables.url('/' + ACCOUNT)};BlobEndpoint={self.azurite.blob_endpoint};"),
            "table_prefix": f"t{name}", "quarantine_container": f"q-{name}",
            "azureml_retry_total": 1, "azureml_timeout_seconds": 2.0, "azureml_action_budget_seconds": 6.0,
            "azureml_tag_settle_seconds": 0.05,
            "devops_organization_url": self.devops.organization_url, "devops_pat": PAT, "devops_auth": "pat",
            "devops_cache_dir": self.devops_cache_dir, "devops_timeout_seconds": 3.0, "devops_retry_attempts": 1,
            "allow_http_webhooks": True, "notify_retries": 1, "notify_timeout_seconds": 2.0,
            "eventgrid_topic_endpoint": self.topic.endpoint, "eventgrid_topic_key": TOPIC_KEY,
            "release_hook_secret": HOOK_SECRET,
            **self.overrides,
        })

    def _inject(self, chaos: Chaos) -> None:
        def aml(request: azureml.Request) -> azureml.Fault | None:
            when = chaos.draw("azureml", f"{request.method} {request.path}")
            if when is None:
                return None
            return azureml.Fault(request.method, re.escape(request.path), status=503, lost=when == "after")

        def devops(method: str, path: str) -> azure_devops.Fault | None:
            when = chaos.draw("devops", f"{method} {path}")
            if when is None:
                return None
            return azure_devops.Fault(method, path, 503, reset=when == "after", after_processing=when == "after")

        def topic(post: RecordedPost) -> eventgrid_topic.Fault | None:
            when = chaos.draw("eventgrid", f"POST {post.path}")
            if when != "before":
                self.published.append(post)
            if when is None:
                return None
            return eventgrid_topic.Fault(503, code="ServiceUnavailable", message=f"injected ({when} the effect)")

        def tables(method: str, path: str) -> faulty_proxy.Fault | None:
            when = chaos.draw("tables", f"{method} {path}")
            return None if when is None else faulty_proxy.Fault("status" if when == "before" else "lost")

        self.aml.injector = aml
        self.devops.injector = devops
        self.topic.injector = topic
        self.tables.injector = tables

    # the world -----------------------------------------------------------------------------------------------
    def seed_workspace(self) -> None:
        """Version 1 is the champion; the retraining pipeline's ``training-data@latest`` exists."""
        self.aml.add_model(MODEL, "1", tags=dict(CHAMPION_TAGS))
        self.aml.add_data("training-data", "1")

    def emit(self, kind: str, subject: str, data: dict[str, Any]) -> None:
        self.pending.append({
            "id": f"e2e-{next(self._ids):04d}", "topic": WORKSPACE, "subject": subject,
            "eventType": EVENT_TYPE + kind, "eventTime": datetime.now(UTC).isoformat(), "data": data,
            "dataVersion": "", "metadataVersion": "1",
        })

    def drift(self) -> None:
        """The model monitor's signal breached its threshold: the run that starts the chain."""
        self.emit("RunStatusChanged", f"experiments/monitor/runs/{MONITOR}_signal_1", {
            "experimentId": "monitor", "experimentName": MONITOR, "runId": f"{MONITOR}_signal_1",
            "runType": "azureml.PipelineRun", "runStatus": "Completed", "runProperties": {},
            "runTags": {"azureml_modelmonitor_threshold_breached": f"The signal '{MONITOR}_data_drift' has failed"
                        " due to one or more features violating metric thresholds."},
        })
        self.correlation_id = self.pending[-1]["id"]

    def finish_job(self, name: str) -> None:
        """A job the fake received completes; a retraining job registers the model it trained."""
        props = self.aml.job(name)["properties"]  # type: ignore[index]
        purpose = props["tags"]["mlreactor.purpose"]
        finished = self.aml.finish_job(name, tags=TEST_METRICS if purpose == "offline-test" else {})["properties"]
        self.emit("RunCompleted", f"experiments/{props['experimentName']}/runs/{name}", {
            "experimentId": "exp-" + purpose, "experimentName": props["experimentName"], "runId": name,
            "runType": "azureml.PipelineRun", "runTags": finished["tags"], "runProperties": {},
        })
        if purpose == "retrain":  # its register step tags the version with the correlation id it got as an input
            version = str(1 + max(int(v) for v in self.aml.model_versions(MODEL)))
            correlation = props["inputs"]["correlation_id"]["value"]
            self.aml.add_model(MODEL, version, tags={"mlreactor.correlation": correlation, "source_job": name})
            self.emit("ModelRegistered", f"models/{MODEL}:{version}", {
                "modelName": MODEL, "modelVersion": version, "modelTags": self.aml.model_tags(MODEL, version),
                "modelProperties": {},
            })

    def approve(self, run: dict[str, Any]) -> None:
        """A person approves the production stage of the run the fake DevOps received; the model is deployed."""
        run["state"], run["result"] = "completed", "succeeded"
        params = run["templateParameters"]
        if self.signals == "hooks":
            approval = _documented("approval_completed")
            approval["resource"]["run"] = {"id": run["id"], "_links": run["_links"]}
            approval["resource"]["approval"]["steps"][0]["actualApprover"] = {"displayName": "Dana Reviewer"}
            completed = _documented("run_state_changed")
            completed["resource"]["run"].update(id=run["id"], name=run["name"], _links=run["_links"])
            self.hook_bodies += [approval, completed]
            return
        if self.signals == "reconciler":
            self.reconcile_due = True
            return
        self.emit("ModelDeployed", "endpoints/credit-fraud-online", {
            "serviceName": "credit-fraud-online", "serviceComputeType": "Managed",
            "modelIds": f"{params['modelName']}:{params['modelVersion']}",
            "serviceTags": {"mlreactor.correlation": params["correlationId"]}, "serviceProperties": {},
        })

    def advance(self) -> bool:
        """Time passes: a job still running finishes, else a release waiting for approval is approved."""
        for name in self.aml.jobs():
            if self.aml.job(name)["properties"]["status"] in ("NotStarted", "Running"):  # type: ignore[index]
                self.finish_job(name)
                return True
        for _, run in sorted(self.devops.runs.items()):
            if run["state"] == "inProgress":
                self.approve(run)
                return True
        return False

    def run(self) -> None:
        """From the drift signal until nothing is pending and nothing is left to happen."""
        self.seed_workspace()
        self.drift()
        rng = random.Random(self.seed)  # delivery order, not security
        deliveries = 0
        while deliveries < self.max_deliveries:
            if not self.pending and (self.hook_bodies or self.reconcile_due):
                deliveries += 1
                self.release_signals()
                continue
            if not self.pending:
                if not self.advance():
                    return
                continue
            batch, self.pending = self.pending, []
            if self.duplicates:
                batch = batch + [copy.deepcopy(e) for e in batch]
            if self.shuffle:
                rng.shuffle(batch)
            for raw in batch:
                deliveries += 1
                (outcome,) = self.engine.handle_delivery(json.dumps([raw]))
                self.outcomes.append((raw["eventType"].removeprefix(EVENT_TYPE), outcome))
                if outcome.outcome is Outcome.FAILED:  # Event Grid redelivers later
                    self.pending.append(raw)
        raise AssertionError(f"the chain did not settle within {self.max_deliveries} deliveries")

    def release_signals(self) -> None:
        """The service hooks Azure DevOps POSTs (a 5xx answer: it sends again), or one reconciler pass."""
        now = datetime.now(UTC)
        if self.reconcile_due:
            self.reconcile_due = False
            report = reconciler.reconcile(self.engine, reconciler.readers(self.settings, self.ledger), self.settings,
                                          now)
            self.outcomes += [("reconciler", o) for o in report.outcomes]
            return
        batch, self.hook_bodies = self.hook_bodies, []
        for body in batch:
            answer = hooks.azure_devops(self.engine, self.settings, {"X-Mlreactor-Hook-Secret": HOOK_SECRET},
                                        json.dumps(body).encode(), self.devops.org, now)
            if answer.status >= 500:
                self.hook_bodies.append(body)
            self.outcomes.append(("hook " + body["eventType"], EventOutcome(
                answer.body.get("event_id"), answer.body.get("event_type"), answer.body.get("subject"), None,
                answer.body.get("correlation_id"), Outcome(answer.body["outcome"]), answer.body.get("reason", ""))))

    # what came of it -----------------------------------------------------------------------------------------
    def end_state(self) -> dict[str, Any]:
        jobs = [self.aml.job(n)["properties"] for n in self.aml.jobs()]  # type: ignore[index]
        return {
            "jobs": sorted((j["tags"]["mlreactor.purpose"], j["status"], j["tags"]["mlreactor.correlation"])
                           for j in jobs),
            "models": {v: self.aml.model_tags(MODEL, v) for v in self.aml.model_versions(MODEL)},
            "releases": [(r["templateParameters"]["modelName"], r["templateParameters"]["modelVersion"],
                          r["templateParameters"]["correlationId"], r["state"])
                         for _, r in sorted(self.devops.runs.items())],
            "notifications": self.notifications(),
            # a republished event keeps its id (the action's key): subscribers can drop the copy
            "published": sorted({(e["id"], e["type"], json.dumps(e["data"], sort_keys=True))
                                 for post in self.published_posts() for e in post.json()}),
            "timeline": self.timeline(),
        }

    def published_posts(self) -> list[RecordedPost]:
        return self.published if self.chaos is not None else list(self.topic.requests)

    def notifications(self) -> dict[str, list[str]]:
        """What Ops read, per channel: each distinct message's whole text (ports of the fakes masked)."""
        return {name: sorted({_masked(_text(r.json())) for r in receiver.delivered})
                for name, receiver in (("teams", self.teams), ("slack", self.slack))}

    def teams_titles(self) -> list[str]:
        """The headline of each Teams card, in the order they arrived."""
        return [r.json()["attachments"][0]["content"]["body"][0]["text"] for r in self.teams.delivered]

    def timeline(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """The acted steps of the chain in order: event type, event id and the rules that fired."""
        entries = reversed(self.ledger.audit(correlation_id=self.correlation_id))
        return [(e.event_type.removeprefix(EVENT_TYPE), e.event_id or "", tuple(e.reactions))
                for e in entries if e.outcome == Outcome.ACTED]


def _documented(name: str) -> dict[str, Any]:
    """A documented service-hooks payload (Microsoft's "Service hooks events" page), to be pointed at a real run."""
    return copy.deepcopy(json.loads((EVENTS / "hooks" / "azure_devops" / f"{name}.json").read_text()))


def _text(payload: Any) -> str:
    """Every string in a Teams / Slack payload, in order (the card's shape is the renderer's business)."""
    if isinstance(payload, dict):
        return " | ".join(_text(v) for k, v in payload.items() if k not in ("type", "version", "$schema"))
    if isinstance(payload, list):
        return " | ".join(_text(v) for v in payload)
    return str(payload) if payload is not None else ""


def _masked(text: str) -> str:
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
