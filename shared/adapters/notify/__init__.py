"""The live ``notify`` adapter: Teams, Slack, e-mail (SMTP / ACS) and signed webhooks — throttled, exactly once per
channel, and isolated per channel.

One notify action, step by step::

    gate     — decided once per action and recorded (a redelivery reuses the decision):
               same run/model in the same state already notified within MLREACTOR_NOTIFY_STATE_WINDOW → held (flapping)
               throttle_key window open and held by another event → held, counted for the next digest
               a new window opens → send, with "Also: N more ... were held back" for the previous window
    compose  — one Message from the layout of the message kind (messages.py)
    deliver  — every channel is its own unit of exactly-once in the ledger (key = sha256(action key | channel)):
               done before → skipped; failed permanently before → stays failed (retried only on a redrive);
               transient → retried in-process, then left for Event Grid's redelivery (only that channel);
               transient on its MLREACTOR_NOTIFY_MAX_ATTEMPTS-th delivery → recorded as failed (bounded)
    outcome  — any channel still transient → TransientError (redeliver; delivered channels are not re-sent)
               else any channel failed → PermanentError naming each channel and what it said: the event is
               quarantined for a person, with the delivered channels recorded done, so a redrive after the fix
               sends only to the channels that failed
               else → done, with per-channel detail in the audit

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
from shared.adapters.notify.messages import Layout, Message, compose, load_layouts
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
    ``backoff`` is the first pause between in-process retries (doubling).
    """

    live = True

    def __init__(
        self, settings: Settings, rules: Rules, ledger: Ledger, *, clock: Clock | None = None, backoff: float = 0.5
    ) -> None:
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
        gate = self._gate(action, params, window)
        if not gate.send:
            return ActionResult(detail=f"held back: {gate.reason}")
        message = compose(
            action, self.layouts[params.message], digest=gate.digest, digest_key=params.throttle_key or "",
            window=format_duration(window),
        )
        parent = self.ledger.get_action(action.key, action.event.id)
        redrive = parent is not None and parent.status is ActionStatus.FAILED
        # Event Grid waits 30 s: past the budget, channels not yet tried wait for the redelivery (at least one
        # channel is always tried, so every delivery makes progress).
        deadline = time.monotonic() + self.settings.action_budget_seconds
        deliveries: list[Delivery] = []
        for name in params.channels:
            in_time = time.monotonic() < deadline or not any(d.attempted for d in deliveries)
            deliveries.append(self._deliver(action, name, message, redrive, deadline if in_time else None))
        summary = "; ".join(f"{d.channel}: {d.status} ({d.detail})" for d in deliveries)
        if any(d.status == "retry" for d in deliveries):
            raise TransientError(f"notify {summary}")
        if any(d.status == "failed" for d in deliveries):
            raise PermanentError(f"notify {summary}")
        note = f"; {gate.reason}" if gate.digest else ""
        return ActionResult(
            detail=f"notified {summary}{note}",
            data={"channels": {d.channel: d.status for d in deliveries}, "digest": gate.digest},
        )

    # gate ---------------------------------------------------------------------------------------------------------
    def _gate(self, action: PlannedAction, params: NotifyParams, window: timedelta) -> Gate:
        """Flapping and throttle, decided once per action and recorded, so a redelivery renders the same message."""
        key = _derived(action.key, "gate")
        recorded = self.ledger.get_action(key, action.event.id)
        if recorded is not None and recorded.status is ActionStatus.DONE:
            return Gate(bool(recorded.data.get("send")), recorded.detail, int(recorded.data.get("digest", 0)))
        self.ledger.start_action(key, action.event.key, action.event.id, action.rule, "notify:gate", self.clock.now())
        gate = self._decide(action, params, window)
        self._finish(
            action, key, "notify:gate", ActionStatus.DONE, gate.reason, data={"send": gate.send, "digest": gate.digest}
        )
        return gate

    def _finish(
        self, action: PlannedAction, key: str, kind: str, status: ActionStatus, detail: str,
        external_id: str | None = None, data: dict[str, object] | None = None,
    ) -> None:
        """Record the result of one sub-step (the gate, one channel) beside the action's event."""
        self.ledger.record_action(ActionRecord(
            key=key, event_key=action.event.key, event_id=action.event.id, rule=action.rule, kind=kind,
            status=status, external_id=external_id, detail=redact(detail), url=None, updated_at=self.clock.now(),
            data=dict(data or {}),
        ))

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
    ) -> Delivery:
        """One channel, exactly once; ``deadline`` None means out of time: report without sending (or counting)."""
        key = _derived(action.key, f"channel|{name}")
        if deadline is None:
            known = self.ledger.get_action(key, action.event.id)
            record = known if known is not None and known.status is not ActionStatus.STARTED else None
        else:
            record = self.ledger.start_action(
                key, action.event.key, action.event.id, action.rule, f"notify:{name}", self.clock.now()
            )
        if record is not None and record.status is ActionStatus.DONE:
            return Delivery(name, "skipped", f"already delivered: {record.detail}")
        if record is not None and record.status is ActionStatus.FAILED and not redrive:
            return Delivery(name, "failed", record.detail)
        if deadline is None or record is None:
            return Delivery(name, "retry", "out of time in this delivery; sent on the next")
        try:
            detail = self._send_with_retries(name, message, key, deadline)
        except PermanentError as exc:
            self._finish(action, key, f"notify:{name}", ActionStatus.FAILED, str(exc))
            log.error("notification failed permanently: %s", exc)
            return Delivery(name, "failed", str(exc), attempted=True)
        except TransientError as exc:
            if record.attempts >= self.settings.notify_max_attempts:
                detail = f"gave up after {record.attempts} deliveries: {exc}"
                self._finish(action, key, f"notify:{name}", ActionStatus.FAILED, detail)
                log.error("notification failed: %s", detail)
                return Delivery(name, "failed", detail, attempted=True)
            return Delivery(
                name, "retry", f"attempt {record.attempts}/{self.settings.notify_max_attempts}: {exc}", attempted=True
            )
        self._finish(action, key, f"notify:{name}", ActionStatus.DONE, detail, external_id=name)
        return Delivery(name, "delivered", detail, attempted=True)

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
