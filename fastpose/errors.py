"""User-facing errors: one clear line and exit code 2, never a traceback (unless FASTPOSE_DEBUG=1)."""


class FastposeError(Exception):
    """An error the user can fix (bad input, unknown run, missing file). Message is one line."""

    exit_code = 2
