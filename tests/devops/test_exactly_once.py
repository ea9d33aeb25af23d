"""Exactly once per (rule, model version): redeliveries, duplicate events about the same version, crashes between
the POST and the record, and a second instance arriving while the first is still queueing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import pytest

from shared.ledger.port import ActionRecord, ActionStatus, AuditEntry, EventRecord, QuarantineRecord
from shared.ledger.sqlite import SqliteLedger
from tests.conftest import ProcessDied
from tests.devops.conftest import CLASSIC_RULES, PIPELINE_RULES, Release
from tests.fakes.azure_devops import FakeAzureDevOps


class CrashAfterPost(SqliteLedger):
    """The real ledger, except that the process dies when the release result is about to be recorded."""

    def settle_event(
        self,
        claim: EventRecord,
        outcome: str | None,
        now: datetime,
        *,
        actions: Sequence[ActionRecord] = (),
        audit: AuditEntry | None = None,
        quarantine: QuarantineRecord | None = None,
    ) -> bool:
        if any(a.status is ActionStatus.DONE and a.external_id for a in actions):
            raise ProcessDied
        return super().settle_event(claim, outcome, now, actions=actions, audit=audit, quarantine=quarantine)


def test_a_redelivered_event_is_a_duplicate_and_queues_nothing(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()
    release.deliver()

    again = release.deliver()

    assert again.outcome.value == "duplicate"
    assert len(fake_devops.calls("POST")) == 1


def test_a_second_event_about_the_same_model_version_reuses_the_queued_release(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    """Two ModelRegistered events (different ids) for sklearn_regression_model:20 are one release."""
    release = make_release()
    first = release.deliver()

    second = release.deliver(id="a-duplicate-model-registered")

    assert second.outcome.value == "acted", second.reason
    assert len(fake_devops.calls("POST")) == 1
    assert second.actions[0].url == first.actions[0].url
    assert second.actions[0].external_id == first.actions[0].external_id
    assert second.actions[0].detail.startswith("already queued for sklearn_regression_model:20")


def test_another_model_version_gets_its_own_release(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()
    release.deliver()

    release.deliver(id="version-21", data={"ModelName": "sklearn_regression_model", "ModelVersion": 21})

    assert len(fake_devops.runs) == 2


@pytest.mark.parametrize("rules", [PIPELINE_RULES, CLASSIC_RULES], ids=["pipeline", "classic"])
def test_given_a_crash_after_the_post_before_the_record_then_the_redelivery_queues_nothing_new(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps, tmp_path: Path, rules: str
) -> None:
    crashing = make_release(rules, ledger=CrashAfterPost(tmp_path / "ledger.sqlite3"))
    with pytest.raises(ProcessDied):
        crashing.deliver()
    created = {**fake_devops.runs, **fake_devops.releases}
    assert len(created) == 1

    # A new instance, after the dead one's lease ran out, gets the redelivery.
    restarted = make_release(rules, ledger=SqliteLedger(tmp_path / "ledger.sqlite3"))
    restarted.clock.advance(minutes=3)
    outcome = restarted.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    assert len(fake_devops.calls("POST")) == 1
    [(created_id, _)] = created.items()
    assert outcome.actions[0].external_id == str(created_id)
    assert outcome.actions[0].detail.endswith("awaiting approval in environment " + (
        "production" if rules is PIPELINE_RULES else "Production"))


def test_given_another_instance_is_queueing_the_same_version_then_this_one_backs_off_until_it_can_check(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps, tmp_path: Path
) -> None:
    """Instance A died mid-release (lease still live); B gets another event about the same model version."""
    with pytest.raises(ProcessDied):
        make_release(ledger=CrashAfterPost(tmp_path / "ledger.sqlite3")).deliver()
    b = make_release(ledger=SqliteLedger(tmp_path / "ledger.sqlite3"))

    busy = b.deliver(id="same-version-other-event")

    assert busy.outcome.value == "failed"
    assert "being queued by another delivery" in busy.reason
    assert len(fake_devops.calls("POST")) == 1

    b.clock.advance(minutes=3)
    later = b.deliver(id="same-version-other-event")

    assert later.outcome.value == "acted", later.reason
    assert len(fake_devops.calls("POST")) == 1
