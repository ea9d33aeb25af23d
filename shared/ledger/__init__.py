"""Durable shared state: the port and its backends (SQLite embedded, Azure Table Storage)."""

from __future__ import annotations

from shared.ledger.port import Ledger
from shared.settings import Settings


def open_ledger(settings: Settings) -> Ledger:
    """The ledger the settings select. The Tables backend is imported only when chosen."""
    if settings.ledger == "tables":
        from shared.ledger.tables import TablesLedger

        return TablesLedger.from_settings(settings)
    from shared.ledger.sqlite import SqliteLedger

    return SqliteLedger(settings.state_dir / "ledger.sqlite3")
