"""A live holder cannot be outlived: at the default lease, a slow receiver and a slow Azure DevOps lookup give one
effect across two instances, on both real ledgers (SQLite, and Tables on Azurite).

Instance A works; Event Grid's redelivery reaches instance B 130 s later (the clock both share is moved in steps, as
time would pass, while A's heartbeat beats in real time — every 0.2 s here instead of every 40 s). Effects are
counted by the receivers, never by the ledger under test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind
from shared.adapters.devops import DevOpsReleaseAdapter, release_key
from shared.adapters.dryrun import DryRunAdapter
from shared.adapters.notify import NotifyAdapter
from shared.engine import Engine
from shared.events import AzureMLEvent, parse_delivery
from shared.ledger.port import Ledger
from shared.outcomes import Outcome
from shared.reactions import Rules, parse_rules
from shared.settings import Settings
from tests.conftest import WORKSPACE, event, rules_from
from tests.devops.conftest import BASIC, PAT, PIPELINE_RULES
from tests.fakes.azure_devops import FakeAzureDevOps
from tests.fakes.webhook_receiver import Recorded, Reply, WebhookReceiver
from tests.notify.conftest import raw_event

HEARTBEAT = timedelta(seconds=0.2)


class SharedClock:
    """Real time plus an offset every instance shares; ``pass_time`` moves it in steps of 20 s (well inside a third
    of the lease), pausing for the holder's heartbeat between steps."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def pass_time(self, total: timedelta, step: timedelta = timedelta(seconds=20)) -> None:
        moved = timedelta(0)
        while moved < total:
            self.offset += step
            moved += step
            time.sleep(HEARTBEAT.total_seconds() * 1.5)


def dry_adapters() -> dict[ActionKind, Any]:
    return {kind: DryRunAdapter(kind) for kind in ActionKind}


