"""``fastpose journal``: the daily log and its subcommands (show, note, export, tag, sweeps, and the housekeeping:
rm, restore, gc, du).

Thin commands: check the input, read the journal into a screen (``fastpose.screens``), draw it. Bad input
raises FastposeError before anything is written. Nothing here imports torch or Lightning, and the listing
reads an up-to-date SQLite journal through ``sqlite3`` alone (no SQLAlchemy import), so it stays fast on
large journals.
"""

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
    deleted: Annotated[bool, typer.Option("--deleted", help="List the runs deleted by journal rm instead (journal restore RUN brings one back).")] = False,
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

    shown = "only" if deleted else "hide"
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
                               tags=tags, sweep_id=sweep_id, where=conditions, deleted=shown)
            log = DailyLog(reader, runs, [])
        else:
            log = load_daily_log(reader, since=since_dt, status=status, name=name, limit=limit or None,
                                 deleted=shown)
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
    deleted: Annotated[bool, typer.Option("--deleted", help="RUN is among the runs deleted by journal rm.")] = False,
) -> None:
    """Everything about one run: its metrics and their history first, then notes, evaluations, checkpoints,
    disk use, config, code and traceback."""
    from fastpose.screens.run import load_run_detail

    replay_spools()
    reader = require_reader()
    try:
        mark_lost(reader)
        detail = load_run_detail(reader, reader.resolve(run, deleted="only" if deleted else "hide"))
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


# ----------------------------------------------------------------------------- housekeeping
@journal_app.command("rm")
def rm(
    runs: Annotated[Optional[list[str]], typer.Argument(metavar="[RUN...]", help="Runs to delete: id, label, label prefix or NAME (newest).")] = None,
    sweep: Annotated[Optional[str], typer.Option(help="Delete the runs of this sweep (its id).")] = None,
    where: Annotated[Optional[list[str]], typer.Option(help="Delete runs whose config has KEY=VALUE (repeatable: all of them).")] = None,
    status: Annotated[Optional[str], typer.Option(help="Delete runs with this status (e.g. crashed).")] = None,
    before: Annotated[Optional[str], typer.Option(help="Delete runs started before YYYY-MM-DD, or more than Nd days ago.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say which runs would be deleted; change nothing.")] = False,
) -> None:
    """Delete runs from the journal: hidden from every listing and from compare; files stay until journal gc.

    journal --deleted lists them, journal restore RUN brings one back. The filters combine (all must hold).
    A running run is refused, and so is a selection holding one: nothing is deleted then."""
    from fastpose.journal.removal import check_selection, mark_deleted, refuse_running, select_runs
    from fastpose.journal.store import JournalStore

    selection = check_selection(list(runs or []), sweep=sweep, where=where, status=status, before=before)
    replay_spools()
    reader = require_reader()
    try:
        mark_lost(reader)
        chosen = select_runs(reader, selection)
    finally:
        reader.close()
    if not chosen:
        print(f"no runs match {selection.describe()}; nothing deleted")
        return
    refuse_running(chosen)
    from fastpose.journal.du import directory_use
    from fastpose.screens.format import fmt_bytes

    seen: set = set()
    sizes = {run.id: directory_use(run.run_dir, seen) for run in chosen}
    if not dry_run:
        with JournalStore.open(write_attempts=2) as store:
            mark_deleted(store, chosen)
    out = console()
    from rich.text import Text

    verb = "would delete" if dry_run else "deleted"
    for run in chosen:
        use = sizes[run.id]
        disk = fmt_bytes(use.total) + " on disk" if use.here else "no files here"
        out.print(Text(f"{verb} run #{run.id} {run.label} ({run.status}, {disk})"))
    total = sum(u.total for u in sizes.values())
    tail = ("nothing changed" if dry_run else
            f"journal gc frees {fmt_bytes(total)}; journal restore RUN brings a run back")
    out.print(Text(f"{len(chosen)} run(s) {verb}; {tail}"))


@journal_app.command("restore")
def restore(
    runs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Deleted runs to bring back: id, label, label prefix or NAME.")],
) -> None:
    """Bring back runs deleted by journal rm (journal --deleted lists them)."""
    from fastpose.journal.removal import removed_files, restore as restore_runs
    from fastpose.journal.store import JournalStore

    reader = require_reader()
    try:
        chosen: dict = {}
        for ref in runs:
            run = reader.resolve(ref, deleted="all")
            if run.deleted_at is None:
                raise FastposeError(f"run #{run.id} {run.label} is not deleted; nothing was restored")
            chosen.setdefault(run.id, run)
        gone = removed_files(reader, list(chosen))
    finally:
        reader.close()
    with JournalStore.open(write_attempts=2) as store:
        restore_runs(store, list(chosen.values()))
    from rich.text import Text

    out = console()
    for run in chosen.values():
        lost = any(r["kind"] == "run_dir" and r["done_at"] is not None for r in gone[run.id])
        tail = ("; its run directory was removed by journal gc: config, code and metrics are back, its "
                "checkpoints are not") if lost else ""
        out.print(Text(f"restored run #{run.id} {run.label}{tail}"))


