"""The azd postdeploy hook subscribes only once the deployed functions are listed, and gives up in bounded time.

``az`` and ``azd`` are stand-ins on PATH that answer as the real CLIs do for these calls: ``az functionapp function
list --query "[].name" -o tsv`` prints one ARM resource name per line, ``<app>/<function>`` (functions are child
resources ``Microsoft.Web/sites/functions``), and lists nothing until the host has indexed the deployed package.
The PowerShell variant (scripts/subscribe-events.ps1) is not run here: no PowerShell on these machines.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.infra.test_bicep import subscriptions

HOOK = ROOT / "scripts" / "subscribe-events.sh"
APP = "func-mlreactor-abc123"


def fake_clis(bin_dir: Path, calls: Path, listings: list[list[str]]) -> None:
    """``az`` answers the i-th listing on its i-th call (the last one from then on); ``azd`` records its calls."""
    bin_dir.mkdir()
    for i, names in enumerate(listings):
        (bin_dir / f"listing-{i}").write_text("".join(f"{APP}/{n}\n" for n in names))
    (bin_dir / "az").write_text(f"""#!/bin/sh
echo "az $*" >> {calls}
n=$(grep -c '^az ' {calls})
i=$((n - 1)); [ "$i" -lt {len(listings)} ] || i={len(listings) - 1}
cat {bin_dir}/listing-$i
""")
    (bin_dir / "azd").write_text(f"""#!/bin/sh
echo "azd $*" >> {calls}
[ "$1 $2" = "env get-value" ] && exit 1
exit 0
""")
    for tool in ("az", "azd"):
        (bin_dir / tool).chmod(0o755)


def run_hook(
    tmp_path: Path, listings: list[list[str]], **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = tmp_path / "calls.log"
    calls.touch()
    fake_clis(tmp_path / "bin", calls, listings)
    environ = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "AZURE_FUNCTION_NAME": APP, "AZURE_RESOURCE_GROUP": "rg-mlreactor",
        "MLREACTOR_FUNCTIONS_POLL_SECONDS": "1", **env,
    }
    done = subprocess.run(["sh", str(HOOK)], capture_output=True, text=True, env=environ, timeout=60, check=False)
    return done, calls.read_text().splitlines()


ALL = [s["function"] for s in subscriptions()]


def test_it_waits_until_every_subscribed_function_is_listed_then_provisions_with_the_subscriptions(
    tmp_path: Path,
) -> None:
    done, calls = run_hook(tmp_path, [[], ["health", *ALL[:2]], ["health", "audit", *ALL]])
    assert done.returncode == 0, done.stderr
    listings = [c for c in calls if c.startswith("az functionapp function list")]
    assert len(listings) == 3
    assert "--resource-group rg-mlreactor --name " + APP in listings[0]
    assert calls[-2:] == ["azd env set DEPLOY_EVENT_SUBSCRIPTIONS true", "azd provision --no-prompt"]
    assert "missing: " + " ".join(sorted(ALL[2:])) in done.stdout


def test_it_gives_up_after_the_wait_naming_the_missing_functions_and_subscribes_nothing(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, [ALL[:-1]], MLREACTOR_FUNCTIONS_WAIT_SECONDS="2")
    assert done.returncode == 1
    assert f"after 2s, {APP} still does not list: {ALL[-1]}" in done.stderr
    assert not [c for c in calls if c.startswith("azd provision") or c.startswith("azd env set")]


def test_once_subscribed_later_runs_do_nothing(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, [[]], DEPLOY_EVENT_SUBSCRIPTIONS="true")
    assert done.returncode == 0
    assert calls == []


@pytest.mark.parametrize("platform, script", [("posix", "subscribe-events.sh"), ("windows", "subscribe-events.ps1")])
def test_azd_runs_the_hook_on_linux_macos_and_windows(platform: str, script: str) -> None:
    hook = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]["postdeploy"][platform]
    assert hook["run"] == f"./scripts/{script}"
    assert hook["continueOnError"] is False
    assert (ROOT / "scripts" / script).is_file()
    # both read the function names from the subscription table, not from a copy of it
    assert "infra/app/workspace-events.bicep" in (ROOT / "scripts" / script).read_text()
