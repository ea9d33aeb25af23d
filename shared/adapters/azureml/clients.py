"""One ``MLClient`` per workspace or registry, built on first use and reused; one credential for all of them.

Building a workspace client makes no network call, but importing ``azure.ai.ml`` costs ~1.6 s and ~100 MiB, so
nothing here imports it before the first Azure ML action (cold start: a notify-only event never pays for it).
Building a registry client does call: the SDK asks the registry's discovery document (``GET
…/registrymanagement/v1.0/registries/{name}/discovery`` on its cloud's global host) for the region's host, the
subscription and the resource group, once per registry and process.
Tokens are cached here, per scope, until five minutes before they expire: besides each client's bearer-token
policy, azure-ai-ml asks the credential directly on every pipeline submission (an ``https://ml.azure.com`` token for
the ``x-azureml-token`` header, a management token to read the tenant id), and a warm instance should not depend on
every credential type caching for it.

Retries fit Event Grid's 30 s window: at most ``azureml_retry_total`` retries per request, connect/read timeouts of
``azureml_timeout_seconds``, and one action (all its requests, retries, waits and timeouts) never runs past
``azureml_action_budget_seconds``: every try's timeouts are cut to what is left of it, and a ``Retry-After`` longer
than what is left is not waited for — the error surfaces at once as transient and Event Grid redelivers later (its
own back-off starts at 10 s).
"""

from __future__ import annotations

import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from shared.adapters.azureml.errors import calling
from shared.adapters.azureml.throttle import REMAINING_WRITES, WriteBudget, subscription_of
from shared.adapters.azureml.timing import Timing
from shared.errors import PermanentError
from shared.events import AzureMLEvent, Registry, Workspace
from shared.identity import azure_credential
from shared.longlived import long_lived
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.core.credentials import AccessToken, TokenCredential

#: What a rule's ``workspace:`` may name: a workspace, or (for model actions) a registry.
Target = Workspace | Registry


class WorkspaceClients:
    """``MLClient`` per workspace resource id or registry name (case-insensitive), thread-safe, created lazily.

    A registry's client is built under a lock of its own: its discovery call does not hold up other targets.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        connection_verify: str | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.settings = settings
        self.timing = timing or Timing()
        #: This instance's share of ARM's write bucket, fed by every answer (see ``throttle``).
        self.budget = WriteBudget(settings, self.timing)
        self._credential = credential
        self._cached: CachingCredential | None = None
        self._verify = connection_verify
        self._clients: dict[str, MLClient] = {}
        self._building: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, target: Target) -> MLClient:
        key = f"registry:{target.name.lower()}" if isinstance(target, Registry) else target.resource_id.lower()
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                client = self._clients.get(key)
            if client is None:
                client = self._build_registry(target) if isinstance(target, Registry) else self._build(target)
                with self._lock:
                    self._clients[key] = client
            return client

    def _build_registry(self, registry: Registry) -> MLClient:
        """``MLClient(registry_name=…)``: one discovery call; a resource id's subscription and group must match it."""
        client_type = load_sdk()
        with calling(registry, "GET registry discovery"):
            client = client_type(self._credential_for_clients(), registry_name=registry.name, **self._client_kwargs())
        found = (str(client.subscription_id).lower(), str(client.resource_group_name).lower())
        for pinned, actual, what in zip((registry.subscription_id, registry.resource_group), found,
                                        ("subscription", "resource group"), strict=True):
            if pinned is not None and pinned.lower() != actual:
                raise PermanentError(
                    f"Azure ML registry {registry.name}: the rule names {what} {pinned!r}, the registry's "
                    f"discovery reports {actual!r} (another registry of that name?)"
                )
        return client

    def _build(self, workspace: Workspace) -> MLClient:
        return load_sdk()(
            self._credential_for_clients(),
            subscription_id=workspace.subscription_id,
            resource_group_name=workspace.resource_group,
            workspace_name=workspace.name,
            **self._client_kwargs(),
        )

    def _client_kwargs(self) -> dict[str, Any]:
        settings = self.settings
        kwargs: dict[str, Any] = {
            "retry_policy": _window_retry_policy(settings, self.timing, self.budget),
            "connection_timeout": settings.azureml_timeout_seconds,
            "read_timeout": settings.azureml_timeout_seconds,
        }
        if self._verify is not None:
            kwargs["connection_verify"] = self._verify
        return kwargs

    def _credential_for_clients(self) -> TokenCredential:
        with self._lock:  # clients are built outside it (a registry's discovery calls), the credential is shared
            if self._cached is None:
                credential = self._credential
                if credential is None:
                    # In Azure: the Function App's managed identity (user-assigned when a client id is given).
                    credential = azure_credential(self.settings.managed_identity_client_id)
                self._cached = CachingCredential(credential)
            return self._cached


class CachingCredential:
    """Hands out each scope's token until five minutes before it expires; asks the wrapped credential otherwise.

    Requests with claims or another tenant (a CAE challenge) always go to the wrapped credential.
    """

    REFRESH_BEFORE = 300.0

    def __init__(self, inner: TokenCredential) -> None:
        self._inner = inner
        self._tokens: dict[tuple[str, ...], AccessToken] = {}
        self._lock = threading.Lock()

    def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, **kwargs: Any
    ) -> AccessToken:
        if claims or tenant_id:
            return self._inner.get_token(*scopes, claims=claims, tenant_id=tenant_id, **kwargs)
        with self._lock:
            token = self._tokens.get(scopes)
            if token is None or token.expires_on - self.REFRESH_BEFORE <= time.time():
                token = self._tokens[scopes] = self._inner.get_token(*scopes, **kwargs)
            return token


