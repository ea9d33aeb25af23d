"""Cold start: the app and a live GitHub release adapter load no PyJWT/cryptography; a fine-grained token never does,
the App loads them for its first installation token only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.github.conftest import AppKey

SCRIPT = r"""
import json, sys
from pathlib import Path
import function_app
from shared.settings import Settings
from shared.adapters import build_adapters
from shared.ledger.sqlite import SqliteLedger
from tests.conftest import rules_from, event
from tests.fakes.github import FakeGitHub
from tests.github.conftest import GITHUB_RULES
app = sys.argv[2] == "app"
pem = Path(sys.argv[3]).read_text() if app else None
public = Path(sys.argv[4]).read_text() if app else None
fake = FakeGitHub(public_key=public, fine_grained=("github_pat_cold",)).start()
fake.add_environment("production")
settings = Settings(github_api_url=fake.base, state_dir=Path(sys.argv[1]),
                    **({"github_app_id": fake.app_id, "github_app_private_key": pem,
                        "github_app_installation_id": fake.installation_id} if app else
                       {"github_token": "github_pat_cold"}))
rules = rules_from(GITHUB_RULES)
ledger = SqliteLedger(Path(sys.argv[1]) / "ledger.sqlite3")
from shared.engine import Engine
engine = Engine(rules, ledger, build_adapters(settings, rules, ledger))
before = "jwt" in sys.modules or "cryptography" in sys.modules
[outcome] = engine.handle_delivery([event("model_registered")])
print(json.dumps({"before": before, "after": "jwt" in sys.modules, "outcome": outcome.outcome.value,
                  "reason": outcome.reason, "requests": len(fake.requests)}))
fake.stop()
"""


@pytest.mark.parametrize("auth", ["token", "app"])
def test_pyjwt_is_imported_only_when_the_app_needs_a_token(tmp_path: Path, auth: str, app_key: AppKey) -> None:
    private, public = tmp_path / "key.pem", tmp_path / "key.pub"
    private.write_text(app_key.private_pem)
    public.write_text(app_key.public_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLREACTOR_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), auth, str(private), str(public)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["outcome"] == "acted", result["reason"]
    assert result["before"] is False
    assert result["after"] is (auth == "app")
