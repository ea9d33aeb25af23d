"""Loading what lives as long as the process (an SDK's modules, the engine) without the cyclic GC scanning it.

Importing ``azure.ai.ml`` creates a few hundred thousand objects (modules, classes, marshmallow schemas), all kept
until the process ends. While they are made, the collector runs again and again over every object made so far —
about a fifth of the import's time — and finds nothing to free; afterwards each full collection scans them all
once more. Inside ``long_lived()`` the collector is paused, and at its end everything tracked by then is frozen
(``gc.freeze``: moved to a generation the collector never scans). Only pausing would not do: the first collection
after it scans the whole backlog at once and gives the time back (``benchmarks/first_invocation.py``).

Frozen objects are still freed by reference counting; only a reference cycle that is already garbage when the block
ends (one-off, from loading) stays, as it would until the next full collection anyway. Objects made afterwards —
every event's — are collected as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived() -> Iterator[None]:
    """Pause the cyclic GC for the block, then freeze what it made. Nested, the outer block freezes."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()
