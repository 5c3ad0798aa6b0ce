"""The web view's ASGI application (Starlette): every page of the journal, and its JSON twin, over a reader
that cannot write (``fastpose.journal.access.ReadOnlyJournal``), one reader per request.

| path                                   | page (HTML)                              | JSON twin                          |
| -------------------------------------- | ---------------------------------------- | ---------------------------------- |
| ``/``                                  | runs: the daily log, filters, sort, pages | ``/api/runs`` (``journal --json``) |
| ``/runs/{id}``                         | one run (``journal show``), curves, pose panel | ``/api/runs/{id}``             |
| ``/runs/{id}/live``                    | the part a running run's page refreshes  | ``/api/runs/{id}/history``         |
| ``/runs/{id}/poses.png``               | newest ``val/poses`` image of its TensorBoard events |                        |
| ``/runs/{id}/evaluations/{eid}.png``   | that evaluation's PR curves (the file the journal names) |                    |
| ``/compare?run=A&run=B``               | ``compare A B``, curves overlaid         | ``/api/compare?run=A&run=B``       |
| ``/sweeps``, ``/sweeps/{id}``          | ``journal sweeps``; one sweep: cells, groups, tuning grid | ``/api/sweeps``, ``/api/sweeps/{id}`` |

``Guard`` wraps it all, before any route: only GET and HEAD (else 405); on a loopback address without a
token, only requests that name that address in ``Host`` (a web page elsewhere cannot read the journal through
DNS rebinding); with a token, the token on every request (cookie, ``Authorization: Bearer``, or ``?token=``,
which sets the cookie and redirects to the URL without it); on every response a Content-Security-Policy
without inline script or style, ``nosniff``, no referrer, no framing, no caching of pages; the time the
request took (``Server-Timing``) and one access line (method, path, status, ms; never the query, which may
hold the token). Errors: an unknown run, sweep or page is a 404 page; bad query values a 400 page with the
CLI's one line; a journal that is missing, locked, damaged, of another revision or unreachable a 503 page
saying so; anything else a 500 page and one log line (the traceback only under ``FASTPOSE_DEBUG=1``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode

from fastpose.errors import FastposeError

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")
POLL_S = 5.0  # how often a running run's page asks for its new metrics

log = logging.getLogger("fastpose.ui")


@dataclass(frozen=True)
class Settings:
    url: str | None = None  # the journal (default: $FASTPOSE_JOURNAL_URL, else the home's SQLite file)
    token: str | None = None
    port: int = 8765
    loopback: bool = True  # bound to a loopback address: without a token, Host must name it
    poll_s: float = POLL_S


def create_app(settings: Settings) -> Any:
    """The application: Starlette routes wrapped in ``Guard``."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from fastpose.journal.access import ReadOnlyJournal

    journal = ReadOnlyJournal(settings.url)
    web = Web(journal, settings)
    routes = [
        Route("/", web.page(web.runs)),
        Route("/runs/{run_id:int}", web.page(web.run)),
        Route("/runs/{run_id:int}/live", web.page(web.live)),
        Route("/runs/{run_id:int}/poses.png", web.page(web.poses)),
        Route("/runs/{run_id:int}/evaluations/{eval_id:int}.png", web.page(web.evaluation_png)),
        Route("/compare", web.page(web.compare)),
        Route("/sweeps", web.page(web.sweeps)),
        Route("/sweeps/{sweep}", web.page(web.sweep)),
        Route("/api/runs", web.page(web.api_runs, api=True)),
        Route("/api/runs/{run_id:int}", web.page(web.api_run, api=True)),
        Route("/api/runs/{run_id:int}/history", web.page(web.api_history, api=True)),
        Route("/api/compare", web.page(web.api_compare, api=True)),
        Route("/api/sweeps", web.page(web.api_sweeps, api=True)),
        Route("/api/sweeps/{sweep}", web.page(web.api_sweep, api=True)),
        Route("/static/{name}", web.static),
    ]

    async def not_found(request: Any, exc: Any) -> Any:
        return web.error(request, 404, "Not found", f"There is no page at {request.url.path}.",
                         api=request.url.path.startswith("/api/"))

    starlette = Starlette(routes=routes, exception_handlers={404: not_found})
    starlette.state.journal = journal
    return Guard(starlette, settings, web)


