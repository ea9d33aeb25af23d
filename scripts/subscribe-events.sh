#!/bin/sh
# azd postdeploy hook: once the deployed functions are listed, provision again with the Event Grid subscriptions.
#
# Event Grid checks an AzureFunction destination when the subscription is created, and on Flex Consumption the
# functions exist only after azd has deployed the code and the host has indexed it — which can take a minute after
# `azd deploy` returns. So the first provision runs with deployEventSubscriptions=false; this hook waits (bounded)
# until every function the subscription table names (infra/app/workspace-events.bicep) is listed, then sets
# DEPLOY_EVENT_SUBSCRIPTIONS=true and provisions again. Later `azd up` runs keep it true (stored in the azd
# environment), so this hook then does nothing. Windows: scripts/subscribe-events.ps1 does the same.
#
#   MLREACTOR_FUNCTIONS_WAIT_SECONDS   how long to wait for the functions (default 600)
#   MLREACTOR_FUNCTIONS_POLL_SECONDS   between two listings (default 15)
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WAIT="${MLREACTOR_FUNCTIONS_WAIT_SECONDS:-600}"
POLL="${MLREACTOR_FUNCTIONS_POLL_SECONDS:-15}"

env_value() { # azd exports the environment's values to hooks; outside a hook, ask azd
  eval "value=\${$1:-}"
  [ -n "$value" ] || value="$(azd env get-value "$1" 2>/dev/null || true)"
  printf '%s' "$value"
}

if [ "$(env_value DEPLOY_EVENT_SUBSCRIPTIONS)" = "true" ]; then
  echo "Event Grid subscriptions are part of the deployment already."
  exit 0
fi

app="$(env_value AZURE_FUNCTION_NAME)"
group="$(env_value AZURE_RESOURCE_GROUP)"
if [ -z "$app" ] || [ -z "$group" ]; then
  echo "subscribe-events: AZURE_FUNCTION_NAME or AZURE_RESOURCE_GROUP is not in the azd environment" >&2
  exit 1
fi
# The functions Event Grid will deliver to: the `function:` entries of the subscription table.
expected="$(sed -n "s/^ *function: '\([A-Za-z0-9_]*\)'$/\1/p" "$ROOT/infra/app/workspace-events.bicep" | sort -u)"

waited=0
while :; do
  # ARM lists a function as "<app>/<function>"; keep the function's name.
  listed="$(az functionapp function list --resource-group "$group" --name "$app" --query "[].name" --output tsv \
    2>/dev/null | sed 's#.*/##' | sort -u || true)"
  missing="$(printf '%s\n' "$expected" | while read -r fn; do printf '%s\n' "$listed" | grep -qxF "$fn" || echo "$fn"; done)"
  if [ -z "$missing" ]; then
    break
  fi
  if [ "$waited" -ge "$WAIT" ]; then
    echo "subscribe-events: after ${WAIT}s, $app still does not list: $(echo $missing)" >&2
    echo "  check the deployment (az functionapp log deployment show) and run this hook again: azd hooks run postdeploy" >&2
    exit 1
  fi
  echo "Waiting for $app to list its functions (missing: $(echo $missing); ${waited}s of ${WAIT}s)"
  sleep "$POLL"
  waited=$((waited + POLL))
done

echo "The functions are listed: provisioning again with the Event Grid subscriptions."
azd env set DEPLOY_EVENT_SUBSCRIPTIONS true
azd provision --no-prompt
