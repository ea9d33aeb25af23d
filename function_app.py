"""The Function App: registers the blueprints in ``functions/`` and nothing else.

Kept import-light on purpose: the worker imports this module before the first invocation (cold start). Azure SDKs
are imported by the adapters on first use, never here.
"""

import azure.functions as func

from functions import drift_events, http_api, model_events, ops, release_hooks, run_events

app = func.FunctionApp()
# One call per blueprint, by name: azure-functions-doctor recognises `app.register_functions(bp)`, not attributes.
for bp in (model_events.bp, run_events.bp, drift_events.bp, http_api.bp, ops.bp, release_hooks.bp):
    app.register_functions(bp)
