"""``fastpose journal``: the daily log and its subcommands (show, note, export, tag, sweeps).

Thin commands: check the input, read the journal into a screen (``fastpose.screens``), draw it. Bad input
raises FastposeError before anything is written. Nothing here imports torch or Lightning, and the listing
reads an up-to-date SQLite journal through ``sqlite3`` alone (no SQLAlchemy import), so it stays fast on
large journals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fastpose.cli.app import app
from fastpose.cli.common import console, mark_lost, replay_spools, require_reader
from fastpose.errors import FastposeError


DEFAULT_LIMIT = 50


MAX_LIMIT = 10**9


journal_app = typer.Typer(
    help="The journal: the daily log of runs and notes, written by the runs themselves.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(journal_app, name="journal")


@journal_app.callback(invoke_without_command=True)
def journal(
    ctx: typer.Context,
    since: Annotated[Optional[str], typer.Option(help="Only runs started on or after YYYY-MM-DD, or in the last Nd days (0d = today).")] = None,
    status: Annotated[Optional[str], typer.Option(help="Only runs with this status (running, completed, crashed, interrupted, diverged, lost).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Only runs of this NAME.")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest K runs (0 = all).")] = DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as a JSON list instead.")] = False,
    tag: Annotated[Optional[list[str]], typer.Option(help="Only runs with this tag (repeatable: all of them).")] = None,
    sweep: Annotated[Optional[str], typer.Option(help="Only the runs of this sweep (its id; see journal sweeps).")] = None,
    where: Annotated[Optional[list[str]], typer.Option(help="Only runs whose config has KEY=VALUE, e.g. loss.name=qloss (repeatable).")] = None,
) -> None:
    """The daily log, newest day first: runs with status, duration, headline metrics, notes."""
    if ctx.invoked_subcommand is not None:
        return
    from fastpose.journal.reader import STATUSES, parse_since
    from fastpose.journal.access import open_reader

    since_dt = parse_since(since) if since is not None else None
    if status is not None and status not in STATUSES:
        raise FastposeError(f"--status {status!r}: choose one of {', '.join(STATUSES)}")
    if name is not None:
        from fastpose.config import validate_name

        validate_name(name)
    if not 0 <= limit <= MAX_LIMIT:
        raise FastposeError(f"--limit must be between 0 (all) and {MAX_LIMIT:,}, got {limit}")
    filters = tag or sweep is not None or where
    if filters:
        from fastpose.journal.tags import parse_where, validate_tag

        tags, conditions = [validate_tag(t) for t in tag or ()], parse_where(where or ())

    replay_spools()
    reader = open_reader()
    if reader is None:
        from fastpose.journal.db import missing_journal

        print("[]" if as_json else f"The journal is empty: {missing_journal()}. Runs and notes will appear here.")
        return
    from fastpose.screens.daily_log import load_daily_log
    from fastpose.screens.terminal.daily_log import render_daily_log

    try:
        mark_lost(reader)
        if filters:  # runs of a tag, sweep or config: no day notes
            from fastpose.journal.sweeps import get_sweep
            from fastpose.journal.tags import select_runs
            from fastpose.screens.daily_log import DailyLog

            sweep_id = get_sweep(reader, sweep).id if sweep is not None else None
            runs = select_runs(reader, since=since_dt, status=status, name=name, limit=limit or None,
                               tags=tags, sweep_id=sweep_id, where=conditions)
            log = DailyLog(reader, runs, [])
        else:
            log = load_daily_log(reader, since=since_dt, status=status, name=name, limit=limit or None)
    finally:
        reader.close()
    if as_json:
        from fastpose.text import strict_json

        print(strict_json(log.to_json(), indent=2))
        return
    render_daily_log(log, console())


@journal_app.command()
def show(
    run: Annotated[str, typer.Argument(help="Run id, label, unique label prefix, or NAME (newest).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON instead (metrics with their histories, config, code, checkpoints, evaluations).")] = False,
) -> None:
    """Everything about one run: its metrics and their history first, then notes, config, code, traceback,
    checkpoints and evaluations."""
    from fastpose.screens.run import load_run_detail

    replay_spools()
    reader = require_reader()
    try:
        mark_lost(reader)
        detail = load_run_detail(reader, reader.resolve(run))
    finally:
        reader.close()
    if as_json:
        from fastpose.text import strict_json

        print(strict_json(detail.to_json(), indent=2))
        return
    from fastpose.screens.terminal.run import render_run

    render_run(detail, console())


@journal_app.command()
def note(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="[RUN] TEXT", help="TEXT for a note on today, or RUN TEXT for a note on a run.")] = None,
    edit: Annotated[Optional[int], typer.Option("--edit", metavar="ID", help="Replace the text of note ID (ids: journal show RUN).")] = None,
    delete: Annotated[Optional[int], typer.Option("--delete", metavar="ID", help="Delete note ID.")] = None,
) -> None:
    """Add a note: on a run (note RUN TEXT) or on today (note TEXT); or edit or delete one by its id."""
    args = list(args or [])
    if edit is not None and delete is not None:
        raise FastposeError("give --edit ID TEXT or --delete ID, not both")
    if edit is not None or delete is not None:
        return _change_note(edit, delete, args)
    if len(args) not in (1, 2):
        raise FastposeError(f"journal note takes [RUN] TEXT (quote the text), got {len(args)} arguments")
    text = args[-1]
    if not text.strip():
        raise FastposeError("a note needs some text")
    from fastpose.journal.store import JournalStore

    replay_spools()
    reader = require_reader() if len(args) == 2 else _open_reader_or_none()
    if reader is not None:  # resolve before opening for writing: a journal is never created by a failed note
        try:
            if len(args) == 2:
                reader.resolve(args[0])
            else:
                _refuse_bare_run_reference(reader, text)
        finally:
            reader.close()
    with JournalStore.open(write_attempts=2) as store:  # locked past twice the busy timeout: "journal busy"
        target = store.resolve(args[0]) if len(args) == 2 else None
        record = store.add_note(text, run_id=target.id if target else None)
    where = f"run #{target.id} {target.label}" if target else f"{record.created_at.astimezone():%Y-%m-%d}"
    print(f"note #{record.id} on {where}")


def _refuse_bare_run_reference(reader, text: str) -> None:  # noqa: ANN001 - JournalReader
    """``journal note RUN`` without text is a mistake, not a day note reading "RUN"."""
    from fastpose.journal.reader import UnknownRunError

    try:
        run = reader.resolve(text)
    except UnknownRunError:
        return
    if text.strip() in (str(run.id), run.name, run.label):
        raise FastposeError(f"{text.strip()!r} names run #{run.id}; give the note's text too: "
                            f"journal note {text.strip()} \"TEXT\"")


def _change_note(edit: int | None, delete: int | None, args: list[str]) -> None:
    from fastpose.journal.store import JournalStore

    note_id = edit if edit is not None else delete
    if not 0 < note_id < 2**63:  # type: ignore[operator]
        raise FastposeError(f"no note with id {note_id}")
    if delete is not None and args:
        raise FastposeError("journal note --delete ID takes no text")
    if edit is not None and (len(args) != 1 or not args[0].strip()):
        raise FastposeError("journal note --edit ID takes the new TEXT (quote it)")
    reader = require_reader()
    reader.close()
    with JournalStore.open(write_attempts=2) as store:
        if edit is not None:
            store.edit_note(edit, args[0])
            print(f"note #{edit} edited")
        else:
            store.delete_note(delete)  # type: ignore[arg-type]
            print(f"note #{delete} deleted")


def _open_reader_or_none():  # noqa: ANN202 - JournalReader | None
    from fastpose.journal.access import open_reader

    return open_reader()


@journal_app.command()
def export(
    path: Annotated[Path, typer.Argument(help="Markdown file to write (a new file; see --force), or - for standard output.")],
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it is an existing regular file.")] = False,
) -> None:
    """Write the whole journal as Markdown, grouped by day, newest first."""
    from fastpose.journal.export import check_export_target, write_atomically

    to_stdout = str(path) == "-"
    target = None if to_stdout else check_export_target(path, force=force)  # refuses before anything is read
    from fastpose.journal.access import open_reader
    from fastpose.screens.daily_log import DailyLog
    from fastpose.screens.markdown import daily_log_markdown

    replay_spools()
    reader = open_reader()
    if reader is None:
        log = DailyLog(None, [], [])
    else:
        try:
            mark_lost(reader)
            log = DailyLog(reader, reader.list_runs(), reader.day_notes())
        finally:
            reader.close()
    if target is None:
        import sys

        sys.stdout.write(daily_log_markdown(log))
        return
    write_atomically(target, daily_log_markdown(log), force=force)
    from fastpose.text import visible

    print(f"wrote {len(log.runs)} runs and {sum(map(len, log.day_notes.values()))} day notes to {visible(path)}")


@journal_app.command("tag")
def tag(
    run: Annotated[str, typer.Argument(help="Run id, label, unique label prefix, or NAME (newest).")],
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="One or more tags to add.")],
) -> None:
    """Tag a run (journal --tag T lists the runs with tag T)."""
    from fastpose.journal.store import JournalStore
    from fastpose.journal.tags import add_tags, run_tags, validate_tag

    wanted = [validate_tag(t) for t in tags]
    replay_spools()
    with JournalStore.open() as store:
        record = store.resolve(run)
        added = add_tags(store, record.id, wanted)
        now = run_tags(store, [record.id])[record.id]
    from rich.text import Text

    console().print(Text(f"run #{record.id} {record.label}: tags {', '.join(now)}"
                          + ("" if added else " (unchanged)")))


@journal_app.command("sweeps")
def sweeps(
    as_json: Annotated[bool, typer.Option("--json", help="Print the sweeps as a JSON list instead.")] = False,
) -> None:
    """Each sweep with its cells: completed, running, failed (crashed, diverged, interrupted, lost), pending."""
    from fastpose.journal.access import open_reader
    from fastpose.screens.sweep import sweep_overview

    replay_spools()
    reader = open_reader()
    if reader is None:
        print("[]" if as_json else "No sweeps yet: fastpose sweep FILE.toml starts one.")
        return
    try:
        mark_lost(reader)
        rows = sweep_overview(reader)
    finally:
        reader.close()
    if as_json:
        from fastpose.text import strict_json

        print(strict_json(rows, indent=2))
        return
    if not rows:
        print("No sweeps yet: fastpose sweep FILE.toml starts one.")
        return
    from fastpose.screens.terminal.sweep import render_sweeps

    render_sweeps(rows, console())
