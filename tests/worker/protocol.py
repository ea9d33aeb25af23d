"""The worker protocol's message classes, from the generated modules Microsoft publishes on PyPI.

The host and the Python worker talk gRPC with the messages of ``FunctionRpc.proto``
(Azure/azure-functions-language-worker-protobuf). Microsoft's ``azure-functions-runtime`` is handed those classes by
its caller (the proxy worker passes its ``protos`` module in ``WorkerRequest.properties``) and ships none itself; its
sibling ``azure-functions-runtime-v1`` wheel carries the generated ``FunctionRpc_pb2`` (and the ``identity`` and
``shared`` modules it imports) under a top-level ``tests/protos`` folder. ``make test`` installs that wheel with
``pip --target`` beside the venv (``$VENV/worker-protos``) instead of into site-packages, where its ``tests`` package
would shadow ours; this module loads it from there under a private package name.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

PACKAGE = "_azure_worker_protos"


def protos_dir() -> Path:
    """Where ``make test`` put the generated modules (``MLREACTOR_WORKER_PROTOS`` overrides)."""
    configured = os.environ.get("MLREACTOR_WORKER_PROTOS")
    base = Path(configured) if configured else Path(sys.prefix) / "worker-protos"
    return base / "tests" / "protos"


def load() -> types.SimpleNamespace:
    """Every message and enum of the protocol as attributes of one object, like the proxy worker's ``protos``."""
    folder = protos_dir()
    if not (folder / "FunctionRpc_pb2.py").is_file():
        raise FileNotFoundError(f"no FunctionRpc_pb2.py under {folder}: run `make test` (it installs them)")
    if PACKAGE not in sys.modules:
        # A bare package object: the wheel's __init__ also imports the gRPC stubs, which the harness does not need.
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(folder)]
        sys.modules[PACKAGE] = package
    rpc = importlib.import_module(f"{PACKAGE}.FunctionRpc_pb2")
    nullable = importlib.import_module(f"{PACKAGE}.shared.NullableTypes_pb2")
    names = {
        name: getattr(module, name)
        for module in (nullable, rpc)
        for name in dir(module)
        if not name.startswith("_")
    }
    return types.SimpleNamespace(**names)