@journal_app.command("gc")
def gc(
    runs: Annotated[Optional[list[str]], typer.Argument(metavar="[RUN...]", help="Only these runs (deleted or kept).")] = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the rows of deleted runs (metrics, notes, config): no restore after.")] = False,
    keep: Annotated[str, typer.Option(help="Checkpoints kept of finished runs: comma-separated best, last, periodic, all.")] = "best,last",
    older: Annotated[Optional[str], typer.Option(help="Only runs deleted (or, for pruning, ended) at least this long ago: 30d, 12h, 1d12h.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be removed and freed; change nothing.")] = False,
) -> None:
    """Free disk: remove the run directories of deleted runs (and with --purge their rows), and prune the
    checkpoints of finished runs (by default every checkpoint but the best and the last).

    Safe to interrupt at any moment (kill -9 included): a second gc finishes the job. Running runs are never
    touched; crashed, interrupted and lost runs keep their checkpoints (they may be resumed)."""
    from fastpose.journal.gc import Policy, collect, parse_age, parse_keep, plan
    from fastpose.journal.store import JournalStore

    policy = Policy(keep=parse_keep(keep), older=parse_age(older) if older is not None else parse_age("0"), purge=purge)
    replay_spools()
    require_reader().close()  # no journal yet: one line, none created
    out = console()
    from rich.text import Text

    from fastpose.screens.format import fmt_bytes

    with JournalStore.open(write_attempts=2) as store:
        if dry_run:
            the_plan = plan(store, policy, list(runs or []))
            _print_plan(the_plan, out)
            return
        result = collect(store, policy, list(runs or []), say=lambda e: out.print(Text(_gc_line(e))))
    if not result.events:
        out.print(Text("nothing to collect"))
        return
    files = sum(len(e.files) for e in result.events if e.what == "checkpoints")
    out.print(Text(f"freed {fmt_bytes(result.freed)}: {_n(result.count('run_dir'), 'run directory', 'run directories')}, "
                   f"{_n(files, 'checkpoint file')}, {_n(result.count('finished'), 'removal')} an earlier gc left; "
                   f"rows of {_n(result.count('purged'), 'run')} purged"))


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _gc_line(event) -> str:  # noqa: ANN001 - fastpose.journal.gc.GcEvent
    from fastpose.screens.format import fmt_bytes

    run = f"#{event.run_id} {event.label}".rstrip()
    return {
        "finished": f"finished an earlier gc's removal of {event.detail} (run #{event.run_id}, {fmt_bytes(event.bytes)})",
        "skipped": f"left run {run} alone: {event.detail}",
        "changed": f"left run {run} alone: it changed while gc planned ({event.detail})",
        "run_dir": f"removed the run directory of {run} ({fmt_bytes(event.bytes)})",
        "checkpoints": f"pruned {len(event.files)} checkpoint file(s) of {run}: {', '.join(event.files)} "
                       f"({fmt_bytes(event.bytes)})",
        "purged": f"purged the rows of run {run}" + (f" ({event.detail})" if event.detail else ""),
    }[event.what]


def _print_plan(the_plan, out) -> None:  # noqa: ANN001 - GcPlan, Console
    from rich.text import Text

    from fastpose.screens.format import fmt_bytes

    for row in the_plan.pending:
        out.print(Text(f"would finish an earlier gc's removal of {row['path']} (run #{row['run_id']})"))
    for run, why in the_plan.skipped:
        out.print(Text(f"would leave run #{run.id} {run.label} alone: {why}"))
    for r in the_plan.removals:
        if r.kind == "run_dir":
            line = f"would remove the run directory of #{r.run.id} {r.run.label} ({fmt_bytes(r.bytes)})"
            line += "; then purge its rows" if r.purge else ""
        else:
            line = (f"would prune {len(r.paths)} checkpoint file(s) of #{r.run.id} {r.run.label}: "
                    f"{', '.join(p.name for p in r.paths)} ({fmt_bytes(r.bytes)})")
        out.print(Text(line))
    for run in the_plan.purge_only:
        out.print(Text(f"would purge the rows of run #{run.id} {run.label} (no files left)"))
    out.print(Text(f"would free {fmt_bytes(the_plan.bytes)}; nothing changed" if not the_plan.empty
                   else "nothing to collect"))


@journal_app.command("du")
def du(
    runs: Annotated[Optional[list[str]], typer.Argument(metavar="[RUN...]", help="Only these runs.")] = None,
    sweep: Annotated[Optional[str], typer.Option(help="Only the runs of this sweep (its id).")] = None,
    limit: Annotated[int, typer.Option(help="Show the K largest runs (0 = all); totals count every run.")] = DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the disk use as JSON instead.")] = False,
) -> None:
    """Disk use per run (checkpoints, TensorBoard, logs, other), per sweep and in total; hard links counted once."""
    from fastpose.screens.disk import load_disk_report

    if not 0 <= limit <= MAX_LIMIT:
        raise FastposeError(f"--limit must be between 0 (all) and {MAX_LIMIT:,}, got {limit}")
    if runs and sweep is not None:
        raise FastposeError("give runs or --sweep, not both")
    reader = require_reader()
    try:
        report = load_disk_report(reader, refs=list(runs or []), sweep=sweep)
    finally:
        reader.close()
    if as_json:
        from fastpose.text import strict_json

        print(strict_json(report.to_json(), indent=2))
        return
    from fastpose.screens.terminal.disk import render_disk

    render_disk(report, console(), limit=limit or None)