def load_sdk() -> type[MLClient]:
    """azure-ai-ml, imported by the first client built: its modules live as long as the process, so they load
    with the cyclic GC paused and are frozen out of its sight (``shared/longlived.py``: 0.75-0.90 s instead of
    0.86-1.20 s on a cold start, and no full collection scans them later). Later clients find it loaded: nothing
    is paused or frozen again (a freeze then would only catch the event in flight)."""
    if "azure.ai.ml" not in sys.modules:
        with long_lived():
            import azure.ai.ml  # noqa: F401, PLC0415 - the SDK loads on first use
    from azure.ai.ml import MLClient  # noqa: PLC0415 - loaded above, or by another thread that this waits for

    _cheap_experimental_check()
    return MLClient


def _cheap_experimental_check() -> None:
    """Every SDK call goes through a client built here, so this runs before azure-ai-ml builds any entity.

    Constructing one of azure-ai-ml's experimental classes (a pipeline job loaded from YAML builds several) asks
    ``azure.ai.ml._utils._experimental._should_skip_warning`` whether a ``_from_rest_object`` frame is on the stack,
    and it answers with ``inspect.stack()``, which reads the source of every frame: ~65 ms on the first ``load_job``
    of a cold start, 4x the whole rest of that call (``benchmarks/first_invocation.py``). The same question is
    answered here from the frames' code names alone, without their source; which warnings are logged is unchanged.
    If a later SDK version no longer has the function, nothing is replaced.
    """
    from azure.ai.ml._utils import _experimental  # noqa: PLC0415 - the SDK loads on first use

    if getattr(_experimental, "_should_skip_warning", None) in (None, _skip_warning):
        return
    _experimental._should_skip_warning = _skip_warning


def _skip_warning() -> bool:
    """True when called (at any depth) from a ``_from_rest_object``: the SDK converting a service answer."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_from_rest_object":
            return True
        frame = frame.f_back
    return False


def target_workspace(named: str | None, event: AzureMLEvent) -> Target:
    """The workspace or registry a rule names, else the workspace the event came from (its topic)."""
    if named:
        target = Workspace.parse(named) or Registry.parse(named)
        if target is None:
            raise PermanentError(
                f"workspace {named!r} is neither a workspace resource id "
                "(/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/WS) "
                "nor a registry (its resource id, or azureml://registries/NAME)"
            )
        return target
    workspace = event.workspace
    if workspace is None:
        raise PermanentError(f"event {event.id}: source {event.source!r} is not an Azure ML workspace; name one")
    return workspace


def _window_retry_policy(settings: Settings, timing: Timing, budget: WriteBudget) -> Any:
    """azure-core's RetryPolicy, bounded by the current action's deadline so no request outlives the window, on the
    injected clock, feeding ARM's throttling headers to the instance's write budget."""
    from azure.core.pipeline.policies import RetryPolicy  # noqa: PLC0415 - the SDK loads on first use

    read_timeout = settings.azureml_timeout_seconds
    max_wait = settings.azureml_throttle_wait_seconds

    class WindowRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
        def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
            retry_settings: dict[str, Any] = super().configure_retries(options)
            # azure-core's absolute timeout for this request: what the action has left
            retry_settings["timeout"] = min(retry_settings["timeout"], timing.left())
            return retry_settings

        def is_retry(self, retry_settings: dict[str, Any], response: Any) -> bool:
            wait = self.get_retry_after(response)
            _observe(response, wait)
            if wait is not None and (wait > timing.left() or wait > max_wait):
                return False  # not worth waiting for inside this delivery: Event Grid redelivers
            return bool(super().is_retry(retry_settings, response))

        def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
            wait = self.get_retry_after(response) if response is not None else None
            timing.sleep(wait if wait is not None else self.get_backoff_time(settings))

        def _configure_timeout(self, request: Any, absolute_timeout: float, is_response_error: bool) -> None:
            # azure-core cuts only the connect timeout to what is left; cut the read timeout too.
            super()._configure_timeout(request, absolute_timeout, is_response_error)
            current = request.context.options.get("read_timeout", read_timeout)
            request.context.options["read_timeout"] = min(current, absolute_timeout)

    def _observe(response: Any, retry_after: float | None) -> None:
        subscription = subscription_of(response.http_request.url)
        if subscription is None or response.http_request.method == "GET":
            return  # reads draw from ARM's read bucket, which does not hold up writes
        remaining = response.http_response.headers.get(REMAINING_WRITES)
        throttled = response.http_response.status_code == 429
        budget.observe(subscription, int(remaining) if remaining and remaining.isdigit() else None,
                       retry_after if throttled else None)

    budget_seconds = settings.azureml_action_budget_seconds
    return WindowRetryPolicy(
        retry_total=settings.azureml_retry_total,
        retry_backoff_factor=0.4,
        retry_backoff_max=min(4.0, budget_seconds),
        timeout=budget_seconds,
    )
