"""``fastpose compare``: runs side by side, or groups of runs (``--sweep``, ``--by``) with statistics."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fastpose.cli.app import app, opt
from fastpose.cli.tables import latex_option, markdown_option, print_table, table_format
from fastpose.errors import FastposeError


@app.command()
def compare(
    runs: Annotated[Optional[list[str]], typer.Argument(help="Two or more runs: id, label, label prefix or NAME.")] = None,
    plot: Annotated[Optional[Path], opt("Also draw the metric curves into this PNG file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    sweep: Annotated[Optional[str], opt("Compare the groups of this sweep (its id): statistics and a verdict.")] = None,
    by: Annotated[Optional[list[str]], opt("Group the runs by this config key, e.g. loss.name (repeatable).")] = None,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print one CSV row per run (config, final and best metrics; with groups, the group too).")] = False,
    tuning: Annotated[bool, typer.Option("--tuning", help="With --sweep: the sweep's [tune] stage instead of its final cells.")] = False,
    spark: Annotated[bool, typer.Option("--spark", help="Add each metric's history as a sparkline (a resumed run's with its parent's).")] = False,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also list (and plot) the per-class metrics (with --sweep/--by: every metric, losses too).")] = False,
    metric: Annotated[Optional[list[str]], opt("Only this metric (repeatable; the primary metric is always kept), e.g. val/rot_err_median.")] = None,
    latex: Annotated[bool, latex_option()] = False,
    markdown: Annotated[bool, markdown_option()] = False,
) -> None:
    """Side by side: status, metrics (best highlighted, deltas to the first run), config and code differences.

    With --sweep ID or --by KEY: one row per group (n, mean ± sd, min-max) and Welch's t-test of the best
    group against each other on the primary metric."""
    from fastpose.screens.plot import check_plot_path

    if plot is not None:
        check_plot_path(plot)  # before reading anything
    table = table_format(latex, markdown, json=json_out, csv=csv_out)
    if tuning and sweep is None:
        raise FastposeError("--tuning needs --sweep ID")
    if sweep is not None or by:
        _compare_groups(runs or [], sweep, by or [], plot, json_out, csv_out, tuning, metric or [], per_class, table)
        return
    if json_out and csv_out:
        raise FastposeError("choose one of --json and --csv")
    from fastpose.screens.comparison import load_comparison, select_metrics
    from fastpose.screens.plot import plot as plot_runs
    from fastpose.screens.terminal.comparison import render

    cmp = load_comparison(list(runs or []))
    if metric:
        select_metrics(cmp, metric)
    if plot is not None:
        plot_runs(cmp, str(plot), per_class=per_class)
    if csv_out:
        from fastpose.screens.runs import runs_csv

        sys.stdout.write(runs_csv(cmp.runs, cmp.summaries, cmp.metrics))
        return
    if table is not None:
        from fastpose.screens.tables import comparison_table

        print_table(table, comparison_table(cmp, per_class=per_class))
        return
    if json_out:
        from fastpose.text import strict_json

        print(strict_json(cmp.to_json(), indent=2))
        return
    from fastpose.screens.terminal.console import safe_console
    from fastpose.text import visible

    render(cmp, safe_console(), spark=spark, per_class=per_class)
    if plot is not None:
        print(f"plot written to {visible(plot)}")


def _compare_groups(runs: list[str], sweep: Optional[str], by: list[str], plot: Optional[Path], json_out: bool,
                    csv_out: bool, tuning: bool = False, metrics: Optional[list[str]] = None,
                    per_class: bool = False, table: Optional[str] = None) -> None:
    if json_out and csv_out:
        raise FastposeError("choose one of --json and --csv")
    from fastpose.cli.common import mark_lost
    from fastpose.journal.access import open_reader
    from fastpose.screens.comparison import select_metrics
    from fastpose.screens.groups import check_request, load_groups
    from fastpose.screens.plot import plot_groups
    from fastpose.screens.terminal.groups import render

    check_request(sweep=sweep, refs=runs, by=by)
    reader = open_reader()
    if reader is None:
        from fastpose.journal.db import missing_journal

        raise FastposeError(f"{missing_journal()}; nothing to compare")
    try:
        mark_lost(reader)  # a read-only journal still compares (one warning line)
        cmp = load_groups(reader, sweep=sweep, refs=runs, by=by, tuning=tuning)
    finally:
        reader.close()
    if metrics:
        select_metrics(cmp, metrics)
    if plot is not None:
        plot_groups(cmp, str(plot), cmp.shown_metrics(per_class))
    if table is not None:
        from fastpose.screens.tables import groups_table

        print_table(table, groups_table(cmp))
        return
    if csv_out:
        sys.stdout.write(cmp.csv_text())
        return
    if json_out:
        from fastpose.text import strict_json

        print(strict_json(cmp.to_json(), indent=2))
        return
    from fastpose.screens.terminal.console import safe_console
    from fastpose.text import visible

    render(cmp, safe_console(), per_class=per_class)
    if plot is not None:
        print(f"plot written to {visible(plot)}")
