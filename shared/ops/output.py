"""How the CLI writes: tables for people, JSON Lines for machines, progress on a terminal's stderr.

Ids are never cut: an id printed is an id that ``mlreactor audit --event`` accepts. On a terminal a table fits the
width by wrapping its long text columns (ids keep their full width); piped, every row is one plain line of
tab-separated full values, written as it comes (``| grep``, ``| cut -f2`` and ``| head`` work, and a long replay
streams).
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

_MIN_WIDTH = 12
_COMFORT = 24


def json_line(value: Any, out: TextIO | None = None) -> None:
    """One JSON object per line, flushed (a consumer sees each event as it is handled)."""
    print(json.dumps(value, default=str, ensure_ascii=False), file=out or sys.stdout, flush=True)


class Table:
    """Rows added one by one; piped, each is written at once; on a terminal they are aligned and wrapped in
    blocks of ``block`` rows, the column widths fixed by the first block (ids widen them if they must), so a long
    stream holds one block at most.

    ``ids`` names the columns that must never be wrapped or cut (event ids, correlation ids).
    """

    def __init__(self, headers: Sequence[str], out: TextIO | None = None, *, ids: Iterable[str] = (),
                 block: int = 200) -> None:
        self.headers = list(headers)
        self.out = out or sys.stdout
        self.ids = {self.headers.index(h) for h in ids}
        self.terminal = _isatty(self.out)
        self.block = block
        self.rows: list[list[str]] = []
        self.widths: list[int] = []
        self.count = 0
        if not self.terminal:
            print("\t".join(self.headers), file=self.out)

    def add(self, row: Sequence[object]) -> None:
        cells = [" ".join(str(c).split()) if c not in (None, "") else "-" for c in row]
        self.count += 1
        if not self.terminal:
            print("\t".join(cells), file=self.out, flush=True)
            return
        self.rows.append(cells)
        if len(self.rows) >= self.block:
            self._flush()

    def close(self) -> None:
        if self.terminal and (self.rows or not self.widths):
            self._flush()

    def _flush(self) -> None:
        if not self.widths:
            self.widths = _fit([max([len(h), *(len(r[i]) for r in self.rows)]) for i, h in enumerate(self.headers)],
                               self.headers, self.ids)
            print("  ".join(h.ljust(w) for h, w in zip(self.headers, self.widths, strict=True)).rstrip(),
                  file=self.out)
        for i in self.ids:
            self.widths[i] = max([self.widths[i], *(len(r[i]) for r in self.rows)])
        for row in self.rows:
            cells = [[c] if i in self.ids else textwrap.wrap(c, self.widths[i], break_on_hyphens=False) or [""]
                     for i, c in enumerate(row)]
            for line in range(max(len(c) for c in cells)):
                parts = [(c[line] if line < len(c) else "").ljust(w) for c, w in zip(cells, self.widths, strict=True)]
                print("  ".join(parts).rstrip(), file=self.out)
        self.out.flush()
        self.rows = []


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], out: TextIO | None = None, *,
          ids: Iterable[str] = ()) -> int:
    """A whole table at once; returns the number of rows."""
    written = Table(headers, out, ids=ids)
    for row in rows:
        written.add(row)
    written.close()
    return written.count


def _fit(widths: list[int], headers: list[str], ids: set[int]) -> list[int]:
    """Shrink the widest text columns (never an id column) until the row fits the terminal."""
    limit = shutil.get_terminal_size((160, 24)).columns
    shrinkable = [i for i in range(len(widths)) if i not in ids]
    # first the long columns, down to a comfortable width; only then everything, down to the minimum
    for floor in ([max(_COMFORT, len(headers[i])) for i in range(len(widths))],
                  [max(_MIN_WIDTH, len(headers[i])) for i in range(len(widths))]):
        while sum(widths) + 2 * (len(widths) - 1) > limit:
            candidates = [i for i in shrinkable if widths[i] > floor[i]]
            if not candidates:
                break
            widths[max(candidates, key=lambda i: widths[i])] -= 1
    return widths


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """``replayed 120/500 files`` (or ``redriven 120 events`` when the total is unknown) on a terminal's stderr,
    every ``every`` steps, so a long run shows it is alive."""

    def __init__(self, verb: str, noun: str, *, total: int | None = None, every: int = 1) -> None:
        self.verb, self.noun, self.total, self.every, self.count = verb, noun, total, every, 0
        self.enabled = _isatty(sys.stderr) and (total is None or total >= 20)

    def step(self, _: object = None) -> None:
        self.count += 1
        if self.enabled and self.count % self.every == 0:
            of = f"/{self.total}" if self.total is not None else ""
            print(f"\r{self.verb} {self.count}{of} {self.noun}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and self.count >= self.every:
            print(file=sys.stderr)


class Tally:
    """Counts by outcome without keeping what was counted: ``6 event(s): 5 acted, 1 ignored``."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def __getitem__(self, outcome: str) -> int:
        return self.counts.get(outcome, 0)

    def __str__(self) -> str:
        listed = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))
        return f"{sum(self.counts.values())} event(s): {listed or 'none'}"
