"""``fastpose ui``: the journal in the browser (read-only), for this machine or, with a token, the lab."""

from typing import Annotated, Optional

import typer

from fastpose.cli.app import app, opt


@app.command()
def ui(
    host: Annotated[str, opt("Address to listen on: 127.0.0.1 (this machine only, the default); 0.0.0.0 or "
                             "another address serves the lab and needs --token.")] = "127.0.0.1",
    port: Annotated[int, opt("Port to listen on (0: any free port).")] = 8765,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser too.")] = False,
    token: Annotated[Optional[str], opt("Token every request must carry (default $FASTPOSE_UI_TOKEN); required "
                                        "for any --host but loopback.")] = None,
) -> int:
    """Serve the journal to browsers, read-only: runs, one run, compare, sweeps (each also as JSON under /api)."""
    from fastpose.screens.web.server import serve

    return serve(host=host, port=port, token=token, open_browser=open_browser)
