"""Tables on a terminal fit its width by wrapping text, never by cutting an id; piped, rows are plain and full."""

from __future__ import annotations

import io

import pytest

from shared.ops.output import Table, table

EVENT_ID = "831e1650-001e-001b-66ab-eeb76e069631-with-a-long-tail"
REASON = "will retry: gate-and-release/notify: Teams answered 503 Service Unavailable; retried on the next delivery"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_long_text_wraps_and_ids_keep_their_full_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    table(["EVENT", "OUTCOME", "REASON"], [[EVENT_ID, "failed", REASON]], out, ids=["EVENT"])
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].startswith(EVENT_ID + "  failed")
    assert len(lines) > 2, "the reason continues on the next lines"
    wrapped = "".join(line[len(EVENT_ID):] for line in lines[1:])
    assert "".join(wrapped.split()) == "".join(f"failed {REASON}".split()), "nothing lost in the wrapping"


def test_piped_every_row_is_one_line_of_tab_separated_full_values() -> None:
    out = io.StringIO()
    table(["EVENT", "OUTCOME", "REASON"], [[EVENT_ID, "failed", REASON + "\nsecond line"], ["e2", None, ""]], out)
    assert out.getvalue().splitlines() == [
        "EVENT\tOUTCOME\tREASON", f"{EVENT_ID}\tfailed\t{REASON} second line", "e2\t-\t-",
    ]


def test_on_a_terminal_a_long_stream_is_written_in_blocks_with_one_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    out = Terminal()
    written = Table(["EVENT", "OUTCOME"], out, ids=["EVENT"], block=2)
    written.add(["e-1", "acted"])
    written.add(["e-2", "acted"])
    assert out.getvalue().splitlines() == ["EVENT  OUTCOME", "e-1    acted", "e-2    acted"], "written at the block"
    written.add([EVENT_ID, "failed"])
    written.close()
    assert out.getvalue().splitlines()[-1] == f"{EVENT_ID}  failed", "a longer id widens its column, never cut"
