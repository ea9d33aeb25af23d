"""What the HTTP endpoints show: health (no secrets), audit queries, and one chain drawn as an HTML timeline.

Everything shown comes from events and is escaped (``html.escape``); the page is static HTML with inline CSS and no
script, so nothing from an event can run in a reader's browser. The CLI shows the same: ``mlreactor chain ID --html``
writes this very page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.adapters import describe
from shared.clock import SystemClock, parse_duration
from shared.engine import Engine
from shared.errors import RulesError
from shared.ledger.port import AuditEntry
from shared.ops.gates import cached_gates
from shared.ops.verdicts import Chain, Step, chain
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


def since(text: str | None, *, name: str = "since", now: datetime | None = None) -> datetime | None:
    """``"24h"`` → the time 24 hours ago (the ``since`` of the audit endpoint and the CLI's ``--since``)."""
    if not text:
        return None
    try:
        return (now or SystemClock().now()) - parse_duration(text)
    except ValueError as exc:
        raise BadQuery(f"{name}: {exc}") from None


def audit_query(engine: Engine, params: Mapping[str, str]) -> list[AuditEntry]:
    """``correlation=`` or ``event=`` (one of them is required), optional ``since=`` (e.g. 24h) and ``limit=``."""
    correlation, event = params.get("correlation"), params.get("event")
    if not correlation and not event:
        raise BadQuery("give correlation=ID or event=ID")
    try:
        limit = max(1, min(1000, int(params.get("limit", "200"))))
    except ValueError:
        raise BadQuery(f"limit: {params.get('limit')!r} is not a number") from None
    return engine.ledger.audit(event_id=event, correlation_id=correlation, since=since(params.get("since")),
                               limit=limit)


def link_label(action: Mapping[str, Any]) -> str:
    """What a link opens, in words: ``release #151``, ``job mlr-3f2a…``, ``run …``, ``model credit:3``."""
    kind, ref = str(action.get("kind") or ""), action.get("external_id") or (action.get("data") or {}).get("id")
    noun = {"queue_release": "release #", "run_pipeline": "job ", "tag_run": "run ", "tag_model": "model "}
    if ref and kind in noun:
        return f"{noun[kind]}{ref}"
    return f"{kind} {ref}" if ref else kind or "link"


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1b1b;background:#fafafa;max-width:70rem}
h1{font-size:1.3rem;margin:0 0 .3rem} .meta{color:#555;margin:.2rem 0}
header.verdict{padding:.8rem 1rem;border-radius:6px;border-left:.5rem solid #8a8a8a;background:#fff;
margin-bottom:1rem} header.good{border-color:#2e7d32;background:#edf7ee} header.bad{border-color:#c62828;
background:#fdecea} header.waiting{border-color:#ef6c00;background:#fff4e5} header.running{border-color:#1565c0;
background:#e8f1fb} .verdict-text{font-size:1.1rem;font-weight:600;margin:.2rem 0}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;color:#fff;background:#8a8a8a;font-size:.85rem;
margin-right:.4rem} .good .badge{background:#2e7d32} .bad .badge{background:#c62828}
.waiting .badge{background:#ef6c00} .running .badge{background:#1565c0}
ul.legend{list-style:none;padding:0;margin:0 0 1rem;color:#444;font-size:.9rem} ul.legend li{display:inline-block;
margin-right:1.2rem} .dot{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;background:#9e9e9e;
vertical-align:-.1rem;margin-right:.3rem}
ol{list-style:none;padding:0;border-left:3px solid #8a8a8a;margin-left:.5rem}
li.step{position:relative;margin:0 0 1.2rem 1.2rem;padding:.6rem .9rem;background:#fff;border:1px solid #ddd;
border-radius:6px} li.step::before{content:"";position:absolute;left:-1.65rem;top:.9rem;width:.8rem;height:.8rem;
border-radius:50%;background:#9e9e9e}
li.good::before,.dot.good{background:#2e7d32} li.bad::before,.dot.bad{background:#c62828}
li.waiting::before,.dot.waiting{background:#ef6c00} li.running::before,.dot.running{background:#1565c0}
li.neutral::before,.dot.neutral{background:#9e9e9e} li.bad{border-color:#e6a5a5}
.when{color:#555;font-variant-numeric:tabular-nums} .kind{font-weight:600} .outcome{float:right;font-weight:600}
.note{font-weight:600;margin:.2rem 0} ul.actions,ul.attempts{margin:.4rem 0 0;padding-left:1.1rem}
ul.attempts{color:#555;font-size:.9rem} .status{font-family:ui-monospace,monospace}
"""

_LEGEND = (("good", "done / deployed"), ("bad", "failed, quarantined or rejected"),
           ("waiting", "waiting for a person"), ("running", "in progress"), ("neutral", "ignored or duplicate"))


def timeline_html(
    correlation_id: str, entries: list[AuditEntry], now: datetime | None = None,
    stall_after: timedelta = timedelta(hours=24),
) -> str:
    """One chain as a read-only page: its verdict first, then each step (oldest first) with its attempts."""
    e = html.escape
    now = now or SystemClock().now()
    drawn = chain(correlation_id, entries, now, stall_after)
    verdict = drawn.verdict
    steps = "".join(_step_html(step) for step in drawn.steps)
    body = steps or "<li class='step neutral'>No audit records for this correlation id.</li>"
    legend = "".join(f"<li><span class='dot {tone}'></span>{e(text)}</li>" for tone, text in _LEGEND)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>mlreactor chain {e(correlation_id)}: {e(verdict.ending.value)}</title><style>{_CSS}</style></head>"
        f"<body><header class='verdict {verdict.tone.value}' id=verdict><h1>Chain {e(correlation_id)}</h1>"
        f"<p class=verdict-text><span class=badge>{e(verdict.ending.value)}</span>{e(verdict.text)}</p>"
        f"<p class=meta>{_meta(drawn)} · generated {now:%Y-%m-%d %H:%M:%S} UTC</p></header>"
        f"<ul class=legend aria-label=legend>{legend}</ul><ol id=timeline>{body}</ol></body></html>"
    )


def _meta(drawn: Chain) -> str:
    deliveries = sum(len(s.attempts) for s in drawn.steps)
    span = ""
    if drawn.steps:
        span = f" · {drawn.steps[0].at:%Y-%m-%d %H:%M:%S} → {drawn.last_at:%Y-%m-%d %H:%M:%S} UTC"
    models = f" · model {html.escape(', '.join(drawn.models))}" if drawn.models else ""
    return f"{len(drawn.steps)} step(s), {deliveries} deliveries{span}{models}"


def _step_html(step: Step) -> str:
    e = html.escape
    entry = step.decisive
    actions = "".join(
        f"<li><span class=status>{e(str(a.get('kind')))}: {e(str(a.get('status')))}</span> — "
        f"{e(str(a.get('detail') or ''))}{_link(a)}</li>"
        for a in step.actions
    )
    rules = f" · rules: {e(', '.join(entry.reactions))}" if entry.reactions else ""
    attempts = ""
    if len(step.attempts) > 1:
        listed = "".join(
            f"<li><span class=when>{a.at:%H:%M:%S}</span> {e(a.outcome)} — {e(a.reason)}</li>" for a in step.attempts
        )
        attempts = f"<div class=meta>{len(step.attempts)} attempts of this step</div><ul class=attempts>{listed}</ul>"
    note = f"<div class=note>{e(step.note)}</div>" if step.note else ""
    return (
        f"<li class='step {step.tone.value}' data-outcome='{e(step.outcome)}'>"
        f"<span class=outcome>{e(step.outcome)}</span>"
        f"<span class=when>{step.at:%Y-%m-%d %H:%M:%S} UTC</span> · <span class=kind>{e(step.kind)}</span>"
        f" · event {e(step.event_id or '-')}{rules}{note}<div>{e(entry.reason)}</div>"
        + (f"<ul class=actions>{actions}</ul>" if actions else "") + attempts + "</li>"
    )


def _link(action: Mapping[str, Any]) -> str:
    url = action.get("url")
    if isinstance(url, str) and url.startswith("https://"):
        return f" <a href='{html.escape(url, quote=True)}' rel=noreferrer>{html.escape(link_label(action))}</a>"
    return ""
