"""ARM's write budget: the adapter reads remaining-writes and 429 Retry-After, waits when the wait is short, fails the
event fast (naming the Retry-After, sending nothing) when it is not, and caps its writes in flight per instance."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from shared.adapters.azureml import AzureMLAdapter, WorkspaceClients
from shared.adapters.azureml.throttle import ThrottledError, WriteBudget
from shared.adapters.azureml.timing import Timing
from shared.errors import TransientError
from shared.settings import Settings
from tests.azureml.conftest import OFFLINE_TEST_RULES, ROOT, planned
from tests.conftest import event
from tests.fakes.azureml import FakeAzureML, TokenBucket

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

SUB = "00000000-0000-0000-0000-000000000000"


@dataclass
class ManualTime:
    """A clock that moves only when someone sleeps: waits are recorded, not spent."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    @property
    def timing(self) -> Timing:
        return Timing(clock=self.clock, sleep=self.sleep)


def budget(time: ManualTime, **settings: object) -> WriteBudget:
    values: dict[str, object] = {"azureml_max_concurrent_submissions": 2, "azureml_fleet_instances": 10,
                                 "azureml_throttle_wait_seconds": 8.0, **settings}
    return WriteBudget(Settings(**values), time.timing)  # type: ignore[arg-type]


def test_a_full_bucket_costs_no_wait() -> None:
    time = ManualTime()
    writes = budget(time)
    writes.observe(SUB, remaining=150, retry_after=None)
    for _ in range(5):
        with writes.write(SUB, "PUT job"):
            pass
    assert time.slept == []


def test_a_low_bucket_spaces_this_instances_writes_by_its_share_of_the_refill() -> None:
    """GIVEN 10 instances and a bucket with no more tokens than the fleet can have in flight (10 x 2)
    WHEN this instance writes three times THEN each write waits one share (10 instances / 10 per s = 1 s) after the
    previous one: the fleet together sends what ARM refills."""
    time = ManualTime()
    writes = budget(time)
    writes.observe(SUB, remaining=12, retry_after=None)
    turns = []
    for _ in range(3):
        started = time.now
        with writes.write(SUB, "PUT job"):
            turns.append(time.now - started)
    assert turns == [0.0, 1.0, 1.0]  # each write waits one share after the previous one


def test_after_a_429_nothing_is_sent_until_its_retry_after_and_a_long_one_fails_at_once() -> None:
    time = ManualTime()
    writes = budget(time)
    writes.observe(SUB, remaining=0, retry_after=3.0)
    with writes.write(SUB, "PUT job"):
        assert time.now == 3.0  # waited out the Retry-After (short: inside the delivery)
    writes.observe(SUB, remaining=0, retry_after=60.0)
    sent = []
    with pytest.raises(ThrottledError, match=r"PUT job: .*Retry-After 60\.0 s, more than the 8\.0 s") as caught, \
            writes.write(SUB, "PUT job"):
        sent.append("PUT")
    assert sent == []  # nothing may be sent
    assert caught.value.retry_after == pytest.approx(60.0)
    assert isinstance(caught.value, TransientError)  # Event Grid redelivers


def test_the_wait_never_runs_past_the_actions_deadline() -> None:
    time = ManualTime()
    writes = budget(time)
    writes.observe(SUB, remaining=0, retry_after=5.0)
    with time.timing.action_deadline(2.0), pytest.raises(ThrottledError, match=r"more than the 2\.0 s"), \
            writes.write(SUB, "PUT job"):
        pass


def test_one_more_write_than_the_cap_fails_fast_while_the_others_wait_or_fly() -> None:
    time = ManualTime()
    writes = budget(time)
    entered, release = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with writes.write(SUB, "PUT job"):
            entered.wait(5)
            release.wait(5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for thread in holders:
        thread.start()
    entered.wait(5)
    with pytest.raises(ThrottledError, match="2 Azure ML writes already wait or run on this instance"), \
            writes.write(SUB, "PUT job"):
        pass
    release.set()
    for thread in holders:
        thread.join(5)
    with writes.write(SUB, "PUT job"):  # a slot is free again
        pass


def test_the_fakes_arm_bucket_throttles_the_real_sdk_and_the_adapter_waits_out_a_short_retry_after(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    """GIVEN ARM's write bucket (here 2 tokens, 1/s, on a manual clock) WHEN three launches go at once
    THEN the second answer's remaining-writes header (0) makes the third wait its share of the refill (0.1 s), its
    PUT still gets 429 with Retry-After 1, and the retry policy waits that out on the injected clock and sends it
    again: three jobs, four PUTs."""
    time = ManualTime()
    fake.writes = TokenBucket(2, 1.0, time.clock)
    adapter = AzureMLAdapter(make_clients(timing=time.timing, azureml_throttle_wait_seconds=5.0), ROOT)

    for n in range(3):
        adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered", id=f"e{n}")))

    puts = fake.calls("PUT", "/jobs/")
    assert len(puts) == 4 and len(fake.jobs()) == 3
    assert time.slept == [pytest.approx(0.1), 1.0]  # the share, then the 429's Retry-After, on the injected clock


def test_a_long_retry_after_fails_the_event_fast_and_the_next_event_sends_nothing(
    fake: FakeAzureML, make_clients: Callable[..., WorkspaceClients]
):
    time = ManualTime()
    fake.writes = TokenBucket(1, 0.01, time.clock)  # one token, then one per 100 s
    adapter = AzureMLAdapter(make_clients(timing=time.timing), ROOT)
    adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered", id="e0")))

    with pytest.raises(TransientError, match=r"HTTP 429 TooManyRequests.*\(Retry-After 100 s\)"):
        adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered", id="e1")))
    puts = len(fake.calls("PUT", "/jobs/"))
    with pytest.raises(ThrottledError, match=r"Retry-After 100\.0 s"):
        adapter.execute(planned(OFFLINE_TEST_RULES, event("model_registered", id="e2")))
    assert len(fake.calls("PUT", "/jobs/")) == puts  # the instance remembered the Retry-After: nothing sent
    assert time.slept == []
