"""One ``Message``, four wire formats. Markup is added here and only here; every message value is escaped for its
format, so event data renders as text:

* Teams — Adaptive Card 1.4 in the Workflows webhook envelope. ``TextBlock``/``FactSet`` text is a CommonMark
  subset: ``\\``-escape the characters that start formatting or links, and list markers at a line start.
* Slack — Block Kit. Values go into ``plain_text`` objects, which Slack never parses; where ``mrkdwn`` is needed
  (labels, the metrics table, the notification fallback) ``&<>`` become entities (so ``<!channel>`` or a
  ``<url|link>`` cannot be injected) and ``*_~``` are split with a zero-width space so they cannot pair.
* E-mail — plain text and HTML alternatives; HTML is built with ``html.escape`` on every value and attribute.
* Webhook — the message as JSON data (no markup at all).
"""

from __future__ import annotations

import html
import re
from email.message import EmailMessage
from typing import Any

from shared.adapters.notify.messages import Message, Table

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
_TEAMS_COLOR = {"good": "Good", "warning": "Warning", "attention": "Attention", "accent": "Accent"}
_SLACK_EMOJI = {"good": "✅", "warning": "⚠️", "attention": "🔴", "accent": "ℹ️"}  # noqa: RUF001
_HTML_COLOR = {"good": "#107c10", "warning": "#c19c00", "attention": "#d13438", "accent": "#0078d4"}

_MD_SPECIAL = re.compile(r"([\\*_~`\[\]()<>])")
_MD_LINE_START = re.compile(r"^(\s*)([-+#]|\d+[.)])(?=\s|$)", re.MULTILINE)
_SLACK_PAIRING = re.compile(r"([*_~`])")
_ZWSP = "\u200b"


# --- Teams ------------------------------------------------------------------------------------------------------
def teams_markdown(value: str) -> str:
    """Adaptive Card markdown as literal text: ``*bold*`` → ``\\*bold\\*``, ``- x`` at a line start → ``\\- x``."""
    return _MD_LINE_START.sub(r"\1\\\2", _MD_SPECIAL.sub(r"\\\1", value))


def teams(message: Message) -> dict[str, Any]:
    """The body a Teams Workflows webhook expects: a ``message`` with one Adaptive Card attachment."""
    md = teams_markdown
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": md(message.title), "size": "Medium", "weight": "Bolder", "wrap": True,
         "color": _TEAMS_COLOR[message.severity]},
        {"type": "TextBlock", "text": md(message.text), "wrap": True},
    ]
    if message.digest:
        body.append({"type": "TextBlock", "text": md(message.digest), "wrap": True, "isSubtle": True,
                     "color": "Warning"})
    if message.facts:
        body.append({"type": "FactSet", "facts": [{"title": md(k), "value": md(v)} for k, v in message.facts]})
    if message.table:
        body.append(_teams_table(message.table))
    body.append({"type": "TextBlock", "text": md(message.footer), "wrap": True, "isSubtle": True, "size": "Small",
                 "spacing": "Medium"})
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": "1.4",
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": link.label, "url": link.url} for link in message.links],
        "msteams": {"width": "Full"},
    }
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                         "content": card}],
    }


def _teams_table(table: Table) -> dict[str, Any]:
    """A ColumnSet per row (the ``Table`` element needs card 1.5, which not every Teams client renders)."""
    def row(cells: tuple[str, ...], bold: bool) -> dict[str, Any]:
        return {"type": "ColumnSet", "spacing": "Small", "columns": [
            {"type": "Column", "width": "stretch", "items": [
                {"type": "TextBlock", "text": teams_markdown(cell), "wrap": True,
                 **({"weight": "Bolder"} if bold else {}),
                 **({"color": "Attention"} if cell == "FAIL" else {})},
            ]} for cell in cells
        ]}

    return {"type": "Container", "spacing": "Medium", "separator": True,
            "items": [row(table.columns, True), *(row(r, False) for r in table.rows)]}


# --- Slack ------------------------------------------------------------------------------------------------------
def slack_mrkdwn(value: str) -> str:
    """Slack mrkdwn as literal text: ``&<>`` as entities, formatting characters unable to pair."""
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SLACK_PAIRING.sub(rf"{_ZWSP}\1{_ZWSP}", escaped)


def _plain(value: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _cut(value, limit), "emoji": False}


