"""The Function App: registers the blueprints in ``functions/`` and nothing else.

Kept import-light on purpose: the worker imports this module before the first invocation (cold start). Azure SDKs
are imported by the adapters on first use, never here.
"""

import azure.functions as func

from functions import drift_events, http_api, model_events, ops, release_hooks, run_events

app = func.FunctionApp()
app.register_functions(model_events.bp)
app.register_functions(run_events.bp)
app.register_functions(drift_events.bp)
app.register_functions(http_api.bp)
app.register_functions(ops.bp)
app.register_functions(release_hooks.bp)
