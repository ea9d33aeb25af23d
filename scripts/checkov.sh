#!/usr/bin/env bash
# Scan infra/ (Bicep) with checkov, offline. checkov pins many dependencies that clash with the app's runtime venv,
# so it lives in its own venv, created here on first use. Skips are written in the Bicep, each with its reason
# (`// checkov:skip=CKV_...: reason` inside the resource); anything else that fails, fails this script.
#
#   scripts/checkov.sh                      # venv at $CHECKOV_VENV (default: <repo>/.venv-checkov)
#   CHECKOV_VENV=/work/main/.venv-checkov scripts/checkov.sh
set -euo pipefail

CHECKOV_VERSION=3.3.30
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"

if ! "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

# --skip-download: no call to the Prisma Cloud API (there is no network but the package registries).
# checkov exits 1 on a failed check, but 0 when it cannot parse a file (that file is then not scanned at all):
# a parsing error fails this script too. checkov parses Bicep with pycep, which predates some Bicep syntax:
# keep infra/ to multi-line arrays/objects and no lambdas (see infra/README.md).
cd "$ROOT"
status=0
output="$("$VENV/bin/checkov" --directory infra --framework bicep --skip-download --compact --quiet "$@")" || status=$?
printf '%s\n' "$output"
if grep -q "Parsing errors:" <<<"$output"; then
  echo "checkov could not parse a file under infra/: it was not scanned" >&2
  exit 1
fi
exit "$status"