def wait_for(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# the slow receiver ------------------------------------------------------------------------------------------------
@pytest.fixture
def dripping_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """Takes the first request in full, then drips its 200 answer a byte a second for 130 s; later ones are quick."""
    answers = iter([Reply(200, b"x" * 130, drip_seconds=130.0)])

    def respond(_: Recorded) -> Reply:
        return next(answers, Reply())

    receiver = WebhookReceiver(responder=respond).start()
    monkeypatch.setenv("MLREACTOR_TEST_HOOK_URL", receiver.url("/hook"))
    monkeypatch.setenv("MLREACTOR_TEST_HOOK_SECRET", "whsec-lease-test-0123456789")
    yield receiver
    receiver.stop()


def hook_rules() -> Rules:
    return parse_rules({
        "version": 1, "allowed_workspaces": [WORKSPACE],
        "channels": {"ops-hook": {"type": "webhook", "url_setting": "MLREACTOR_TEST_HOOK_URL",
                                  "secret_setting": "MLREACTOR_TEST_HOOK_SECRET"}},
        "rules": [{"name": "page-ops", "on": "RunStatusChanged", "when": {"run_status": ["Failed"]},
                   "do": [{"notify": {"channels": ["ops-hook"], "message": "run_failed"}}]}],
    }, "test")


def test_given_a_receiver_dripping_its_answer_for_130s_at_the_default_lease_then_one_notification_across_two_instances(
    ledger: Ledger, second_ledger: Ledger, dripping_receiver: WebhookReceiver
) -> None:
    settings = Settings(allow_http_webhooks=True)  # the default lease, deadline and notify timeout
    rules, clock = hook_rules(), SharedClock()

    def instance(on: Ledger, **kwargs: Any) -> Engine:
        adapters = {**dry_adapters(), ActionKind.NOTIFY: NotifyAdapter(settings, rules, on, clock=clock, backoff=0)}
        return Engine(rules, on, adapters, clock=clock, lease=timedelta(seconds=settings.lease_seconds), **kwargs)

    a, b = instance(ledger, renew_every=HEARTBEAT), instance(second_ledger)
    payload = [raw_event("run_status_changed_failed")]
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        working = pool.submit(a.handle_delivery, payload)
        wait_for(lambda: len(dripping_receiver.requests) == 1)
        clock.pass_time(timedelta(seconds=130))
        (meanwhile,) = b.handle_delivery(payload)  # Event Grid's redelivery, on another instance, 130 s later
        sent_meanwhile = len(dripping_receiver.requests)
        (first,) = working.result(timeout=60)
        took = time.monotonic() - started
    (redelivered,) = b.handle_delivery(payload)

    assert meanwhile.outcome is Outcome.FAILED and "another instance holds this event's lease" in meanwhile.reason
    assert sent_meanwhile == 1, "the second instance did not send while the first one held the event"
    assert first.outcome is Outcome.ACTED, first.reason
    assert took < 15, f"the dripping answer was cut at the notify timeout (5 s), not after 130 s (took {took:.1f} s)"
    assert redelivered.outcome is Outcome.DUPLICATE
    ids = {r.header("X-Mlreactor-Delivery-Id") for r in dripping_receiver.requests}
    assert len(dripping_receiver.requests) == 2 and len(ids) == 1, \
        "the cut send was repeated once, by the holder itself, under the same delivery id (receivers drop repeats)"


# the slow Azure DevOps lookup -------------------------------------------------------------------------------------
@pytest.fixture
def slow_devops() -> Iterator[FakeAzureDevOps]:
    # Run names that do not carry the release key (runs queued before names did, or renamed): the lookup reads
    # each recent run, one GET each.
    fake = FakeAzureDevOps(accepted_auth=(BASIC,), run_names_carry_key=False).start()
    yield fake
    fake.stop()


def queue_run(fake: FakeAzureDevOps, key: str) -> None:
    """A run as the pipeline has it after an earlier attempt queued it (through the fake's own service logic)."""
    body = {"templateParameters": {"releaseKey": key}}
    status, _ = fake.answer("POST", f"/{fake.org}/mlops/_apis/pipelines/42/runs", {}, body)
    assert status == 200


def test_given_a_resumed_release_whose_lookup_reads_50_runs_slowly_then_one_release_across_two_instances(
    ledger: Ledger, second_ledger: Ledger, slow_devops: FakeAzureDevOps, tmp_path: Path
) -> None:
    settings = Settings(
        devops_organization_url=slow_devops.organization_url, devops_pat=PAT, devops_auth="pat",
        devops_cache_dir=tmp_path / "devops-cache", state_dir=tmp_path,
    )
    rules, clock = rules_from(PIPELINE_RULES), SharedClock()
    lease = timedelta(seconds=settings.lease_seconds)

    def instance(on: Ledger, **kwargs: Any) -> Engine:
        adapters = {**dry_adapters(), ActionKind.QUEUE_RELEASE: DevOpsReleaseAdapter(settings, on, clock=clock)}
        return Engine(rules, on, adapters, clock=clock, lease=lease, **kwargs)

    a, b = instance(ledger, renew_every=HEARTBEAT), instance(second_ledger)
    payload = [event("model_registered")]
    (parsed,) = parse_delivery(payload)
    assert isinstance(parsed, AzureMLEvent)
    (action,) = a.plan(parsed).actions
    key = release_key(action, action.params)  # type: ignore[arg-type]
    # An earlier attempt queued the run, then died before recording it: its claims are open, their leases long gone.
    past = clock.now() - timedelta(minutes=10)
    ledger.claim_event(parsed.key, parsed.id, past, lease)
    ledger.claim_event(f"release|{key}", f"release|{key}", past, lease)
    queue_run(slow_devops, key)
    for n in range(49):  # newer runs of other versions: the lookup reads them first, 0.5 s each
        queue_run(slow_devops, f"other-{n}")
    slow_devops.latency = lambda method, path: 0.5 if method == "GET" and "/runs/" in path else 0.0

    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        working = pool.submit(a.handle_delivery, payload)
        wait_for(lambda: len(slow_devops.calls("GET", "/runs/")) >= 1, seconds=30)
        clock.pass_time(timedelta(seconds=130))
        (meanwhile,) = b.handle_delivery(payload)
        (first,) = working.result(timeout=60)
        took = time.monotonic() - started
    slow_devops.latency = None
    (redelivered,) = b.handle_delivery(payload)

    assert meanwhile.outcome is Outcome.FAILED and "another instance holds this event's lease" in meanwhile.reason
    assert first.outcome is Outcome.FAILED and "out of time for this release" in first.reason
    assert took < 20, f"the lookup stopped at its budget (took {took:.1f} s)"
    assert redelivered.outcome is Outcome.ACTED, redelivered.reason
    assert "queued" in redelivered.actions[0].detail
    assert slow_devops.calls("POST", "/runs") == [], "nothing was queued again"
    mine = [r for r in slow_devops.runs.values() if r["templateParameters"].get("releaseKey") == key]
    assert len(mine) == 1, "one release for the model version"
