"""No credential ever appears in a log line, an exception message, stdout/stderr or the ledger: every failure path is
run with a recognisable PAT and Entra token — and, for GitHub, the App's private key, the JWTs it signed, the
installation tokens it got and a fine-grained token — and everything captured is grepped for them."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from tests.devops.conftest import BASIC, BEARER, PAT, TOKEN, FakeCredential, Release
from tests.fakes.azure_devops import FakeAzureDevOps, wrapped_exception
from tests.fakes.github import FakeGitHub
from tests.github.conftest import DISPATCHES, FINE_GRAINED, AppKey, GitHubRelease

RUNS = "/_apis/pipelines/42/runs"
SECRETS = (PAT, base64.b64encode(f":{PAT}".encode()).decode(), TOKEN)


def _faults(fake: FakeAzureDevOps, scenario: str) -> None:
    if scenario == "throttled":
        fake.fail_next("POST", RUNS, 429, times=5, headers={"Retry-After": "1"})
    elif scenario == "server-errors":
        fake.fail_next("POST", RUNS, 500, times=2)
        fake.fail_next("POST", RUNS, 503, times=5)
    elif scenario == "reset":
        fake.reset_next("POST", RUNS)
        fake.reset_next("POST", RUNS, after_processing=True)
    elif scenario == "unauthorized":
        fake.accepted_auth = {"Basic bm90LXRoaXMtb25l"}
    elif scenario == "not-found":
        fake.fail_next("POST", RUNS, 404, body=wrapped_exception("Pipeline with id 42 not found.", "X"))
    elif scenario == "lookup-fails":
        fake.reset_next("POST", RUNS, after_processing=True)
        fake.fail_next("GET", RUNS, 500, times=10)


def _everything_seen(
    release: Release | GitHubRelease, clock: FakeClock, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str], tmp_path: Path,
) -> str:
    """Deliver twice, then another event about the same version; return every log line, outcome, stream and ledger
    byte that resulted."""
    outcomes = [release.deliver(), release.deliver()]
    clock.advance(minutes=5)
    outcomes.append(release.deliver(id="another-event-same-version"))
    captured = capfd.readouterr()
    release.ledger.close()
    return "\n".join([
        caplog.text,
        *(r.getMessage() for r in caplog.records),
        *(json.dumps(o.as_dict()) for o in outcomes),
        captured.out,
        captured.err,
        *(f.read_bytes().decode("utf-8", errors="replace") for f in tmp_path.glob("ledger.sqlite3*")),
    ])


class BrokenIdentity:
    def get_token(self, *scopes: str) -> object:
        from azure.core.exceptions import ClientAuthenticationError

        raise ClientAuthenticationError(f"token endpoint said no (debug dump: {TOKEN})")


@pytest.mark.parametrize(
    "scenario", ["throttled", "server-errors", "reset", "unauthorized", "not-found", "lookup-fails", "no-identity"]
)
@pytest.mark.parametrize("auth", ["pat", "entra"])
def test_no_failure_path_leaks_the_pat_or_the_token(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps, clock: FakeClock, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], scenario: str, auth: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    _faults(fake_devops, scenario)
    credential = BrokenIdentity() if scenario == "no-identity" else FakeCredential(clock)
    release = make_release(
        credential=credential, devops_auth="auto" if auth == "entra" else "pat",
        **({"devops_pat": None} if scenario == "no-identity" and auth == "entra" else {}),
    )

    seen = _everything_seen(release, clock, caplog, capfd, tmp_path)
    assert caplog.records, "nothing was captured: the test would prove nothing"
    if fake_devops.requests:  # the credential was in play: it went on the wire, and only there
        assert {r.headers["authorization"] for r in fake_devops.requests} & {BASIC, BEARER}
    for secret in SECRETS:
        assert secret not in seen


def _github_faults(fake: FakeGitHub, scenario: str) -> None:
    if scenario == "throttled":
        fake.fail_next("POST", DISPATCHES, 429, times=5, headers={"retry-after": "1"}, body={"message": "slow"})
    elif scenario == "server-errors":
        fake.fail_next("POST", DISPATCHES, 502, times=5, body={"message": "Server Error"})
    elif scenario == "reset":
        fake.reset_next("POST", DISPATCHES, after_processing=True)
    elif scenario == "unauthorized":
        fake.public_key = None
        fake.fine_grained = set()
    elif scenario == "forbidden":
        fake.fail_next("POST", DISPATCHES, 403, body={"message": "Resource not accessible by integration"})
    elif scenario == "ungated":
        fake.environments.clear()


@pytest.mark.parametrize("scenario", ["throttled", "server-errors", "reset", "unauthorized", "forbidden", "ungated"])
@pytest.mark.parametrize("auth", ["app", "token"])
def test_no_failure_path_leaks_the_app_key_its_jwt_the_installation_token_or_the_fine_grained_token(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub, clock: FakeClock, app_key: AppKey,
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], scenario: str, auth: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    _github_faults(fake_github, scenario)
    release = make_github_release(
        github_token=FINE_GRAINED,
        **({"github_app_id": None, "github_app_private_key": None} if auth == "token" else {}),
    )

    seen = _everything_seen(release, clock, caplog, capfd, tmp_path) + repr(release.adapter._auth)
    wire = {r.headers.get("authorization", "").removeprefix("Bearer ") for r in fake_github.requests}
    secrets = {FINE_GRAINED, *fake_github.issued, *wire, *app_key.private_pem.splitlines()[1:-1]} - {""}
    assert caplog.records, "nothing was captured: the test would prove nothing"
    assert wire, "the credentials went on the wire, and only there"
    for secret in secrets:
        assert secret not in seen
