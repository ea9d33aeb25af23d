"""Fixtures for publish_event: a loopback HTTPS Event Grid topic and a publisher pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.eventgrid_out import EventGridPublisher
from shared.settings import Settings
from tests.fakes.eventgrid_topic import FakeEventGridTopic
from tests.fakes.tls import make_cert

TOPIC_KEY = "fake-topic-key-0123456789abcdef"


@pytest.fixture
def topic(tmp_path: Path) -> Iterator[FakeEventGridTopic]:
    with FakeEventGridTopic(make_cert(tmp_path / "tls"), key=TOPIC_KEY) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the publisher asked for between retries (recorded, not slept)."""
    return []


@pytest.fixture
def publisher(topic: FakeEventGridTopic, sleeps: list[float]) -> Callable[..., EventGridPublisher]:
    """A real publisher on the fake topic: key auth by default; settings, credential and retries overridable."""

    def build(credential: Any = None, retry_total: int = 3, **settings: Any) -> EventGridPublisher:
        values: dict[str, Any] = {"eventgrid_topic_endpoint": topic.endpoint, "eventgrid_topic_key": TOPIC_KEY}
        values.update(settings)
        return EventGridPublisher(
            Settings(**values), credential=credential, connection_verify=str(topic.cert.cert_path),
            sleep=sleeps.append, retry_total=retry_total,
        )

    return build
