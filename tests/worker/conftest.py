"""One Microsoft worker per test session, loaded with this app the way the host loads it.

The worker library needs Python ≥ 3.13 (the Python Flex Consumption runs, see README "Python version"). On an older
interpreter these tests are skipped — unless ``MLREACTOR_REQUIRE_WORKER=1`` (set by ``make test`` for its 3.13 run),
where a missing worker or protocol module is a failure, so the suite cannot pass without them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared import runtime
from tests.conftest import ROOT, Harness
from tests.worker.host import FunctionsHost

APP_MODULES = ("function_app", "functions")


def _unavailable(reason: str) -> None:
    if os.environ.get("MLREACTOR_REQUIRE_WORKER") == "1":
        pytest.fail(f"MLREACTOR_REQUIRE_WORKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def functions_host() -> Iterator[FunctionsHost]:
    if sys.version_info < (3, 13):
        _unavailable(f"azure-functions-runtime needs Python 3.13+, this is {sys.version.split()[0]}")
    try:
        import azure_functions_runtime
    except ImportError as exc:
        _unavailable(f"azure-functions-runtime is not installed ({exc})")
    from tests.worker import protocol

    try:
        protos = protocol.load()
    except FileNotFoundError as exc:
        _unavailable(str(exc))
    # The worker imports function_app.py itself. An app's functions can be indexed once (azure-functions refuses a
    # second get_functions), and other tests may have indexed the modules already imported: the worker gets its
    # own fresh import while it indexes, and the test process gets its modules back right after.
    saved = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] in APP_MODULES}
    for name in saved:
        del sys.modules[name]
    host = FunctionsHost(azure_functions_runtime, protos, ROOT)
    try:
        host.start()
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in APP_MODULES]:
            del sys.modules[name]
        sys.modules.update(saved)
    yield host
    host.stop()


@pytest.fixture
def app_engine(make_engine: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> Harness:
    """The engine the invoked functions use: shipped rules, dry-run adapters that can be told to fail."""
    harness = make_engine()
    monkeypatch.setattr(runtime, "_engine", harness.engine)
    return harness


def binding_dicts(metadata: Any) -> list[dict[str, Any]]:
    """The raw bindings the host reads (JSON strings in RpcFunctionMetadata.raw_bindings), parsed."""
    import json

    return [json.loads(raw) for raw in metadata.raw_bindings]
