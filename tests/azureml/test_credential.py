"""Token caching: each scope's token is reused until five minutes before it expires."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken

from shared.adapters.azureml.clients import CachingCredential


class CountingCredential:
    """An Azure credential whose tokens live ``lifetime`` seconds; counts what it is asked."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.asked: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked.append((scopes, kwargs))
        return AccessToken(f"token-{len(self.asked)}", int(time.time() + self.lifetime))


def test_a_token_is_reused_per_scope_while_it_has_more_than_five_minutes_left():
    inner = CountingCredential(lifetime=3600)
    credential = CachingCredential(inner)

    tokens = [credential.get_token("https://ml.azure.com/.default") for _ in range(3)]
    credential.get_token("https://management.azure.com/.default")

    assert {t.token for t in tokens} == {"token-1"}
    assert [scopes for scopes, _ in inner.asked] == [
        ("https://ml.azure.com/.default",), ("https://management.azure.com/.default",)
    ]


def test_a_token_close_to_expiry_is_fetched_again():
    inner = CountingCredential(lifetime=120)
    credential = CachingCredential(inner)

    first = credential.get_token("https://ml.azure.com/.default")
    second = credential.get_token("https://ml.azure.com/.default")

    assert (first.token, second.token) == ("token-1", "token-2")


def test_a_claims_challenge_always_goes_to_the_credential():
    inner = CountingCredential(lifetime=3600)
    credential = CachingCredential(inner)
    credential.get_token("https://management.azure.com/.default")

    credential.get_token("https://management.azure.com/.default", claims='{"access_token":{}}')

    assert len(inner.asked) == 2 and inner.asked[1][1]["claims"] == '{"access_token":{}}'
