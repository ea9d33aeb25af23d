"""publish_event: mlreactor's own events (``mlreactor.ReleaseQueued`` ...) as CloudEvents 1.0 on an Event Grid topic.

Other teams subscribe to the custom topic to follow the retrain → test → release chain without polling us.
Each action publishes one CloudEvent (a batch of one, ``application/cloudevents-batch+json``) with:

* ``id`` = the action's idempotency key, so a redelivered Azure ML event republishes the *same* id. Event Grid is
  at-least-once too: subscribers dedupe on ``source`` + ``id`` (CloudEvents spec), which is why a resumed action
  needs no look-up before publishing again — republishing is harmless.
* ``source`` = ``/mlreactor`` + the workspace resource id the triggering event came from, so a subscriber can filter
  on one workspace (``source`` begins with ``/mlreactor/subscriptions/.../workspaces/mlw-prod``).
* the correlation id twice: as the extension attribute ``correlationid`` (for routing and tracing without reading
  ``data``) and as ``data.correlationId`` (for consumers that only see ``data``).

Authentication: the topic key (``MLREACTOR_EVENTGRID_TOPIC_KEY``, sent as ``aeg-sas-key``) when set, else the
managed identity (bearer token for ``https://eventgrid.azure.net/.default``; the identity needs *EventGrid Data
Sender* on the topic — the Bicep grants it and turns key auth off, so the key is for topics made elsewhere).

Retries are ours, not azure-core's: azure-core does not retry a POST that got 429 without ``Retry-After`` and sleeps
any ``Retry-After`` in full, which can outlast Event Grid's 30 s delivery window. We retry 408/429/5xx and
connection errors a few times, waiting at most 6 s in all, then raise ``TransientError`` so Event Grid redelivers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.actions import ActionResult, PlannedAction, PublishEventParams
from shared.errors import ConfigError, PermanentError, TransientError
from shared.identity import azure_credential
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import AzureKeyCredential, TokenCredential
    from azure.core.exceptions import HttpResponseError
    from azure.core.messaging import CloudEvent
    from azure.eventgrid import EventGridPublisherClient

log = logging.getLogger("mlreactor.adapters.eventgrid_out")

SOURCE_PREFIX = "/mlreactor"
#: A CloudEvents extension name: lower-case letters and digits only (spec), so not ``correlation_id``.
CORRELATION_EXTENSION = "correlationid"
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Sized to Event Grid's 30 s delivery window, not tuned per deployment: 4 attempts of at most 5 s each plus at most
# 6 s of waiting between them; a longer ``Retry-After`` is left to Event Grid's redelivery.
RETRY_TOTAL = 3
TIMEOUT_SECONDS = 5.0
_MAX_TOTAL_WAIT_SECONDS = 6.0


class EventGridPublisher:
    """Publishes ``publish_event`` actions to the custom topic at ``MLREACTOR_EVENTGRID_TOPIC_ENDPOINT``.

    ``credential`` and ``connection_verify`` exist for tests against a local HTTPS topic (a self-signed cert);
    ``sleep`` lets them observe the waits between retries without waiting, ``retry_total`` vary the attempts.
    """

    live = True

    def __init__(
        self,
        settings: Settings,
        *,
        credential: AzureKeyCredential | TokenCredential | None = None,
        connection_verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        retry_total: int = RETRY_TOTAL,
    ) -> None:
        if not settings.eventgrid_topic_endpoint:
            raise ConfigError("MLREACTOR_EVENTGRID_TOPIC_ENDPOINT is not set: publish_event has no topic")
        self._endpoint = settings.eventgrid_topic_endpoint
        self._settings = settings
        self._credential = credential
        self._verify = connection_verify
        self._sleep = sleep
        self._attempts = retry_total + 1
        self._client: EventGridPublisherClient | None = None
        self._lock = threading.Lock()

    @property
    def topic(self) -> str:
        """The topic's host name: names the target in messages (the endpoint holds no secret, the key does)."""
        return urlsplit(self._endpoint).hostname or self._endpoint

    def execute(self, action: PlannedAction) -> ActionResult:
        params = action.params
        if not isinstance(params, PublishEventParams):
            raise PermanentError(f"publish_event adapter got a {action.kind.value} action")
        event = cloud_event(action, params)
        self._send(event, params)
        return ActionResult(
            external_id=event.id,
            detail=f"published {event.type} ({event.subject}) to topic {self.topic}",
            data={"id": event.id, "source": event.source, "type": event.type},
        )

    # the wire -------------------------------------------------------------------------------------------------
    def _send(self, event: CloudEvent[Any], params: PublishEventParams) -> None:
        from azure.core.exceptions import (  # noqa: PLC0415 - lazy, like every SDK import here
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        client = self._client_once()
        what = f"publish {params.type} to topic {self.topic}"
        attempts = self._attempts
        failure = ""
        waited = 0.0
        for attempt in range(1, attempts + 1):
            try:
                client.send(
                    [event], retry_total=0, connection_timeout=TIMEOUT_SECONDS, read_timeout=TIMEOUT_SECONDS,
                    connection_verify=self._verify,
                )
                return
            except ClientAuthenticationError as exc:  # 401, or the identity could not get a token
                raise PermanentError(f"{what}: not authorized: {_service_message(exc)}") from exc
            except HttpResponseError as exc:
                if exc.status_code not in _RETRY_STATUSES:
                    raise PermanentError(f"{what}: HTTP {exc.status_code}: {_service_message(exc)}") from exc
                failure = f"HTTP {exc.status_code}: {_service_message(exc)}"
                wait = _retry_after(exc)
            except (ServiceRequestError, ServiceResponseError) as exc:
                failure = f"no answer: {type(exc).__name__}: {exc}"
                wait = None
            wait = wait if wait is not None else 0.5 * 2 ** (attempt - 1)
            if attempt == attempts or waited + wait > _MAX_TOTAL_WAIT_SECONDS:
                break
            log.info("%s: %s; retry %d/%d in %.1f s", what, failure, attempt, attempts - 1, wait)
            self._sleep(wait)
            waited += wait
        raise TransientError(f"{what}: {failure} (after {attempt} attempt(s)); Event Grid will redeliver")

    def _client_once(self) -> EventGridPublisherClient:
        """One client (and token cache) per process, built on first use: the import costs ~0.2 s of cold start."""
        with self._lock:
            if self._client is None:
                from azure.eventgrid import EventGridPublisherClient  # noqa: PLC0415

                _quiet_sdk_kwarg_warnings()
                self._client = EventGridPublisherClient(self._endpoint, self._credential or self._new_credential())
            return self._client

    def _new_credential(self) -> AzureKeyCredential | TokenCredential:
        key = self._settings.eventgrid_topic_key
        if key is not None and key.get_secret_value():  # "" (local.settings.sample.json) means unset
            from azure.core.credentials import AzureKeyCredential  # noqa: PLC0415

            return AzureKeyCredential(key.get_secret_value())
        return azure_credential(self._settings.managed_identity_client_id)


def cloud_event(action: PlannedAction, params: PublishEventParams) -> CloudEvent[Any]:
    """The CloudEvent one action publishes; the same action (same key) always yields the same id and source."""
    from azure.core.messaging import CloudEvent  # noqa: PLC0415

    source = action.event.source
    return CloudEvent(
        source=SOURCE_PREFIX + (source if source.startswith("/") else f"/{source}"),
        type=params.type,
        subject=params.subject or None,
        data={"correlationId": action.correlation_id, **params.data},
        datacontenttype="application/json",
        id=action.key,
        extensions={CORRELATION_EXTENSION: action.correlation_id},
    )


def _service_message(exc: HttpResponseError) -> str:
    """What the service said (``error.message`` of its JSON body), on one line; never a request header."""
    error = getattr(exc, "error", None)
    text = (error.message if error is not None and error.message else None) or exc.reason or str(exc)
    return " ".join(str(text).split())[:500]


def _retry_after(exc: HttpResponseError) -> float | None:
    response: Any = exc.response
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP-date: rare for Event Grid; fall back to our backoff
        return None


class _DropKwargWarning(logging.Filter):
    """azure-eventgrid 4.22 (basic tier) forwards per-call options such as ``retry_total`` into its CloudEvent model,
    which logs "X is not a known attribute ... will be ignored" on every send; the options do reach the pipeline."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not a known attribute" not in str(record.msg)


def _quiet_sdk_kwarg_warnings() -> None:
    sdk_log = logging.getLogger("azure.eventgrid._legacy._generated._serialization")
    if not any(isinstance(f, _DropKwargWarning) for f in sdk_log.filters):
        sdk_log.addFilter(_DropKwargWarning())
