"""Requests per release, and what the release clients cost at cold start — each figure beside its same-run baseline.

Every release runs the real adapter (azure-devops SDK / the urllib GitHub client) against the local fakes, which
count what reaches them:

* **gate verification** (issue 11): the first release of a process reads the environment and its checks; the next
  ones, within ``release_gate_cache_seconds``, add nothing — baseline: the same releases with the cache off
  (``release_gate_cache_seconds=0``: every release verifies);
* **dedup of a resumed release** (an earlier attempt died after its POST) with N earlier runs in the lookup window:
  one runs-list call when the pipeline names its runs with the key, beside the per-run reading (list + one GET per
  run) that a pipeline without that ``name:`` still gets — the way every lookup worked before;
* **GitHub**: first dispatch (App token + environment + dispatch), steady state, and an older GHES without run
  details (the 422, the plain dispatch, the runs list);
* **cold start**: import time of each candidate HTTP client in a fresh interpreter (median of ``--runs``).

    python benchmarks/release_requests.py [--runs 5] [--earlier-runs 40]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.actions import ActionKind  # noqa: E402
from shared.adapters.devops import DevOpsReleaseAdapter  # noqa: E402
from shared.adapters.github import GitHubReleaseAdapter  # noqa: E402
from shared.engine import Engine  # noqa: E402
from shared.ledger.sqlite import SqliteLedger  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.conftest import FakeClock, ScriptedAdapter, event, rules_from  # noqa: E402
from tests.fakes.azure_devops import FakeAzureDevOps  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402

PAT = "benchmark-pat"
DEVOPS_RULES = """
rules:
  - name: release
    on: ModelRegistered
    do:
      - queue_release: {project: mlops, pipeline_id: 42, environment: production}
"""
GITHUB_RULES = """
rules:
  - name: release
    on: ModelRegistered
    do:
      - queue_release: {flavour: github, repository: contoso/ml-release, workflow: release-model.yml, branch: main,
                        environment: production}
"""
CLIENTS = {
    "urllib.request (chosen)": "import urllib.request",
    "requests": "import requests",
    "azure.core pipeline": "import azure.core.pipeline, azure.core.pipeline.transport",
    "PyJWT + cryptography (App JWT, lazy)": "import jwt, cryptography.hazmat.primitives.asymmetric.rsa",
}


def _engine(adapter: Any, rules: str, ledger: SqliteLedger, clock: FakeClock) -> Engine:
    adapters: dict[ActionKind, Any] = {kind: ScriptedAdapter(kind) for kind in ActionKind}
    adapters[ActionKind.QUEUE_RELEASE] = adapter
    return Engine(rules_from(rules), ledger, adapters, clock=clock)


def _deliver(engine: Engine, n: int) -> None:
    [outcome] = engine.handle_delivery([event("model_registered", id=f"ev-{n}",
                                              data={"ModelName": f"model-{n}", "ModelVersion": 1})])
    assert outcome.outcome.value == "acted", outcome.reason


def devops_per_release(scratch: Path, releases: int, cache_seconds: float) -> list[int]:
    clock = FakeClock()
    fake = FakeAzureDevOps(accepted_auth=("Basic OmJlbmNobWFyay1wYXQ=",), clock=clock.now).start()
    fake.add_environment("production")
    ledger = SqliteLedger(scratch / f"devops-{cache_seconds}.sqlite3")
    settings = Settings(devops_organization_url=fake.organization_url, devops_pat=PAT, devops_auth="pat",
                        devops_cache_dir=scratch / "cache", state_dir=scratch, release_gate_cache_seconds=cache_seconds)
    engine = _engine(DevOpsReleaseAdapter(settings, ledger, clock=clock, sleep=lambda s: None), DEVOPS_RULES,
                     ledger, clock)
    counts = []
    for n in range(releases):
        before = len(fake.requests)
        _deliver(engine, n)
        counts.append(len(fake.requests) - before)
        clock.advance(seconds=30)
    ledger.close()
    fake.stop()
    return counts


def devops_resumed_lookup(scratch: Path, earlier: int, *, named: bool) -> int:
    """Lookup requests of a release whose POST's connection dropped (it may have worked: look before posting again)
    with ``earlier`` runs of other model versions in the window — the lookup must conclude "none of these"."""
    clock = FakeClock()
    fake = FakeAzureDevOps(accepted_auth=("Basic OmJlbmNobWFyay1wYXQ=",), clock=clock.now,
                           run_names_carry_key=named).start()
    fake.add_environment("production")
    ledger = SqliteLedger(scratch / f"resumed-{named}.sqlite3")
    settings = Settings(devops_organization_url=fake.organization_url, devops_pat=PAT, devops_auth="pat",
                        devops_cache_dir=scratch / "cache", state_dir=scratch, devops_retry_attempts=1)
    engine = _engine(DevOpsReleaseAdapter(settings, ledger, clock=clock, sleep=lambda s: None,
                                          rng=random.Random(1)), DEVOPS_RULES, ledger, clock)
    for n in range(earlier):
        _deliver(engine, n)
    fake.reset_next("POST", "/_apis/pipelines/42/runs")
    before = len(fake.calls("GET", "/_apis/pipelines/42/runs"))
    _deliver(engine, earlier)
    lookups = len(fake.calls("GET", "/_apis/pipelines/42/runs")) - before
    ledger.close()
    fake.stop()
    return lookups


def github_per_release(scratch: Path, releases: int, *, old_server: bool) -> list[int]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    clock = FakeClock()
    fake = FakeGitHub(public_key=public, old_server=old_server, clock=clock.now).start()
    fake.add_environment("production")
    ledger = SqliteLedger(scratch / f"github-{old_server}.sqlite3")
    settings = Settings(github_api_url=fake.base, github_app_id=fake.app_id, github_app_private_key=private,
                        github_app_installation_id=fake.installation_id, state_dir=scratch)
    engine = _engine(GitHubReleaseAdapter(settings, ledger, clock=clock, sleep=lambda s: None), GITHUB_RULES,
                     ledger, clock)
    counts = []
    for n in range(releases):
        before = len(fake.requests)
        _deliver(engine, n)
        counts.append(len(fake.requests) - before)
        clock.advance(seconds=30)
    ledger.close()
    fake.stop()
    return counts


def import_seconds(statement: str, runs: int) -> float:
    probe = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    samples = [float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                    cwd=ROOT).stdout) for _ in range(runs)]
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--earlier-runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlreactor-bench-") as folder:
        scratch = Path(folder)
        cached = devops_per_release(scratch, 5, 600)
        uncached = devops_per_release(scratch, 5, 0)
        named = devops_resumed_lookup(scratch, args.earlier_runs, named=True)
        legacy = devops_resumed_lookup(scratch, args.earlier_runs, named=False)
        github = github_per_release(scratch, 3, old_server=False)
        ghes = github_per_release(scratch, 3, old_server=True)
    report = {
        "azure_devops_requests_per_release": {"gate cache 10 min (default)": cached, "gate cache off": uncached},
        f"azure_devops_lookup_requests_after_a_dropped_post_with_{args.earlier_runs}_earlier_runs": {
            "run name carries the key (one list call)": named, "names without the key (list + GET per run)": legacy,
            "ratio": round(legacy / named, 1)},
        "github_requests_per_release": {"github.com (run details)": github, "older GHES (422, plain, list)": ghes},
        "client_import_seconds_median": {name: round(import_seconds(stmt, args.runs), 4)
                                         for name, stmt in CLIENTS.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
