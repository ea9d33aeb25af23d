"""Fixtures of the ledger tests: one Azurite per session, a fresh table per test, both ledgers behind one fixture."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.ledger.port import Ledger
from shared.ledger.sqlite import SqliteLedger
from shared.settings import Settings
from tests.fakes.azurite import BINARY, Azurite

BACKENDS = ["sqlite", pytest.param("tables", marks=pytest.mark.azurite)]


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite on free loopback ports. Absent binary: skip locally, fail in CI (``CI`` set) — never a silent pass."""
    if not BINARY.exists():
        message = f"Azurite is not installed ({BINARY} absent): run `npm ci` at the repository root (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with Azurite() as server:
        yield server


def tables_settings(azurite: Azurite, **overrides: object) -> Settings:
    """Settings of a Tables ledger on a fresh table (and container) of its own."""
    name = uuid.uuid4().hex[:12]
    values: dict[str, object] = {
        "ledger": "tables",
        "storage_connection_string": azurite.connection_string,
        "table_prefix": f"t{name}",
        "quarantine_container": f"q-{name}",
        **overrides,
    }
    return Settings.model_validate(values)


@pytest.fixture
def tables_ledger_settings(request: pytest.FixtureRequest) -> Settings:
    return tables_settings(request.getfixturevalue("azurite"))


def open_backend(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    if backend == "sqlite":
        return SqliteLedger(tmp_path / "ledger.sqlite3")
    from shared.ledger.tables import TablesLedger

    return TablesLedger.from_settings(request.getfixturevalue("tables_ledger_settings"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ledger(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    opened = open_backend(backend, request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def second_ledger(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """Another instance on the same state (another Function instance, another process's connection)."""
    opened = open_backend(backend, request, tmp_path)
    yield opened
    opened.close()
