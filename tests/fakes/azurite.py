"""Azurite, the Azure Storage emulator, as a local server for tests: started on free loopback ports, in memory.

Pytest-independent (``start()`` / ``stop()``), so the end-to-end tests and the benchmarks can reuse it::

    with Azurite() as azurite:
        settings = Settings(ledger="tables", storage_connection_string=azurite.connection_string)
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent.parent
BINARY = ROOT / "node_modules" / ".bin" / "azurite"

#: The emulator's well-known development account (public, documented; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://127\.0\.0\.1:(\d+)")


class AzuriteMissing(RuntimeError):
    """``node_modules/.bin/azurite`` is absent: run ``npm ci`` (``make test`` does)."""


class Azurite:
    """One Azurite process (blob, queue and table services) on ports the OS picks, bound to 127.0.0.1 only."""

    def __init__(self, binary: Path = BINARY, *, startup_timeout: float = 30.0) -> None:
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}
        self._process: subprocess.Popen[str] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._output: list[str] = []

    @property
    def table_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['table']}/{ACCOUNT}"

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['blob']}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint={self.table_endpoint};BlobEndpoint={self.blob_endpoint};"
        )

    def start(self) -> Azurite:
        if not self.binary.exists():
            raise AzuriteMissing(f"{self.binary} is absent: run `npm ci` at the repository root (make test does)")
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        self._process = subprocess.Popen(
            [
                str(self.binary), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
                "--blobHost", "127.0.0.1", "--blobPort", "0", "--queueHost", "127.0.0.1", "--queuePort", "0",
                "--tableHost", "127.0.0.1", "--tablePort", "0",
            ],
            cwd=self._workdir.name, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        if not ready.wait(self.startup_timeout):
            output = "".join(self._output[-20:])
            self.stop()
            raise RuntimeError(f"Azurite did not start within {self.startup_timeout:.0f} s:\n{output}")
        return self

    def _pump(self, ready: threading.Event) -> None:
        """Read Azurite's console (the OS-chosen ports are printed there); keep draining so it never blocks."""
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line)
            del self._output[:-200]
            match = _LISTENING.search(line)
            if match:
                self.ports[match[1].lower()] = int(match[2])
                if {"blob", "queue", "table"} <= self.ports.keys():
                    ready.set()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

