"""Cold start: importing the app and building the live release adapter loads no azure.devops; the first release
imports it, after AZURE_DEVOPS_CACHE_DIR was pointed at the configured temp dir (the SDK creates it at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, WORKSPACE

SCRIPT = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import function_app
from shared.adapters import build_adapters
from shared.settings import Settings
from shared.reactions import load_rules
from tests.fakes.azure_devops import FakeAzureDevOps
fake = FakeAzureDevOps(accepted_auth=("Basic OmNvbGQtc3RhcnQtcGF0",)).start()
fake.add_environment("production")
cache = Path(sys.argv[1]) / "devops-cache"
settings = Settings(devops_organization_url=fake.organization_url, devops_pat="cold-start-pat", devops_auth="pat",
                    devops_cache_dir=cache, state_dir=Path(sys.argv[1]))
from shared.runtime import build_engine
engine = build_engine(settings.model_copy(update={"rules_path": Path(sys.argv[2])}))
ready = time.perf_counter()
before = "azure.devops" in sys.modules or "jwt" in sys.modules
cache_before = cache.exists()
from tests.conftest import event
t1 = time.perf_counter()
[outcome] = engine.handle_delivery([event("model_registered")])
first = time.perf_counter() - t1
t2 = time.perf_counter()
[again] = engine.handle_delivery([event("model_registered", id="second", data={"ModelName": "m2", "ModelVersion": 1})])
warm = time.perf_counter() - t2
print(json.dumps({
    "devops_loaded_before_first_release": before, "cache_dir_before": cache_before,
    "devops_loaded_after": "azure.devops" in sys.modules, "cache_files": sorted(p.name for p in cache.iterdir()),
    "outcome": outcome.outcome.value, "reason": outcome.reason, "ready_s": ready - t0, "first_release_s": first,
    "warm_release_s": warm, "posts": len(fake.calls("POST")),
}))
fake.stop()
"""

RULES = f"""
allowed_workspaces: [{WORKSPACE}]
rules:
  - name: release
    on: ModelRegistered
    do:
      - queue_release: {{project: mlops, pipeline_id: 42, environment: production}}
"""


def test_azure_devops_is_imported_on_the_first_release_with_its_cache_in_the_configured_temp_dir(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLREACTOR_", "AZURE_DEVOPS"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(rules)], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["devops_loaded_before_first_release"] is False
    assert result["cache_dir_before"] is False
    assert result["outcome"] == "acted", result["reason"]
    assert result["devops_loaded_after"] is True
    assert "options.json" in result["cache_files"]
    assert result["posts"] == 2
    print(json.dumps({k: result[k] for k in ("ready_s", "first_release_s", "warm_release_s")}))