# ----------------------------------------------------------------------------- the guard around every request
class Guard:
    """Method, Host and token checks before any route; security headers, timing and one access line after."""

    def __init__(self, app: Any, settings: Settings, web: Web) -> None:
        self.app, self.settings, self.web = app, settings, web
        self.cookie = f"fastpose_token_{settings.port}"
        self.journal = web.journal

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                for key, value in SECURITY_HEADERS.items():
                    headers.append((key.encode(), value.encode()))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                ms = (time.perf_counter() - start) * 1000
                headers.append((b"server-timing", f"app;dur={ms:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            refused = self.refuse(scope)
            if refused is not None:
                await refused(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - never a traceback in the browser or the log
            _log_failure(scope, exc)
            if not state["started"]:
                response = self.web.error(None, 500, "Internal error", "The server failed on this page; its log has one "
                                          "line on why.", api=scope.get("path", "").startswith("/api/"))
                await response(scope, receive, send_with_headers)
        ms = (time.perf_counter() - start) * 1000
        client = (scope.get("client") or ("-",))[0]
        log.info("%s %s %s %s %.1f ms", client, scope.get("method"), _printable(scope.get("path", "")), state["status"], ms)

    def refuse(self, scope: dict) -> Any:
        """A response that ends the request before any route, or None to go on."""
        from starlette.responses import RedirectResponse

        api = scope.get("path", "").startswith("/api/")
        method = scope.get("method")
        if method not in ("GET", "HEAD"):
            response = self.web.error(None, 405, "Method not allowed",
                                      f"The web view only reads the journal: {_printable(method)} is not allowed.", api=api)
            response.headers["allow"] = "GET, HEAD"
            return response
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = self.settings.token
        if token is None:
            if self.settings.loopback and not _loopback_host(headers.get("host", "")):
                return self.web.error(None, 400, "Unexpected host",
                                      f"This server answers on http://127.0.0.1:{self.settings.port}/ only (the request "
                                      f"named {_printable(headers.get('host', 'no host'))}). To serve it under another "
                                      "name, start it with --token.", api=api)
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given:
            if not _same(given[-1], token):
                return self.web.error(None, 401, "Token required", "That token is not this server's.", api=api,
                                      login=True)
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response = RedirectResponse(scope.get("path", "/") + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(self.cookie, token, httponly=True, samesite="strict", path="/")
            return response
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and _same(auth[7:].strip(), token):
            return None
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            cookie = SimpleCookie()
        if self.cookie in cookie and _same(cookie[self.cookie].value, token):
            return None
        response = self.web.error(None, 401, "Token required", "This journal is shared with a token: open the link "
                                  "the server printed, or enter the token.", api=api, login=True)
        response.headers["www-authenticate"] = 'Bearer realm="fastpose"'
        return response


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def _loopback_host(host: str) -> bool:
    name = host.strip().lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    elif ":" in name:
        name = name.rsplit(":", 1)[0]
    return name in LOOPBACK_NAMES


def _printable(text: Any) -> str:
    from fastpose.text import visible

    return visible(str(text)[:300], newlines=False)


def _log_failure(scope: dict, exc: BaseException) -> None:
    """One line for a failure that is a bug (the traceback too under FASTPOSE_DEBUG=1)."""
    line = f"error: {scope.get('method')} {_printable(scope.get('path', ''))} failed: {type(exc).__name__}: " \
           f"{_printable(str(exc).splitlines()[0] if str(exc).strip() else '')}"
    if os.environ.get("FASTPOSE_DEBUG"):
        log.error(line, exc_info=exc)
    else:
        log.error(line + " (FASTPOSE_DEBUG=1 logs the traceback)")


# ----------------------------------------------------------------------------- pages
class Web:
    """The handlers: each gets the request and one read-only reader (``page`` opens and closes it)."""

    def __init__(self, journal: Any, settings: Settings) -> None:
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        self.journal, self.settings = journal, settings
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.static_files: dict[str, tuple[bytes, str]] = {}
        for path in sorted((HERE / "static").iterdir()):
            if path.suffix in STATIC_TYPES:
                self.static_files[path.name] = (path.read_bytes(), STATIC_TYPES[path.suffix])
        version = hashlib.sha256(b"".join(data for data, _ in self.static_files.values())).hexdigest()[:10]
        self.env.globals.update(static=lambda name: f"/static/{name}?v={version}", journal=journal.where)

    # -- plumbing
    def page(self, handler: Callable, api: bool = False) -> Callable:
        """A Starlette endpoint (a plain function: Starlette runs it in its thread pool) around ``handler``:
        one reader for the request, errors as pages (``error_for``)."""

        def endpoint(request: Any) -> Any:
            try:
                reader = self.journal.reader()
            except Exception as exc:  # noqa: BLE001 - sorted in error_for
                return self.error_for(request, exc, api)
            try:
                return handler(request, reader)
            except Exception as exc:  # noqa: BLE001 - sorted in error_for
                return self.error_for(request, exc, api)
            finally:
                reader.close()

        endpoint.__name__ = handler.__name__
        return endpoint

    def html(self, template: str, status: int = 200, **context: Any) -> Any:
        from starlette.responses import HTMLResponse

        return HTMLResponse(self.env.get_template(template).render(**context), status_code=status)

    def json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
        from starlette.responses import Response

        from fastpose.text import strict_json

        return Response(strict_json(data), status_code=status, media_type="application/json", headers=headers)

    def error(self, request: Any, status: int, title: str, message: str, *, api: bool = False, hint: str | None = None,
              login: bool = False) -> Any:
        if api:
            return self.json({"error": message, "status": status}, status=status)
        return self.html("error.html", status=status, title=title, message=message, hint=hint, login=login,
                         status_code=status)

    def error_for(self, request: Any, exc: Exception, api: bool) -> Any:
        """The page for an exception: what the user can do about it, never a traceback."""
        from fastpose.errors import JournalBusyError
        from fastpose.journal.access import JournalMissingError, JournalOutdatedError
        from fastpose.journal.db import JournalError
        from fastpose.journal.failures import as_user_error
        from fastpose.journal.reader import UnknownRunError
        from fastpose.journal.sweeps import UnknownSweepError

        message = str(exc)
        if isinstance(exc, (UnknownRunError, UnknownSweepError)):
            return self.error(request, 404, "Not found", message, api=api)
        if isinstance(exc, JournalOutdatedError):
            return self.error(request, 503, "The journal needs an upgrade", message, api=api,
                              hint="Any fastpose command upgrades it (e.g. fastpose journal), then reload this page.")
        if isinstance(exc, JournalMissingError):
            return self.error(request, 503, "No journal yet", message, api=api,
                              hint="The first run creates it; this page shows it once it is there.")
        error = exc if isinstance(exc, FastposeError) else as_user_error(exc)
        if isinstance(error, JournalBusyError):
            response = self.error(request, 503, "Journal busy", str(error), api=api,
                                  hint="Another process holds the journal locked; reload in a moment.")
            response.headers["retry-after"] = "2"
            return response
        if isinstance(error, JournalError) or (error is not None and not isinstance(exc, FastposeError)):
            return self.error(request, 503, "The journal cannot be read", str(error), api=api)
        if error is not None:
            return self.error(request, 400, "Cannot show this", message, api=api)
        scope = request.scope if request is not None else {}
        _log_failure(scope, exc)
        return self.error(request, 500, "Internal error", "The server failed on this page; its log has one line on "
                          "why.", api=api)

    def static(self, request: Any) -> Any:
        from starlette.responses import Response

        found = self.static_files.get(request.path_params["name"])
        if found is None:
            return self.error(request, 404, "Not found", f"There is no page at {request.url.path}.")
        data, media_type = found
        return Response(data, media_type=media_type, headers={"cache-control": "max-age=86400"})

    # -- runs
    def _runs(self, request: Any, reader: Any) -> tuple[Any, dict[str, Any]]:
        from fastpose.screens.web.pages import RunsQuery, runs_page

        q = RunsQuery.parse(request.query_params)
        return q, runs_page(reader, q)

    def runs(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import runs_context

        q, data = self._runs(request, reader)
        return self.html("runs.html", **runs_context(data), nav="runs", api=q.url("/api/runs"))

    def api_runs(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import runs_links

        q, data = self._runs(request, reader)
        headers = {"x-total-count": str(data["page"].total), "link": runs_links(q, data["page"], "/api/runs")}
        return self.json(data["log"].to_json(), headers=headers)

    # -- one run
    def run(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import run_context, run_detail

        detail = run_detail(reader, request.path_params["run_id"])
        context = run_context(reader, detail)
        return self.html("run.html", **context, nav="runs", poll_s=self.settings.poll_s,
                         api=f"/api/runs/{detail.run.id}")

    def live(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import live_context, run_detail

        detail = run_detail(reader, request.path_params["run_id"])
        return self.html("live.html", live=live_context(detail), poll_s=self.settings.poll_s)

    def api_run(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import run_detail, run_json

        return self.json(run_json(reader, run_detail(reader, request.path_params["run_id"])))

    def api_history(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.format import json_num

        run = reader.get_run(request.path_params["run_id"])
        name = request.query_params.get("metric") or None
        out: dict[str, list] = {}
        for point in reader.metric_history(run.id, name):
            out.setdefault(point.name, []).append([point.epoch, point.step, json_num(point.value)])
        return self.json(out)

    def poses(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.files import pose_panel

        run = reader.get_run(request.path_params["run_id"])
        return self._png(request, pose_panel(run.run_dir), f"run #{run.id} has no pose panel on this machine")

    def evaluation_png(self, request: Any, reader: Any) -> Any:
        from fastpose.journal.evaluations import list_evaluations
        from fastpose.screens.web.files import read_png

        run = reader.get_run(request.path_params["run_id"])
        found = [e for e in list_evaluations(reader, run.id) if e.id == request.path_params["eval_id"]]
        if not found:
            return self.error(request, 404, "Not found", f"run #{run.id} has no evaluation "
                              f"{request.path_params['eval_id']}")
        return self._png(request, read_png(found[0].plot_path), f"the PR curves of evaluation {found[0].id} are not on "
                         "this machine")

    def _png(self, request: Any, data: bytes | None, missing: str) -> Any:
        from starlette.responses import Response

        if data is None:
            return self.error(request, 404, "Not found", missing)
        return Response(data, media_type="image/png")

    # -- compare
    def compare(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import compare_context, compare_refs, load_compare

        refs = compare_refs(request.query_params)
        per_class = request.query_params.get("per_class") == "1"
        cmp = load_compare(reader, refs)
        query = urlencode([("run", r) for r in refs])
        return self.html("compare.html", **compare_context(cmp, per_class), nav="compare", query=query,
                         api=f"/api/compare?{query}")

    def api_compare(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import compare_refs, load_compare

        return self.json(load_compare(reader, compare_refs(request.query_params)).to_json())

    # -- sweeps
    def sweeps(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.sweep import sweep_overview

        return self.html("sweeps.html", rows=sweep_overview(reader), nav="sweeps", api="/api/sweeps")

    def api_sweeps(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.sweep import sweep_overview

        return self.json(sweep_overview(reader))

    def sweep(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import sweep_context, sweep_page

        tuning = request.query_params.get("tuning") == "1"
        data = sweep_page(reader, request.path_params["sweep"], tuning=tuning)
        name = data["record"].name
        from urllib.parse import quote

        return self.html("sweep.html", **sweep_context(data), nav="sweeps",
                         api=f"/api/sweeps/{quote(name, safe='')}" + ("?tuning=1" if tuning else ""))

    def api_sweep(self, request: Any, reader: Any) -> Any:
        from fastpose.screens.web.pages import sweep_json, sweep_page

        tuning = request.query_params.get("tuning") == "1"
        return self.json(sweep_json(sweep_page(reader, request.path_params["sweep"], tuning=tuning)))
