"""What the HTTP endpoints show: health (no secrets), audit queries, and one chain drawn as an HTML timeline.

Everything shown comes from events and is escaped (``html.escape``); the page is static HTML with inline CSS and no
script, so nothing from an event can run in a reader's browser.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.adapters import describe
from shared.clock import SystemClock, parse_duration
from shared.engine import Engine
from shared.errors import RulesError
from shared.ledger.port import AuditEntry
from shared.ops.gates import cached_gates
from shared.reactions import load_rules
from shared.settings import Settings, unresolved_key_vault_references
from shared.workspaces import check as check_workspaces


class BadQuery(ValueError):
    """A query parameter that cannot be used; the message names it."""


def health(settings: Settings, engine: Engine | None, startup_error: str | None = None) -> dict[str, Any]:
    """Rules valid? Subscribed workspaces allowed? Key Vault references resolved? Ledger reachable? Which adapters
    are live? Release gates last verified? — never a secret or a setting's value (setting names only)."""
    report: dict[str, Any] = {"status": "ok"}
    try:
        rules = load_rules(settings.rules_path)
        report["rules"] = {"valid": True, "rules": len(rules.spec.rules),
                           "allowed_workspaces": len(rules.spec.allowed_workspaces)}
        workspaces = check_workspaces(settings.subscribed_workspace_ids, rules.spec.allowed_workspaces)
        report["workspaces"] = {"subscribed": len(settings.subscribed_workspace_ids), **workspaces.as_dict()}
        if workspaces.not_allowed:
            report["status"] = "unhealthy"
    except RulesError as exc:
        report["rules"] = {"valid": False, "errors": exc.errors[:20]}
        report["status"] = "unhealthy"
    unresolved = unresolved_key_vault_references()
    report["settings"] = {"unresolved_key_vault_references": unresolved}
    if unresolved:
        report["status"] = "unhealthy"
    if engine is None:
        if startup_error:
            report["error"] = startup_error
        report["ledger"] = {"backend": settings.ledger, "reachable": False}
        report["status"] = "unhealthy"
        return report
    try:
        engine.ledger.audit(correlation_id="health-probe", limit=1)  # one partition on Tables, not a scan
        report["ledger"] = {"backend": settings.ledger, "reachable": True}
    except Exception as exc:  # any failure to read is "unreachable"; the type is enough, no details
        report["ledger"] = {"backend": settings.ledger, "reachable": False, "error": type(exc).__name__}
        report["status"] = "unhealthy"
    report["adapters"] = describe(engine.adapters)
    report["dry_run"] = "live" not in report["adapters"].values()
    # What this process last verified about its release targets' approvals (``mlreactor gates check`` reads live).
    report["release_gates"] = cached_gates(engine.adapters.values())
    return report


def audit_query(engine: Engine, params: Mapping[str, str]) -> list[AuditEntry]:
    """``correlation=`` or ``event=`` (one of them is required), optional ``since=`` (e.g. 24h) and ``limit=``."""
    correlation, event = params.get("correlation"), params.get("event")
    if not correlation and not event:
        raise BadQuery("give correlation=ID or event=ID")
    since = None
    if params.get("since"):
        try:
            since = SystemClock().now() - parse_duration(params["since"])
        except ValueError as exc:
            raise BadQuery(f"since: {exc}") from None
    try:
        limit = max(1, min(1000, int(params.get("limit", "200"))))
    except ValueError:
        raise BadQuery(f"limit: {params.get('limit')!r} is not a number") from None
    return engine.ledger.audit(event_id=event, correlation_id=correlation, since=since, limit=limit)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1b1b;background:#fafafa}
h1{font-size:1.3rem} .meta{color:#555}
ol{list-style:none;padding:0;border-left:3px solid #8a8a8a;margin-left:.5rem}
li.step{position:relative;margin:0 0 1.2rem 1.2rem;padding:.6rem .9rem;background:#fff;border:1px solid #ddd;
border-radius:6px} li.step::before{content:"";position:absolute;left:-1.65rem;top:.9rem;width:.8rem;height:.8rem;
border-radius:50%;background:#8a8a8a} li.acted::before{background:#2e7d32} li.failed::before,
li.quarantined::before{background:#c62828} li.ignored::before,li.duplicate::before{background:#9e9e9e}
.when{color:#555;font-variant-numeric:tabular-nums} .kind{font-weight:600} .outcome{float:right;font-weight:600}
ul.actions{margin:.4rem 0 0;padding-left:1.1rem} .status{font-family:ui-monospace,monospace}
"""


def timeline_html(correlation_id: str, entries: list[AuditEntry], now: datetime | None = None) -> str:
    """One chain as a read-only timeline page, oldest step first."""
    e = html.escape
    steps = []
    for entry in sorted(reversed(entries), key=lambda x: x.at):  # the ledger answers newest first
        kind = entry.event_type.removeprefix("Microsoft.MachineLearningServices.") or "unparseable event"
        actions = "".join(
            f"<li><span class=status>{e(str(a.get('kind')))}: {e(str(a.get('status')))}</span> — "
            f"{e(str(a.get('detail') or ''))}{_link(a.get('url'))}</li>"
            for a in entry.actions
        )
        rules = f" · rules: {e(', '.join(entry.reactions))}" if entry.reactions else ""
        steps.append(
            f"<li class='step {e(entry.outcome)}'><span class=outcome>{e(entry.outcome)}</span>"
            f"<span class=when>{entry.at:%Y-%m-%d %H:%M:%S} UTC</span> · <span class=kind>{e(kind)}</span>"
            f" · event {e(entry.event_id or '-')}{rules}<div>{e(entry.reason)}</div>"
            + (f"<ul class=actions>{actions}</ul>" if actions else "") + "</li>"
        )
    body = "".join(steps) or "<li class=step>No audit records for this correlation id.</li>"
    generated = f"{(now or SystemClock().now()):%Y-%m-%d %H:%M:%S} UTC"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>mlreactor chain {e(correlation_id)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Chain {e(correlation_id)}</h1><p class=meta>{len(entries)} step(s) · generated {generated}</p>"
        f"<ol id=timeline>{body}</ol></body></html>"
    )


def _link(url: object) -> str:
    if isinstance(url, str) and url.startswith("https://"):
        return f" <a href='{html.escape(url, quote=True)}' rel=noreferrer>open</a>"
    return ""
