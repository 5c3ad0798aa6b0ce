"""The ``fastpose`` command line: thin Typer commands, one file per group (``train``, ``journal``, ``ui``,
``compare``, ``evaluate``, ``render``, ``sweep``, ``reproduce``), registered on the one application in
``app.py``. Each command parses its options and calls one function; no torch or Lightning at module level, so
``fastpose --help``, ``fastpose journal``, ``fastpose compare`` and ``fastpose ui`` stay fast and work without them. ``run`` is the one place errors reach the user.

The command modules do not use ``from __future__ import annotations``: every command builds the whole
application, and Typer then ``eval``s each string annotation (about 640 of them, 15-20 ms of every
command); evaluated once at import they cost less (``tests/test_cli_compare.py`` keeps it so).
"""

import os
import sys

import typer

from fastpose.cli.app import app

# Each module registers its commands on ``app``; imported in the order ``fastpose --help`` lists them.
from fastpose.cli import journal  # noqa: E402,F401,I001
from fastpose.cli import train  # noqa: E402,F401
from fastpose.cli import sweep  # noqa: E402,F401
from fastpose.cli import compare  # noqa: E402,F401
from fastpose.cli import evaluate  # noqa: E402,F401
from fastpose.cli import render  # noqa: E402,F401
from fastpose.cli import reproduce  # noqa: E402,F401
from fastpose.cli import ui  # noqa: E402,F401  (listed last of the commands, next to the journal group)
from fastpose.errors import FastposeError


def check_argv(argv: list[str]) -> None:
    """Arguments must be text: bytes that are not UTF-8 (decoded by Python as lone surrogates) are refused,
    and so is a NUL character, which no real command line can hold (``run`` called in-process can pass one,
    and the option parser's paths would hand it to ``os.stat``)."""
    for i, arg in enumerate(argv, 1):
        if "\x00" in arg:
            from fastpose.text import visible

            raise FastposeError(f"argument {i} ({visible(arg, newlines=False)}) holds a NUL character")
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            from fastpose.text import visible

            raise FastposeError(f"argument {i} ({visible(arg, newlines=False)}) is not valid UTF-8") from None


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    The one place errors reach the user: a FastposeError, or a failure the user's environment caused
    (``fastpose.errors.as_user_error``: permissions, a read-only or full disk, a locked journal), becomes one
    ``error:`` line on stderr (control characters made visible) and its exit code, 2 unless documented
    otherwise. Anything else is a bug and keeps its traceback. ``FASTPOSE_DEBUG=1`` shows every traceback.
    """
    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:  # `fastpose journal | head`: the reader left; end quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _run(argv: list[str]) -> int:
    from fastpose.journal.failures import as_user_error

    try:
        check_argv(argv)
        from fastpose.environment import check_environment

        check_environment()
        result = app(args=argv, prog_name="fastpose", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # a bad option or argument (click's UsageError): one line
        from fastpose.text import visible

        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `fastpose`: the help, as --help shows it
            print(exc.format_message())  # type: ignore[attr-defined]
            return 0

        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {visible(exc.format_message(), newlines=False)}{where}", file=sys.stderr)  # type: ignore[attr-defined]
        return getattr(exc, "exit_code", 2)
    except Exception as exc:
        error = as_user_error(exc)
        if error is None or os.environ.get("FASTPOSE_DEBUG"):
            raise
        from fastpose.text import visible

        print(f"error: {visible(error, newlines=False)}", file=sys.stderr)
        return error.exit_code
    return 0


def main() -> None:
    """Console-script entry point (``fastpose``): see ``run``."""
    sys.exit(run())
