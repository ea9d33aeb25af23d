"""The live ``notify`` adapter: Teams, Slack, e-mail (SMTP / ACS) and signed webhooks — throttled, exactly once per
channel, and isolated per channel.

One notify action, step by step::

    gate     — decided once per action and recorded with the channels' results (a redelivery reuses it):
               same run/model in the same state already notified within MLREACTOR_NOTIFY_STATE_WINDOW → held (flapping)
               throttle_key window open and held by another event → held, counted for the next digest
               a new window opens → send, with "Also: N more ... were held back" for the previous window
    compose  — one Message from the layout of the message kind (messages.py)
    deliver  — every channel is its own unit of exactly-once in the ledger (key = sha256(action key | channel)),
               started with one insert (it counts the attempt; its ETag is reused for the result); what earlier
               attempts recorded comes with the claim (``PlannedAction.earlier``), so nothing is read again:
               done before → skipped; failed permanently before → stays failed (retried only on a redrive);
               transient → retried in-process, then left for Event Grid's redelivery (only that channel);
               transient on its MLREACTOR_NOTIFY_MAX_ATTEMPTS-th delivery → recorded as failed (bounded)
    outcome  — any channel still transient → TransientError (redeliver; delivered channels are not re-sent)
               else any channel failed → PermanentError naming each channel and what it said: the event is
               quarantined for a person, with the delivered channels recorded done, so a redrive after the fix
               sends only to the channels that failed
               (in both cases the gate and the channel results known so far are stored first, in one write)
               else → done, with per-channel detail in the audit; the gate and channel results are stored with
               the action's result, in the engine's next write (no write of their own)

A notification sent just before a crash (before its result was recorded) is sent again on redelivery: Ops may
see a duplicate, never a gap. Webhook receivers can drop it by the stable ``X-Mlreactor-Delivery-Id``; ACS dedupes
by the operation id; SMTP mails carry a stable ``Message-ID``.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta

from shared.actions import ActionResult, NotifyParams, PlannedAction
from shared.adapters.notify import render, senders
from shared.adapters.notify.messages import Layout, Message, compose, load_layouts, title
from shared.channels import AcsEmailChannel, EmailChannel, SlackChannel, TeamsChannel, WebhookChannel
from shared.clock import Clock, SystemClock, format_duration, parse_duration
from shared.errors import PermanentError, TransientError
from shared.ledger.port import ActionRecord, ActionStatus, Ledger
from shared.reactions import Rules
from shared.redact import redact, register_secret
from shared.settings import Settings

log = logging.getLogger("mlreactor.notify")


@dataclass(frozen=True)
class Gate:
    send: bool
    reason: str
    digest: int = 0


@dataclass(frozen=True)
class Delivery:
    channel: str
    status: str  # delivered | skipped | failed | retry
    detail: str
    attempted: bool = False  # sent (or tried to) in this delivery


class NotifyAdapter:
    """Carries out ``notify`` actions on the channels declared in the rules file.

    ``ledger`` holds throttle windows and per-channel delivery records; ``clock`` stamps them (tests move it);
    ``backoff`` is the first pause between in-process retries (doubling). With ``send=False`` (dry-run) the gate
    and the message are exactly as live — flapping, throttle windows and digests apply — but nothing is delivered,
    so a dry run shows what Ops would really receive.
    """

    def __init__(
        self, settings: Settings, rules: Rules, ledger: Ledger, *, clock: Clock | None = None, backoff: float = 0.5,
        send: bool = True,
    ) -> None:
        self.live = send
        self.settings = settings
        self.channels = rules.spec.channels
        self.ledger = ledger
        self.clock = clock or SystemClock()
        self.backoff = backoff
        for channel in self.channels.values():  # every channel secret joins the redaction net up front
            register_secret(*(settings.secret(getattr(channel, f)) for f in type(channel).model_fields
                              if f.endswith("_setting") and getattr(channel, f)))
        self.layouts: dict[str, Layout] = load_layouts(settings.notify_templates_dir)
        self.ca_file = str(settings.notify_ca_file) if settings.notify_ca_file else None
        self.transport = senders.Transport(
            timeout=settings.notify_timeout_seconds,
            tls=ssl.create_default_context(cafile=self.ca_file),
            allow_http_loopback=settings.allow_http_webhooks,
        )

    def execute(self, action: PlannedAction) -> ActionResult:
        params = action.params
        if not isinstance(params, NotifyParams):
            raise PermanentError(f"notify adapter got a {action.kind.value} action")
        window = parse_duration(params.throttle_window)
        gate, records = self._gate(action, params, window)
        if not gate.send:
            return ActionResult(detail=f"held back: {gate.reason}", records=tuple(records))
        if not self.live:  # what a dry run shows of the message is its title
            note = f" ({gate.reason})" if gate.digest else ""
            shown = title(action, self.layouts[params.message])
            return ActionResult(
                detail=f"dry-run: would notify {', '.join(params.channels)}: {shown}{note}",
                data={"channels": dict.fromkeys(params.channels, "dry-run"), "digest": gate.digest},
            )
        message = compose(
            action, self.layouts[params.message], digest=gate.digest, digest_key=params.throttle_key or "",
            window=format_duration(window),
        )
        parent = action.earlier.get(action.key)
        redrive = parent is not None and parent.status is ActionStatus.FAILED
        # Event Grid waits 30 s: past the budget, channels not yet tried wait for the redelivery (at least one
        # channel is always tried, so every delivery makes progress).
        deadline = time.monotonic() + self.settings.action_budget_seconds
        deliveries: list[Delivery] = []
        for name in params.channels:
            in_time = time.monotonic() < deadline or not any(d.attempted for d in deliveries)
            delivery, result = self._deliver(action, name, message, redrive, deadline if in_time else None)
            deliveries.append(delivery)
            records += [result] if result is not None else []
        summary = "; ".join(f"{d.channel}: {d.status} ({d.detail})" for d in deliveries)
        if any(d.status in ("retry", "failed") for d in deliveries):
            # The action is not done: store what is known now (one write), so the redelivery or the redrive
            # re-sends only the channels that did not get it, with the same gate decision.
            if records:
                self.ledger.record_action(*records)
            if any(d.status == "retry" for d in deliveries):
                raise TransientError(f"notify {summary}")
            raise PermanentError(f"notify {summary}")
        note = f"; {gate.reason}" if gate.digest else ""
        return ActionResult(
            detail=f"notified {summary}{note}",
            data={"channels": {d.channel: d.status for d in deliveries}, "digest": gate.digest},
            records=tuple(records),  # stored with the action's result, in the engine's next write
        )

    # gate ---------------------------------------------------------------------------------------------------------
    def _gate(self, action: PlannedAction, params: NotifyParams, window: timedelta) -> tuple[Gate, list[ActionRecord]]:
        """Flapping and throttle, decided once per action: an earlier attempt's recorded decision is reused (so a
        redelivery renders the same message); a new one is returned as a record, to be stored with the results.

        A decision lost in a crash is made again: the windows this event opened re-admit it (same holder)."""
        key = _derived(action.key, "gate")
        recorded = action.earlier.get(key)
        if recorded is not None and recorded.status is ActionStatus.DONE:
            return Gate(bool(recorded.data.get("send")), recorded.detail, int(recorded.data.get("digest", 0))), []
        with self.ledger.together():  # SQLite: the flapping and the throttle window, one commit
            gate = self._decide(action, params, window)
        record = self._record(action, key, "notify:gate", ActionStatus.DONE, gate.reason,
                              data={"send": gate.send, "digest": gate.digest})
        return gate, [record]

    def _record(
        self, action: PlannedAction, key: str, kind: str, status: ActionStatus, detail: str,
        external_id: str | None = None, data: dict[str, object] | None = None, over: ActionRecord | None = None,
    ) -> ActionRecord:
        """The result of one sub-step (the gate, one channel) beside the action's event; ``over`` is the record
        ``start_action`` returned (its ETag and attempt count carry over)."""
        return ActionRecord(
            key=key, event_key=action.event.key, event_id=action.event.id, rule=action.rule, kind=kind,
            status=status, external_id=external_id, detail=redact(detail), url=None, updated_at=self.clock.now(),
            data=dict(data or {}), attempts=over.attempts if over else 0, version=over.version if over else "",
        )

    def _decide(self, action: PlannedAction, params: NotifyParams, window: timedelta) -> Gate:
        now = self.clock.now()
        holder = action.event.key
        state = self.ledger.acquire_throttle(
            f"notify-state|{action.rule}|{action.index}|{_state(action)}", holder, self.settings.notify_state_window,
            now,
        )
        if not state.allowed:
            since = state.window_start.isoformat(timespec="seconds")
            return Gate(False, f"already notified for this state since {since} (flapping)")
        if not params.throttle_key:
            return Gate(True, "")
        decision = self.ledger.acquire_throttle(
            f"notify|{action.rule}|{action.index}|{params.throttle_key}", holder, window, now
        )
        if not decision.allowed:
            return Gate(False, f"folded into the digest of {params.throttle_key!r} "
                               f"({decision.suppressed} held back in this {format_duration(window)} window)")
        if decision.suppressed:
            return Gate(True, f"digest of {decision.suppressed} held back", decision.suppressed)
        return Gate(True, "")

    # deliver ------------------------------------------------------------------------------------------------------
    def _deliver(
        self, action: PlannedAction, name: str, message: Message, redrive: bool, deadline: float | None
    ) -> tuple[Delivery, ActionRecord | None]:
        """One channel, exactly once; ``deadline`` None means out of time: report without sending (or counting).

        Returns what happened and, when it is final (delivered, failed), the channel's record to store."""
        key = _derived(action.key, f"channel|{name}")
        kind = f"notify:{name}"
        known = action.earlier.get(key)
        if deadline is not None and not _final(known, redrive):
            known = self.ledger.start_action(  # counts this attempt; the result is recorded over it
                key, action.event.key, action.event.id, action.rule, kind, self.clock.now()
            )
        if known is not None and known.status is ActionStatus.DONE:
            return Delivery(name, "skipped", f"already delivered: {known.detail}"), None
        if known is not None and known.status is ActionStatus.FAILED and not redrive:
            return Delivery(name, "failed", known.detail), None
        if deadline is None or known is None:
            return Delivery(name, "retry", "out of time in this delivery; sent on the next"), None
        try:
            detail = self._send_with_retries(name, message, key, deadline)
        except PermanentError as exc:
            log.error("notification failed permanently: %s", exc)
            failed = self._record(action, key, kind, ActionStatus.FAILED, str(exc), over=known)
            return Delivery(name, "failed", str(exc), attempted=True), failed
        except TransientError as exc:
            if known.attempts >= self.settings.notify_max_attempts:
                detail = f"gave up after {known.attempts} deliveries: {exc}"
                log.error("notification failed: %s", detail)
                failed = self._record(action, key, kind, ActionStatus.FAILED, detail, over=known)
                return Delivery(name, "failed", detail, attempted=True), failed
            return Delivery(
                name, "retry", f"attempt {known.attempts}/{self.settings.notify_max_attempts}: {exc}", attempted=True
            ), None
        done = self._record(action, key, kind, ActionStatus.DONE, detail, external_id=name, over=known)
        return Delivery(name, "delivered", detail, attempted=True), done

    def _send_with_retries(self, name: str, message: Message, delivery_id: str, deadline: float) -> str:
        """Retry a transient failure in-process while another attempt still fits before ``deadline``."""
        for attempt in range(self.settings.notify_retries + 1):
            try:
                return self._send(name, message, delivery_id)
            except TransientError:
                pause = self.backoff * (2**attempt)
                fits = time.monotonic() + pause + self.settings.notify_timeout_seconds < deadline
                if attempt == self.settings.notify_retries or not fits:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _send(self, name: str, message: Message, delivery_id: str) -> str:
        channel = self.channels.get(name)
        if channel is None:
            raise PermanentError(f"channel {name} is not declared under channels: in the rules file")
        if isinstance(channel, TeamsChannel | SlackChannel | WebhookChannel):
            url = self._secret(name, channel.url_setting)
            senders.check_url(name, channel.url_setting, url, self.transport)
            if isinstance(channel, TeamsChannel):
                return senders.post_json(name, url, senders.body_json(render.teams(message)), self.transport)
            if isinstance(channel, SlackChannel):
                return senders.post_json(name, url, senders.body_json(render.slack(message)), self.transport)
            body = senders.body_json(render.webhook(message))
            secret = self._secret(name, channel.secret_setting)
            timestamp = int(self.clock.now().timestamp())
            headers = senders.signed_headers(secret, delivery_id, timestamp, body)
            return senders.post_json(name, url, body, self.transport, headers)
        mail_id = f"<{delivery_id[:32]}@mlreactor>"
        if isinstance(channel, EmailChannel):
            password = self._secret(name, channel.password_setting) if channel.password_setting else None
            mail = render.email(message, sender=channel.sender, to=channel.to, message_id=mail_id)
            return senders.send_smtp(name, channel, password, mail, self.transport)
        assert isinstance(channel, AcsEmailChannel)
        connection = self._secret(name, channel.connection_string_setting)
        mail = render.email(message, sender=channel.sender, to=channel.to, message_id=mail_id)
        return senders.send_acs(name, channel, connection, mail, delivery_id, self.transport, self.ca_file)

    def _secret(self, channel: str, setting: str) -> str:
        value = self.settings.secret(setting)
        if value is None:
            raise PermanentError(f"channel {channel}: app setting {setting} is not set")
        register_secret(value)  # a receiver may echo it in its error: redacted wherever it would go
        return value.get_secret_value()


def _final(record: ActionRecord | None, redrive: bool) -> bool:
    """Recorded done, or failed and not being redriven: nothing to send, nothing to count."""
    return record is not None and (
        record.status is ActionStatus.DONE or (record.status is ActionStatus.FAILED and not redrive)
    )


def _derived(action_key: str, part: str) -> str:
    return hashlib.sha256(f"{action_key}|{part}".encode()).hexdigest()


def _state(action: PlannedAction) -> str:
    """What "the same state" means for flapping: the run and its status, else the subject and deployed models."""
    ctx = action.event.context()
    run = ctx.get("run") or {}
    if run:
        return f"run|{run['id']}|{run['status']}"
    models = ",".join(m["id"] for m in (ctx.get("deployment") or {}).get("models", []))
    return f"subject|{action.event.subject}|{models}"
