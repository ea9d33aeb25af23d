"""A warm ModelRegistered through the shipped rules (tag the version, launch its offline test) with the live Azure ML
adapter against the local HTTPS fake, beside the same HTTP requests sent bare through the MLClient's own pipeline in
the same run — the difference is our own time (engine, ledger, SDK job building), the goal is <= 0.3 s.

    python benchmarks/model_registered_latency.py [--events 25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from shared.actions import ActionKind  # noqa: E402
from shared.adapters.azureml import KINDS, AzureMLAdapter, WorkspaceClients  # noqa: E402
from shared.adapters.dryrun import DryRunAdapter  # noqa: E402
from shared.engine import Engine  # noqa: E402
from shared.events import parse_event  # noqa: E402
from shared.ledger.sqlite import SqliteLedger  # noqa: E402
from shared.reactions import load_rules  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.conftest import event  # noqa: E402
from tests.fakes.azureml import FakeAzureML, FakeCredential  # noqa: E402

MODEL = "sklearn_regression_model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=25)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mlreactor-bench-"))
    fake = FakeAzureML(folder / "tls").start()
    os.environ["AZUREML_DEV_URL_MFE"] = fake.base_url
    for version in range(1, args.events + 3):
        fake.add_model(MODEL, str(version))
    settings = Settings(dry_run=False, azureml_live=True)  # production defaults: settle 0.5 s, 3 retries
    clients = WorkspaceClients(settings, credential=FakeCredential(), connection_verify=str(fake.cert.cert_path))
    azureml = AzureMLAdapter(clients, ROOT)
    adapters: dict[ActionKind, Any] = {kind: DryRunAdapter(kind) for kind in ActionKind}
    adapters.update(dict.fromkeys(KINDS, azureml))
    ledger = SqliteLedger(folder / "ledger.sqlite3")
    engine = Engine(load_rules(ROOT / "reactions.yaml"), ledger, adapters)

    def registered(version: int) -> Any:
        raw = event("model_registered", id=f"bench-{version}", subject=f"models/{MODEL}:{version}")
        raw["data"] = {**raw["data"], "ModelVersion": version}
        return parse_event(raw)

    engine.handle(registered(1))  # cold: imports, clients, tokens, the tracking URI
    timings, requests = [], []
    for version in range(2, args.events + 2):
        fake.clear()
        started = time.perf_counter()
        outcome = engine.handle(registered(version))
        timings.append(time.perf_counter() - started)
        assert outcome.outcome.value == "acted", outcome.reason
        requests.append(list(fake.requests))
    # The floor: exactly those requests (same bodies), sent bare through the workspace client's pipeline.
    from azure.core.rest import HttpRequest

    ml = clients.get(registered(2).workspace)  # type: ignore[arg-type]
    pipeline = ml.models._model_versions_operation._client
    bare = []
    for sent in requests:
        started = time.perf_counter()
        for r in sent:
            query = f"?api-version={r.api_version}" if r.api_version else ""
            pipeline.send_request(HttpRequest(r.method, f"{fake.base_url}{r.path}{query}",
                                              json=r.body if r.method != "GET" else None))
        bare.append(time.perf_counter() - started)
    fake.stop()
    ledger.close()

    ours = [t - b for t, b in zip(timings, bare, strict=True)]
    print(f"warm ModelRegistered (tag_model + offline-test launch), {args.events} events, shipped reactions.yaml")
    print(f"{'path':<44}{'median ms':>10}{'p90 ms':>9}{'requests':>10}")
    p90 = int(len(timings) * 0.9) - 1
    print(f"{'engine + live adapter (fake Azure ML)':<44}{statistics.median(timings) * 1000:>10.1f}"
          f"{sorted(timings)[p90] * 1000:>9.1f}{statistics.median(len(r) for r in requests):>10.0f}")
    print(f"{'floor: the same requests, bare':<44}{statistics.median(bare) * 1000:>10.1f}"
          f"{sorted(bare)[p90] * 1000:>9.1f}{statistics.median(len(r) for r in requests):>10.0f}")
    median = statistics.median(ours)
    names = ", ".join(f"{r.method} {r.path.rsplit('/', 1)[-1]}" for r in requests[-1])
    print(f"our own time (difference): median {median * 1000:.1f} ms; requests: {names}")
    verdict = "meets the goal" if median <= 0.3 else "misses the goal"
    print(f"goal: our own time <= 300 ms -> {verdict}")


if __name__ == "__main__":
    main()
