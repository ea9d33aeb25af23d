#!/bin/sh
# Run azure-functions-doctor (Microsoft-ecosystem checks of a Python v2 Functions project) for a Flex Consumption
# deployment, and fail on any failed check or any warning not listed below with its reason.
#
#   scripts/doctor.sh [BIN]      # BIN: the venv bin folder with azure-functions-doctor (default: .venv-py313/bin)
#
# The `deploy` profile leaves out the checks of a developer's machine (Core Tools, an activated venv,
# local.settings.json), which cannot hold on CI.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/.venv-py313/bin}"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT

"$BIN/azure-functions-doctor" doctor --path "$ROOT" --profile deploy --hosting-plan flex-consumption \
  --format json >"$report" || true
"$BIN/python" - "$report" <<'PYEOF'
import json
import sys

# Warnings that are right for this project, each with why.
EXPECTED = {
    # The doctor reads the connection string from the environment or local.settings.json only; in Azure the
    # Bicep sets it (infra/main.bicep → APPLICATIONINSIGHTS_CONNECTION_STRING), and locally telemetry is off.
    "check_app_insights": "set by infra/main.bicep in Azure",
    # cryptography signs the GitHub App's RS256 JWT (and azure-identity's msal needs it anyway). It ships manylinux
    # wheels for CPython 3.13 on x86_64, and azd deploys a Python app to Flex Consumption with a remote build on
    # the Linux runtime, which is what the doctor asks for.
    "check_native_dependency_risk": "cryptography: manylinux wheels, remote build on Flex Consumption",
}
report = json.load(open(sys.argv[1]))
items = [item for section in report["results"] for item in section["items"]]
bad = [i for i in items if i["status"] in {"fail", "error"}]
warned = [i for i in items if i["status"] == "warn" and i["rule_id"] not in EXPECTED]
for item in items:
    mark = {"pass": "ok", "skip": "--"}.get(item["status"], item["status"].upper())
    note = f"  (expected: {EXPECTED[item['rule_id']]})" if item["rule_id"] in EXPECTED and mark != "ok" else ""
    print(f"[{mark}] {item['label']}: {item['value']}{note}")
if bad or warned:
    print(f"azure-functions-doctor: {len(bad)} failed, {len(warned)} unexpected warning(s)", file=sys.stderr)
    sys.exit(1)
print(f"azure-functions-doctor: {len(items)} checks, no failures, no unexpected warnings")
PYEOF
