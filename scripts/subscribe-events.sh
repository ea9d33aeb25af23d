#!/bin/sh
# azd postdeploy hook: create the Event Grid subscriptions once the functions exist.
#
# Event Grid checks an AzureFunction destination when the subscription is created, and on Flex Consumption the
# functions exist only after azd has deployed the code, which happens after the first provision. So the first
# provision runs with deployEventSubscriptions=false and this hook provisions again with true. Later `azd up`
# runs keep it true (the value is stored in the azd environment), so this hook then does nothing.
set -eu

if [ "$(azd env get-value DEPLOY_EVENT_SUBSCRIPTIONS 2>/dev/null || true)" = "true" ]; then
  echo "Event Grid subscriptions are part of the deployment already."
  exit 0
fi
echo "The functions are deployed: provisioning again with the Event Grid subscriptions."
azd env set DEPLOY_EVENT_SUBSCRIPTIONS true
azd provision --no-prompt
