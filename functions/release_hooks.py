"""Release signals in: the Azure DevOps service-hooks and GitHub webhook endpoints, and the reconciler's timer.

Thin: the logic is in ``shared/releases/`` (hooks.py answers a request, reconciler.py reads pending releases).
Both endpoints are ``AuthLevel.FUNCTION`` (the function key in the hook URL's ``?code=``) *and* check their own
shared secret, so a leaked function key alone cannot forge a release signal.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.releases.hooks import HookAnswer

bp = func.Blueprint()
log = logging.getLogger("mlreactor.functions.release_hooks")

#: Every 5 minutes (NCRONTAB). A constant, not a setting: see functions/ops.py for why.
RECONCILE_SCHEDULE = "0 */5 * * * *"


def _http(answer: HookAnswer) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(answer.body, default=str), status_code=answer.status,
                             mimetype="application/json")


@bp.function_name("azure_devops_hook")
@bp.route(route="hooks/azure-devops/{organization?}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def azure_devops_hook(req: func.HttpRequest) -> func.HttpResponse:
    """A service-hooks notification (Web Hooks consumer) about a run or release mlreactor queued."""
    from shared import runtime  # noqa: PLC0415 - the core loads on first use, not at cold start
    from shared.clock import SystemClock  # noqa: PLC0415
    from shared.releases import hooks  # noqa: PLC0415
    from shared.settings import get_settings  # noqa: PLC0415

    organization = req.route_params.get("organization")
    return _http(hooks.azure_devops(runtime.engine(), get_settings(), dict(req.headers), req.get_body(),
                                    organization, SystemClock().now()))


@bp.function_name("github_hook")
@bp.route(route="hooks/github", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def github_hook(req: func.HttpRequest) -> func.HttpResponse:
    """A GitHub webhook delivery (workflow_run, deployment_status, deployment_review), signed with the secret."""
    from shared import runtime  # noqa: PLC0415 - the core loads on first use, not at cold start
    from shared.clock import SystemClock  # noqa: PLC0415
    from shared.releases import hooks  # noqa: PLC0415
    from shared.settings import get_settings  # noqa: PLC0415

    return _http(hooks.github(runtime.engine(), get_settings(), dict(req.headers), req.get_body(),
                              SystemClock().now()))


@bp.function_name("reconcile_releases")
@bp.timer_trigger(arg_name="timer", schedule=RECONCILE_SCHEDULE, run_on_startup=False, use_monitor=True)
def reconcile_releases(timer: func.TimerRequest) -> None:
    """Read each pending release once; emit what the hooks did not tell (lost or never subscribed)."""
    from shared import runtime  # noqa: PLC0415 - the core loads on first use, not at cold start
    from shared.clock import SystemClock  # noqa: PLC0415
    from shared.releases import reconciler  # noqa: PLC0415
    from shared.settings import get_settings  # noqa: PLC0415

    settings, engine = get_settings(), runtime.engine()
    report = reconciler.reconcile(engine, reconciler.readers(settings, engine.ledger), settings, SystemClock().now())
    log.info("reconciled releases: %s", report.summary())
