"""``fastpose ui``: serve the journal to browsers with uvicorn until Ctrl-C (or SIGTERM).

Checked before anything is served, each a one-line error (exit 2): the address (an IP address or
``localhost``), the port (0 to 65535; 0 picks a free one), the token (any address but loopback needs one,
``--token`` or ``$FASTPOSE_UI_TOKEN``: 16 to 256 characters from ``A-Z a-z 0-9 - . _ ~ + / =``), and that the
port is free. The journal is not opened here: a journal that is missing, locked, of another revision or
unreachable is said on the pages (and once on stderr at start), and the pages work once it is readable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import sys
from typing import Any

from fastpose.errors import FastposeError

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")
TOKEN_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"


def check_address(host: str, port: int, token: str | None) -> tuple[bool, socket.AddressFamily]:
    """``(loopback, address family)`` of ``--host``; FastposeError for a bad host, port or token."""
    if not 0 <= port <= 65535:
        raise FastposeError(f"--port {port}: a port from 1 to 65535 (0: any free port)")
    if host == "localhost":
        address = ipaddress.ip_address("127.0.0.1")
    else:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise FastposeError(f"--host {host!r}: give an IP address of this machine (127.0.0.1, 0.0.0.0 for "
                                "every interface, ::) or localhost") from None
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise FastposeError(f"the token must be 16 to 256 characters from A-Z a-z 0-9 - . _ ~ + / = "
                            f"(got {len(token)} characters); make one with: {TOKEN_HINT}")
    if not address.is_loopback and token is None:
        raise FastposeError(f"--host {host} serves the journal to the network: give --token (or $FASTPOSE_UI_TOKEN), "
                            f"e.g. --token $({TOKEN_HINT})")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return address.is_loopback, family


def bind(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A listening socket on ``host:port``, or one line saying why not."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1" if host == "localhost" else host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == 98:  # EADDRINUSE
            raise FastposeError(f"port {port} on {host} is in use (another fastpose ui?); choose another with "
                                "--port") from None
        raise FastposeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8765, token: str | None = None, open_browser: bool = False,
          url: str | None = None) -> int:
    """Serve the journal at ``url`` (default ``$FASTPOSE_JOURNAL_URL``, else the home's SQLite file) until
    Ctrl-C or SIGTERM; returns the exit code (0)."""
    import logging

    from fastpose.journal.db import journal_url
    from fastpose.screens.web.app import Settings, create_app

    token = token if token is not None else (os.environ.get("FASTPOSE_UI_TOKEN") or None)
    loopback, family = check_address(host, port, token)
    from fastpose.environment import positive_seconds

    poll_s = positive_seconds("FASTPOSE_UI_POLL_S", 5.0)
    sock = bind(host, port, family)
    port = sock.getsockname()[1]
    settings = Settings(url=url or journal_url(), token=token, port=port, loopback=loopback, poll_s=poll_s)
    app = create_app(settings)
    _log_to_stderr(logging.getLogger("fastpose.ui"))

    shown_host = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    if shown_host in ("0.0.0.0", "[::]"):
        shown_host = socket.gethostname()
    address = f"http://{shown_host}:{port}/"
    link = address + (f"?token={token}" if token else "")
    where = app.journal.where
    print(f"fastpose ui: the journal {where}, read-only, at {address}" + (" (token required)" if token else ""),
          flush=True)
    if token:
        print(f"open {link}", flush=True)
    print("Ctrl-C stops it", flush=True)
    _warn_if_unreadable(app.journal)
    if open_browser:
        import threading
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(link,), daemon=True).start()
    return _run(app, sock)


def _run(app: Any, sock: socket.socket) -> int:
    import uvicorn

    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                            server_header=False, proxy_headers=True, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down; these handlers take it quietly.
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
        sock.close()
        app.journal.close()
    print("fastpose ui stopped", flush=True)
    return 0


def _log_to_stderr(logger: Any) -> None:
    import logging

    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own lines: one per failure, no tracebacks
        logging.getLogger(name).addHandler(handler if not logger.handlers else logger.handlers[0])
        logging.getLogger(name).setLevel(logging.WARNING)


def _warn_if_unreadable(journal: Any) -> None:
    """One line on stderr when the journal cannot be read yet (the pages say so too)."""
    from fastpose.text import visible

    try:
        journal.reader().close()
    except FastposeError as exc:
        print(f"warning: {visible(str(exc), newlines=False)}", file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - the pages say what it is
        from fastpose.journal.failures import as_user_error

        error = as_user_error(exc)
        print(f"warning: {visible(str(error) if error else type(exc).__name__, newlines=False)}", file=sys.stderr,
              flush=True)
