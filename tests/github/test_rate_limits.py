"""GitHub's rate limits: 429 and secondary limits (403 with retry-after or x-ratelimit-reset) are waited out within
the Event Grid window and repeated without a lookup (they were refused before processing); anything longer is left
to Event Grid's redelivery; a 403 that is not a rate limit is permanent."""

from __future__ import annotations

from collections.abc import Callable

from shared.outcomes import Outcome
from tests.conftest import FakeClock
from tests.fakes.github import FakeGitHub
from tests.github.conftest import DISPATCHES, RUNS, GitHubRelease

LIMITED = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
           "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}


def test_given_429_with_retry_after_then_the_dispatch_is_repeated_after_that_wait_without_a_lookup(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.fail_next("POST", DISPATCHES, 429, headers={"retry-after": "3"}, body={"message": "slow down"})
    release = make_github_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    assert 3.0 in release.sleeps
    assert len(fake_github.calls("POST", DISPATCHES)) == 2
    assert not fake_github.calls("GET", RUNS)
    assert len(fake_github.runs) == 1


def test_given_a_secondary_rate_limit_with_a_reset_time_then_it_waits_until_then(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub, clock: FakeClock
) -> None:
    reset = int(clock.now().timestamp()) + 5
    fake_github.fail_next("POST", DISPATCHES, 403, body=LIMITED,
                          headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    release = make_github_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.ACTED, outcome.reason
    assert max(release.sleeps) >= 5.0
    assert len(fake_github.runs) == 1


def test_given_a_secondary_rate_limit_longer_than_the_budget_then_event_grid_redelivers_and_nothing_is_lost(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.fail_next("POST", DISPATCHES, 403, body=LIMITED)  # no headers: wait at least a minute
    release = make_github_release()

    first = release.deliver()
    second = release.deliver()

    assert first.outcome is Outcome.FAILED and "Event Grid will redeliver" in first.reason
    assert release.sleeps == [] or max(release.sleeps) < 60
    assert second.outcome is Outcome.ACTED, second.reason
    assert len(fake_github.runs) == 1


def test_given_a_403_that_is_not_a_rate_limit_then_the_event_is_quarantined(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.fail_next("POST", DISPATCHES, 403, body={"message": "Resource not accessible by integration"})
    release = make_github_release()

    outcome = release.deliver()

    assert outcome.outcome is Outcome.QUARANTINED
    assert "HTTP 403: Resource not accessible by integration" in outcome.reason
    assert release.sleeps == []
