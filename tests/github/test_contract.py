"""Contract: what the GitHub release adapter sends — the App's JWT and installation token, the dispatch with string
inputs and ``return_run_details`` — and what it records, against a fake that answers as GitHub does."""

from __future__ import annotations

from collections.abc import Callable

import jwt

from tests.conftest import FakeClock
from tests.fakes.github import FakeGitHub
from tests.github.conftest import DISPATCHES, FINE_GRAINED, RUNS, TOKENS, AppKey, GitHubRelease


def test_given_a_gated_environment_then_one_dispatch_with_string_inputs_asks_for_the_run_details(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    release = make_github_release()

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    [post] = fake_github.calls("POST", DISPATCHES)
    assert post.headers["x-github-api-version"] == "2022-11-28"
    assert post.headers["accept"] == "application/vnd.github+json"
    assert post.body["ref"] == "main"
    assert post.body["return_run_details"] is True
    inputs = post.body["inputs"]
    assert set(inputs) == {"model", "version", "correlation_id", "release_key"}
    assert all(isinstance(v, str) for v in inputs.values())
    assert (inputs["model"], inputs["version"]) == ("sklearn_regression_model", "20")
    assert inputs["correlation_id"] == "831e1650-001e-001b-66ab-eeb76e069631"
    assert len(inputs["release_key"]) == 64
    [run] = fake_github.runs.values()
    assert inputs["release_key"] in run["display_title"]  # the run name carries the key
    [action] = outcome.actions
    assert action.external_id == str(run["id"])
    assert action.url == run["html_url"]
    assert "awaiting approval in environment production" in action.detail
    assert not fake_github.calls("GET", RUNS), "the run id came with the answer: no lookup"


def test_what_the_release_records_names_the_target_for_the_release_signals_that_follow(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    release = make_github_release()

    release.deliver()

    [run] = fake_github.runs.values()
    key = run["inputs"]["release_key"]
    record = release.ledger.get_action(key, f"release|{key}")
    assert record is not None
    assert record.data["target"] == "github-actions"
    assert record.data["repository"] == "contoso/ml-release"
    assert record.data["id"] == run["id"]
    assert record.data["release_key"] == key
    assert record.data["auth"] == "github-app"
    assert "prevent" not in record.data["gate"] and "may not approve its own run" in record.data["gate"]


def test_the_app_signs_a_jwt_the_service_verifies_and_its_installation_token_is_kept_until_shortly_before_expiry(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub, clock: FakeClock, app_key: AppKey
) -> None:
    release = make_github_release()

    release.deliver()
    clock.advance(minutes=30)
    release.deliver(id="second", data={"ModelName": "m2", "ModelVersion": 1})
    clock.advance(minutes=26)  # 56 min: inside the 5 min margin of the one-hour token
    release.deliver(id="third", data={"ModelName": "m3", "ModelVersion": 1})

    posts = fake_github.calls("POST", TOKENS)
    assert len(posts) == 2
    claims = jwt.decode(posts[0].headers["authorization"].removeprefix("Bearer "), app_key.public_pem,
                        algorithms=["RS256"], options={"verify_exp": False})
    assert claims["iss"] == fake_github.app_id
    assert claims["exp"] - claims["iat"] <= 600
    tokens = {r.headers["authorization"] for r in fake_github.calls("POST", DISPATCHES)}
    assert len(tokens) == 2 and all(t.startswith("Bearer ghs_") for t in tokens)


def test_without_an_installation_id_the_installation_is_looked_up_once_per_repository(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    release = make_github_release(github_app_installation_id=None)

    release.deliver()
    release.deliver(id="second", data={"ModelName": "m2", "ModelVersion": 1})

    assert len(fake_github.calls("GET", "/installation")) == 1
    assert len(fake_github.calls("POST", DISPATCHES)) == 2


def test_without_an_app_the_fine_grained_token_is_used(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    release = make_github_release(github_app_id=None, github_app_private_key=None, github_token=FINE_GRAINED)

    assert release.deliver().outcome.value == "acted"
    assert not fake_github.calls("POST", TOKENS)
    assert {r.headers["authorization"] for r in fake_github.requests} == {f"Bearer {FINE_GRAINED}"}


def test_an_app_the_service_refuses_falls_back_to_the_fine_grained_token(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.public_key = None  # the App's key was rotated: GitHub no longer accepts its JWTs
    release = make_github_release(github_token=FINE_GRAINED)

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    assert len(fake_github.calls("POST", DISPATCHES)) == 1
    assert "fine-grained token" in outcome.actions[0].detail


def test_an_older_server_that_refuses_run_details_gets_a_plain_dispatch_and_the_run_is_found_by_its_key(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    fake_github.old_server = True
    release = make_github_release()

    first = release.deliver()
    second = release.deliver(id="second", data={"ModelName": "m2", "ModelVersion": 1})

    assert first.outcome.value == "acted", first.reason
    posts = fake_github.calls("POST", DISPATCHES)
    assert ["return_run_details" in p.body for p in posts] == [True, False, False]  # remembered after the first
    runs = sorted(fake_github.runs.values(), key=lambda r: r["id"])
    assert len(runs) == 2
    assert [first.actions[0].external_id, second.actions[0].external_id] == [str(r["id"]) for r in runs]
