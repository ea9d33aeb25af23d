"""``long_lived``: what a block loads is kept out of the cyclic GC's scans; the collector is paused only inside."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.longlived import long_lived


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic GC can free it


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    """The collector is on again after each test, whatever it did (tests/conftest.py unfreezes)."""
    yield
    gc.enable()


def test_the_collector_is_paused_inside_and_what_was_made_is_frozen_at_the_end():
    with long_lived():
        assert not gc.isenabled()
        kept = [Node() for _ in range(1000)]

    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)
    scanned = {id(o) for o in gc.get_objects()}  # the generations a collection looks at
    assert not any(id(n) in scanned for n in kept)


def test_objects_made_afterwards_are_collected_as_usual():
    with long_lived():
        pass
    gc.collect()
    for _ in range(100):
        Node()  # unreachable at once, held only by its own cycle

    assert gc.collect() >= 100


def test_nested_blocks_freeze_once_at_the_outer_end():
    with long_lived():
        with long_lived():
            Node()
        assert not gc.isenabled()
        assert gc.get_freeze_count() == 0
    assert gc.isenabled() and gc.get_freeze_count() > 0


def test_a_collector_turned_off_before_stays_off_and_nothing_is_frozen():
    gc.disable()
    with long_lived():
        Node()

    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_an_error_inside_still_restores_the_collector():
    with pytest.raises(RuntimeError), long_lived():
        raise RuntimeError("boom")

    assert gc.isenabled()


def test_the_sdk_is_loaded_under_it_once_and_later_clients_freeze_nothing():
    from shared.adapters.azureml.clients import load_sdk

    load_sdk()  # loaded now, if no earlier test loaded it
    gc.unfreeze()

    client_type = load_sdk()

    assert client_type.__name__ == "MLClient"
    assert gc.get_freeze_count() == 0
