"""What the commands do around the journal before drawing a screen: replay outage spools, mark runs whose
process is gone (a warning, not a failure, on a journal this process cannot write), open a reader."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from fastpose.errors import FastposeError

if TYPE_CHECKING:
    from rich.console import Console


def console() -> Console:
    from fastpose.screens.terminal.console import safe_console

    return safe_console()  # no markup, control characters visible; the terminal's width, $COLUMNS, else 100


def mark_lost(reader) -> None:  # noqa: ANN001 - JournalReader
    """Mark runs whose process is gone as lost; on a journal this process cannot write (read-only file or
    disk, full disk, locked), say so in one line on stderr and show the journal as it is."""
    from fastpose.journal.access import mark_lost as mark_lost_run
    from fastpose.journal.failures import as_user_error
    from fastpose.text import visible

    try:
        mark_lost_run(reader)
    except Exception as exc:  # noqa: BLE001 - sorted just below
        error = as_user_error(exc)
        if error is None:
            raise
        print(f"warning: {visible(error, newlines=False)}", file=sys.stderr)


def replay_spools() -> int:
    """Replay the journal spools runs left under ``<home>/runs`` while the journal was unreachable.

    Costs a directory scan when there are none (no SQLAlchemy import); an outage that persists is a warning
    on stderr, and the listing goes on with what the journal holds. Where the SQLite journal is not there at
    all, no journal is created for them: one line per spool says which journal its writes wait for.
    """
    from fastpose.journal.db import journal_exists, journal_home, journal_url
    from fastpose.journal.spool import find_spools

    if not find_spools(journal_home()):
        return 0

    def warn(line: str) -> None:
        from fastpose.text import visible

        print(visible(line, newlines=False), file=sys.stderr)

    if not journal_exists(journal_url()):  # the journal the spools wait for is gone: say where they are
        from fastpose.journal.spool import report_waiting

        report_waiting(journal_home(), journal_url(), warn)
        return 0
    from fastpose.journal.spool import replay_spools as replay
    from fastpose.journal.store import JournalStore

    return replay(journal_home(), lambda: JournalStore.open(busy_timeout_s=2.0, write_attempts=2), warn)


def require_reader():  # noqa: ANN202 - JournalReader
    from fastpose.journal.access import open_reader

    reader = open_reader()
    if reader is None:
        from fastpose.journal.db import missing_journal

        raise FastposeError(missing_journal())
    return reader
