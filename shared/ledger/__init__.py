"""Durable shared state: the port and its backends (SQLite embedded, Azure Table Storage)."""

from __future__ import annotations

from shared.ledger.port import Ledger
from shared.ledger.sqlite import SqliteLedger
from shared.settings import Settings


def open_ledger(settings: Settings) -> Ledger:
    """The ledger the settings select. The Tables backend (azure-data-tables) is imported only when chosen."""
    if settings.ledger == "tables":
        from shared.ledger.tables import TablesLedger  # noqa: PLC0415

        ledger: Ledger = TablesLedger.from_settings(settings)
        return ledger
    return SqliteLedger(settings.state_dir / "ledger.sqlite3")