def slack(message: Message) -> dict[str, Any]:
    """An incoming-webhook body: Block Kit blocks plus the ``text`` fallback shown in notifications."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"{_SLACK_EMOJI[message.severity]} {message.title}", 150)},
        {"type": "section", "text": _plain(message.text, 3000)},
    ]
    if message.digest:
        blocks.append({"type": "context", "elements": [_plain(message.digest, 2000)]})
    fields: list[dict[str, Any]] = []
    for label, value in message.facts:
        fields += [{"type": "mrkdwn", "text": f"*{slack_mrkdwn(_cut(label, 200))}*"}, _plain(value, 1900)]
    for start in range(0, len(fields), 10):  # at most 10 fields per section
        blocks.append({"type": "section", "fields": fields[start:start + 10]})
    if message.table:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_table(message.table)}})
    links = [link for link in message.links if len(link.url) <= 3000][:25]  # Block Kit's limits: a 400 otherwise
    if links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": _plain(link.label, 75), "url": link.url, "action_id": f"open-{i}",
             **({"style": "primary"} if i == 0 else {})}
            for i, link in enumerate(links)
        ]})
    blocks.append({"type": "context", "elements": [_plain(message.footer, 2000)]})
    return {"text": slack_mrkdwn(message.title), "blocks": blocks[:50]}


def _slack_table(table: Table) -> str:
    """A monospaced table in a code block (formatting is off there; ``&<>`` and backticks still need care)."""
    text = _aligned(table).replace("`", "ˋ")  # noqa: RUF001 - a look-alike: a backtick would end the block
    return "```\n" + text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "\n```"


# --- e-mail -----------------------------------------------------------------------------------------------------
def email(message: Message, *, sender: str, to: list[str], message_id: str) -> EmailMessage:
    """multipart/alternative: plain text first, HTML second (clients show the last part they can render)."""
    mail = EmailMessage()
    mail["Subject"] = _cut(message.title, 200)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Message-ID"] = message_id
    # RFC 3834: out-of-office replies and ticket bots must not answer an automated notification.
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Mlreactor-Correlation-Id"] = message.correlation_id
    mail["X-Mlreactor-Kind"] = message.kind
    mail.set_content(email_text(message))
    mail.add_alternative(email_html(message), subtype="html")
    return mail


def email_text(message: Message) -> str:
    lines = [message.title, "=" * min(len(message.title), 78), "", message.text]
    if message.digest:
        lines += ["", message.digest]
    if message.facts:
        width = max(len(k) for k, _ in message.facts)
        lines += ["", *(f"{k + ':':<{width + 1}} {v}" for k, v in message.facts)]
    if message.table:
        lines += ["", _aligned(message.table)]
    if message.links:
        lines += ["", *(f"{link.label}: {link.url}" for link in message.links)]
    lines += ["", "-- ", message.footer]
    return "\n".join(lines) + "\n"


def email_html(message: Message) -> str:
    e = html.escape
    color = _HTML_COLOR[message.severity]
    parts = [
        "<!DOCTYPE html>",
        '<html><body style="font-family:Segoe UI,Arial,sans-serif;font-size:14px;color:#242424">',
        f'<h2 style="color:{color};margin:0 0 8px">{e(message.title)}</h2>',
        f"<p>{e(message.text)}</p>",
    ]
    if message.digest:
        parts.append(f'<p style="color:#616161"><em>{e(message.digest)}</em></p>')
    if message.facts:
        rows = "".join(
            f'<tr><th align="left" style="padding:2px 12px 2px 0">{e(k)}</th><td>{e(v)}</td></tr>'
            for k, v in message.facts
        )
        parts.append(f'<table cellspacing="0">{rows}</table>')
    if message.table:
        head = "".join(f'<th align="left" style="padding:4px 8px;border-bottom:1px solid #ccc">{e(c)}</th>'
                       for c in message.table.columns)
        body = "".join(
            "<tr>" + "".join(f'<td style="padding:4px 8px">{e(c)}</td>' for c in row) + "</tr>"
            for row in message.table.rows
        )
        parts.append(f'<table cellspacing="0" style="margin-top:12px"><tr>{head}</tr>{body}</table>')
    if message.links:
        parts.append("<p>" + " &middot; ".join(
            f'<a href="{e(link.url, quote=True)}">{e(link.label)}</a>' for link in message.links
        ) + "</p>")
    parts.append(f'<p style="color:#8a8a8a;font-size:12px">{e(message.footer)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- generic webhook ------------------------------------------------------------------------------------------
def webhook(message: Message) -> dict[str, Any]:
    """The message as data; receivers format it themselves."""
    return {
        "type": "mlreactor.notification",
        "version": 1,
        "kind": message.kind,
        "severity": message.severity,
        "title": message.title,
        "text": message.text,
        "digest": message.digest or None,
        "facts": [{"label": k, "value": v} for k, v in message.facts],
        "table": {"columns": list(message.table.columns), "rows": [list(r) for r in message.table.rows]}
        if message.table else None,
        "links": [{"label": link.label, "url": link.url} for link in message.links],
        "event": dict(message.event),
        "correlation_id": message.correlation_id,
        "rule": message.rule,
    }


# --- helpers ----------------------------------------------------------------------------------------------------
def _aligned(table: Table) -> str:
    rows = [table.columns, *table.rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(table.columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
