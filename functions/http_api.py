"""Read-only HTTP endpoints for operators (function-key auth): health, audit records, a chain's timeline page."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

bp = func.Blueprint()


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    """Every JSON answer passes the one redaction step (the endpoints already loaded the core)."""
    from shared.redact import redact  # noqa: PLC0415

    return func.HttpResponse(redact(json.dumps(body, default=str)), status_code=status, mimetype="application/json")


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when rules are valid, the subscribed workspaces allowed, every Key Vault reference resolved and the
    ledger answers; 503 otherwise, saying why. Says which adapters are live."""
    from shared import runtime  # noqa: PLC0415 - the core loads on first use, not at cold start
    from shared.errors import MlreactorError  # noqa: PLC0415
    from shared.ops import views  # noqa: PLC0415
    from shared.settings import get_settings  # noqa: PLC0415

    startup_error = None
    try:
        engine = runtime.engine()
    except (MlreactorError, OSError) as exc:
        engine, startup_error = None, str(exc)
    report = views.health(get_settings(), engine, startup_error)
    return _json(report, 200 if report["status"] == "ok" else 503)


@bp.function_name("audit")
@bp.route(route="audit", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def audit(req: func.HttpRequest) -> func.HttpResponse:
    """``/api/audit?correlation=ID`` or ``?event=ID`` (``&since=24h&limit=100``): audit records, newest first."""
    from shared import runtime  # noqa: PLC0415 - the core loads on first use, not at cold start
    from shared.ops import views  # noqa: PLC0415

    try:
        entries = views.audit_query(runtime.engine(), dict(req.params))
    except views.BadQuery as exc:
        return _json({"error": str(exc)}, 400)
    return _json([entry.as_dict() for entry in entries])


@bp.function_name("timeline")
@bp.route(route="timeline", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def timeline(req: func.HttpRequest) -> func.HttpResponse:
    """``/api/timeline?correlation=ID``: one chain drawn as a read-only HTML timeline."""
    from shared import runtime  # noqa: PLC0415 - the core loads on first use, not at cold start
    from shared.ops import views  # noqa: PLC0415
    from shared.redact import redact  # noqa: PLC0415
    from shared.settings import get_settings  # noqa: PLC0415

    correlation = req.params.get("correlation", "")
    if not correlation:
        return _json({"error": "give correlation=ID"}, 400)
    entries = views.audit_query(runtime.engine(), {"correlation": correlation, "limit": "1000"})
    page = redact(views.timeline_html(correlation, entries, stall_after=get_settings().chain_stall_after))
    return func.HttpResponse(
        page, status_code=200, mimetype="text/html", charset="utf-8",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                 "X-Content-Type-Options": "nosniff"},
    )
