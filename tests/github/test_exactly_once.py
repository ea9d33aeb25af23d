"""Exactly one workflow run per (rule, model version): redeliveries, a lost answer after the dispatch, a run that
GitHub lists only a moment later."""

from __future__ import annotations

from collections.abc import Callable

from shared.outcomes import Outcome
from tests.fakes.github import FakeGitHub
from tests.github.conftest import DISPATCHES, RUNS, GitHubRelease


def test_a_redelivered_event_is_a_duplicate_and_dispatches_nothing(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    release = make_github_release()
    release.deliver()

    assert release.deliver().outcome is Outcome.DUPLICATE
    assert release.deliver(id="other-event-same-version").actions[0].detail.startswith("already queued")
    assert len(fake_github.runs) == 1


def test_given_the_answer_to_the_dispatch_is_lost_then_the_run_is_found_before_dispatching_again(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.reset_next("POST", DISPATCHES, after_processing=True)
    release = make_github_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    [run] = fake_github.runs.values()
    assert len(fake_github.calls("POST", DISPATCHES)) == 1
    assert outcome.actions[0].external_id == str(run["id"])
    assert fake_github.calls("GET", RUNS)


def test_given_a_lost_answer_and_a_run_listed_late_then_the_lookup_waits_for_it_and_there_is_still_one_run(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.reset_next("POST", DISPATCHES, after_processing=True)
    fake_github.runs_listed_after = 2
    release = make_github_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    assert len(fake_github.runs) == 1
    assert len(fake_github.calls("POST", DISPATCHES)) == 1
    assert len(fake_github.calls("GET", RUNS)) == 3
    assert release.sleeps.count(1.0) >= 2


def test_given_a_reset_before_the_dispatch_was_processed_then_it_is_dispatched_again_after_looking(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.reset_next("POST", DISPATCHES)
    release = make_github_release(github_run_settle_seconds=0)

    outcome = release.deliver()

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    assert len(fake_github.runs) == 1
    assert len(fake_github.calls("POST", DISPATCHES)) == 2


def test_a_crash_after_the_dispatch_leaves_a_resumed_lock_and_the_redelivery_finds_the_run(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    """The engine's lease ran out with the lock claimed (the instance died after the POST): a resumed attempt."""
    release = make_github_release()
    release.deliver()
    key = next(iter(fake_github.runs.values()))["inputs"]["release_key"]
    lock = f"release|{key}"
    assert release.ledger.reopen_event(lock, lock, release.clock.now())

    outcome = release.deliver(id="redelivered-after-crash")

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    assert len(fake_github.runs) == 1
