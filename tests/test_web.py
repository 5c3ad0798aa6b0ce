"""The web view (``fastpose ui``) over HTTP: a real server process on a real journal (the golden journal of
tests/golden plus runs written here), its pages and JSON twins, and what it refuses.

Each page's JSON twin has the CLI's ``--json`` shape (compared with the CLI's own output on a copy of the
journal); the server never writes the journal (its bytes are unchanged after every page, a lost run is shown
lost and left running); older and newer journals, a missing, damaged or locked one each get their page; only
GET and HEAD; a token on every request when one is set, and a Host check without one; security headers on
every response; user text escaped; files only through what the journal names; never a traceback in a page or
the server's log. The browser's view of the same is tests/test_web_browser.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from web_server import HTML_INJECTIONS, UiServer, build_lab, png_file, request, ui_env

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "lab-token-0123456789abcdef"
PAGES = ["/", "/?per=100", "/?sort=metric:val/10deg", "/?sort=duration&order=asc", "/?status=lost", "/?tag=paper",
         "/?sweep=ls", "/?where=loss.name=mse", "/?since=2026-11-28", "/runs/1", "/runs/2", "/runs/3", "/runs/2/live",
         "/compare?run=1&run=2", "/compare?run=5&run=6&run=7&run=8&per_class=1", "/sweeps", "/sweeps/ls",
         "/sweeps/tuned", "/sweeps/tuned?tuning=1", "/api/sweeps/tuned",
         "/api/runs", "/api/runs/2", "/api/runs/2/history", "/api/compare?run=1&run=2", "/api/sweeps",
         "/api/sweeps/ls", "/runs/2/poses.png", "/runs/2/evaluations/1.png"]


def _digest(home: Path) -> dict[str, str]:
    """The journal's bytes: the database file, the write-ahead log's (empty or absent: nothing written; a
    reader of a WAL journal creates it, and the ``-shm`` index, which holds no data) and the backups (none)."""
    out = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(home.glob("fastpose.db*"))
           if not p.name.endswith(("-shm", ".lock"))}
    wal = home / "fastpose.db-wal"
    if wal.exists() and wal.stat().st_size == 0:
        del out[wal.name]
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("web") / "home"
    ids = build_lab(home)
    before = _digest(home)
    server = UiServer(ui_env(home))
    yield server, home, ids, before
    assert server.stop() == 0
    assert "Traceback" not in server.log, server.log


# ------------------------------------------------------------------------------------------- the command
def test_ui_prints_its_address_and_stops_cleanly_on_ctrl_c_and_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    build_lab_min(home)
    for sig in (signal.SIGINT, signal.SIGTERM):
        server = UiServer(ui_env(home))
        assert re.match(r"fastpose ui: the journal .*fastpose\.db, read-only, at http://127\.0\.0\.1:\d+/$",
                        server.out[0].strip()), server.out
        assert server.get("/").status == 200
        assert server.stop(sig) == 0
        assert "fastpose ui stopped" in "".join(server.out)
        assert "Traceback" not in server.log and "error" not in server.log.lower(), server.log


def build_lab_min(home: Path) -> None:
    from fastpose.journal.store import JournalStore

    home.mkdir(parents=True)
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        store.finish(store.start_run(name="ONE", label="26-12-01/08-00-ONE-SYNTHETIC-resnet18-scratch").id)


@pytest.mark.parametrize("args,words", [
    (["--host", "0.0.0.0"], ["--host 0.0.0.0 serves the journal to the network", "--token"]),
    (["--host", "192.0.2.7"], ["--token"]),
    (["--host", "0.0.0.0", "--token", "short"], ["16 to 256 characters"]),
    (["--host", "127.0.0.1", "--token", "x" * 20 + "\u00e9"], ["16 to 256 characters"]),
    (["--host", "lab.example.org"], ["give an IP address"]),
    (["--port", "70000"], ["--port 70000"]),
])
def test_bad_address_or_token_is_one_line_and_nothing_is_served(tmp_path: Path, args: list[str], words: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "fastpose", "ui", *args], env=ui_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert proc.stdout == "" and not (tmp_path / "home").exists()


def test_a_port_in_use_is_one_line(lab) -> None:
    server, home, _, _ = lab
    port = server.base.rsplit(":", 1)[1]
    proc = subprocess.run([sys.executable, "-m", "fastpose", "ui", "--port", port], env=ui_env(home),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is in use (another fastpose ui?); choose another with --port"), proc.stderr


def test_ui_imports_no_torch_before_serving() -> None:
    code = ("import sys; from fastpose.cli import app; import fastpose.screens.web.app, fastpose.screens.web.server; "
            "bad = [m for m in ('torch', 'pytorch_lightning', 'lightning') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------------------------------- pages
def test_every_page_answers_and_the_journal_is_never_written(lab) -> None:
    server, home, ids, before = lab
    for path in PAGES + [f"/runs/{ids['gone']}", f"/runs/{ids['inj0']}", f"/runs/{ids['alive']}/live"]:
        for method in ("GET", "HEAD"):
            resp = request(server.base, method, path)
            assert resp.status == 200, (path, method, resp.status, resp.body[:500])
    assert _digest(home) == before  # not one byte: no migration, no mark_lost, no WAL written
    status = sqlite3.connect(f"file:{home / 'fastpose.db'}?mode=ro", uri=True).execute(
        "SELECT status FROM runs WHERE id = ?", (ids["gone"],)).fetchone()[0]
    assert status == "running"  # shown lost (below), never marked


def test_runs_page_is_the_daily_log_with_lost_runs_shown_lost(lab) -> None:
    server, _, ids, _ = lab
    page = server.get("/").text
    assert "2026-11-28 Saturday" in page and "2026-11-27 Friday" in page
    assert "AGG_QLOSS_CONT" in page and "✗ RuntimeError: CUDA error: out of memory" in page
    assert "✎ why this run: the mse baseline again" in page and "GPU node down, moved to CPU" in page
    row = re.search(rf'<tr class="run status-(\w+)" data-run="{ids["gone"]}">', page)
    assert row and row.group(1) == "lost", row
    assert re.search(rf'data-run="{ids["alive"]}"', page) and f'status-running" data-run="{ids["alive"]}"' in page
    lost = json.loads(server.get("/api/runs?status=lost").body)
    assert [r["id"] for r in lost] == [ids["gone"]] and lost[0]["status"] == "lost"
    assert "is gone" in lost[0]["error_message"]
    running = json.loads(server.get("/api/runs?status=running").body)
    assert [r["id"] for r in running] == [ids["alive"]]


def test_runs_page_filters_sorts_and_pages(lab) -> None:
    server, _, ids, _ = lab
    def api(query: str) -> list[dict]:
        resp = server.get("/api/runs" + query)
        assert resp.status == 200, resp.body
        return json.loads(resp.body)

    everything = api("?per=100")
    assert len(everything) == len(ids) == int(server.get("/api/runs?per=100").headers["x-total-count"])
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything),
                                                   key=lambda i: next(x["started"] for x in everything if x["id"] == i),
                                                   reverse=True)
    assert {r["name"] for r in api("?sweep=ls")} == {f"LS-{l}-s{s}" for l in ("mse", "qloss") for s in range(3)}
    assert [r["id"] for r in api("?tag=paper")] == [ids["cont"], ids["agg"]]
    assert {r["id"] for r in api("?where=loss.name=qloss&sweep=ls")} == {ids[f"ls-qloss-{s}"] for s in range(3)}
    assert [r["name"] for r in api("?name=NEGLOG")] == ["NEGLOG"]
    ranked = api("?sort=metric:val/10deg&order=desc")
    finals = [r["final_metrics"].get("val/10deg") for r in ranked]
    have = [f for f in finals if f is not None]
    assert have == sorted(have, reverse=True) and finals[: len(have)] == have  # runs without it come last
    assert api("?sort=id&order=asc")[0]["id"] == 1
    resp = server.get("/api/runs?status=completed&sort=id&order=asc")
    link = resp.headers["link"]
    assert 'rel="first"' in link and 'rel="last"' in link and 'rel="next"' not in link
    html = server.get("/?sort=metric:val/10deg").text
    assert "2026-11-28 Saturday" not in html  # day groups only in time order


@pytest.mark.parametrize("query,words", [
    ("?status=finished", "status 'finished': choose one of"), ("?since=yesterday", "--since 'yesterday'"),
    ("?per=7", "per 7: a page holds 50 or 100 runs"), ("?page=0", "page '0'"), ("?sort=colour", "sort 'colour'"),
    ("?where=lr=1", "unknown config key 'lr'"), ("?tag=a%20b%20%3Cx%3E", "invalid tag"),
    ("?name=..%2Fetc", "invalid"),
])
def test_bad_filters_are_a_400_page_with_the_clis_line(lab, query: str, words: str) -> None:
    server, _, _, _ = lab
    page = server.get("/" + query)
    assert page.status == 400 and words in page.text.replace("&#39;", "'"), page.text
    api = server.get("/api/runs" + query)
    assert api.status == 400 and words in json.loads(api.body)["error"]


def test_unknown_run_sweep_or_page_is_a_404_page(lab) -> None:
    server, _, ids, _ = lab
    for path in ("/runs/999", "/runs/99999999999999999999", "/runs/abc", "/sweeps/nope", "/nope", "/runs/2/nope",
                 "/compare?run=1&run=NOPE", "/runs/1/evaluations/1.png", "/runs/2/evaluations/7.png",
                 "/runs/1/poses.png", "/static/app.py", "/static/..%2Fapp.py", "/static/%2e%2e/app.py",
                 "/api/runs/999", "/api/sweeps/nope"):
        resp = server.get(path)
        assert resp.status == 404, (path, resp.status)
        assert ("application/json" in resp.headers["content-type"]) == path.startswith("/api/"), path
        if not path.startswith("/api/"):
            assert "<h1>Not found</h1>" in resp.text, path
    assert "closest: AGG_QLOSS" in server.get("/compare?run=1&run=AGG_QLOS").text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"])
def test_only_get_and_head(lab, method: str) -> None:
    server, home, _, before = lab
    for path in ("/", "/runs/1", "/api/runs", "/static/fastpose.css", "/nope"):
        resp = request(server.base, method, path, body=b"x=1")
        assert resp.status == 405 and resp.headers["allow"] == "GET, HEAD", (method, path, resp.status)
    assert _digest(home) == before


def test_pages_and_json_twins_have_the_clis_shapes(lab, tmp_path: Path) -> None:
    """``/api/runs`` is ``journal --json``, ``/api/compare`` is ``compare --json``, ``/api/sweeps`` is
    ``journal sweeps --json`` and the sweep's groups ``compare --sweep --json`` (the CLI runs on a copy: it
    marks lost runs, a write)."""
    server, home, ids, _ = lab
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(home / "fastpose.db", copy / "fastpose.db")
    env = ui_env(copy, COLUMNS="200")

    def cli(*args: str):  # noqa: ANN202
        proc = subprocess.run([sys.executable, "-m", "fastpose", *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    ours = json.loads(server.get("/api/runs").body)
    theirs = cli("journal", "--json", "--limit", "50")
    assert ours == theirs
    assert json.loads(server.get("/api/compare?run=1&run=2&run=NEGLOG").body) == cli("compare", "1", "2", "NEGLOG", "--json")
    assert json.loads(server.get("/api/sweeps").body) == cli("journal", "sweeps", "--json")
    sweep = json.loads(server.get("/api/sweeps/ls").body)
    assert sweep["groups"] == cli("compare", "--sweep", "ls", "--json")
    assert [c["state"] for c in sweep["cells"]] == ["completed"] * 6 and sweep["tuning"] is None
    run = json.loads(server.get("/api/runs/2").body)
    listed = next(r for r in theirs if r["id"] == 2)
    assert {k: run[k] for k in listed} == listed  # the run object, then journal show's details
    assert run["config_not_default"][0]["key"] == "loss.name" and run["git"]["branch"] == "exp/mse"
    assert [c["file"] for c in run["checkpoints"]] == ["best-epoch011.ckpt", "last.ckpt", "epoch004.ckpt"]
    assert run["history"]["val/10deg"][0] == [4, 0.054] and len(run["history"]["val/10deg"]) == 8
    history = json.loads(server.get("/api/runs/2/history?metric=val/loss").body)
    assert list(history) == ["val/loss"] and history["val/loss"][-1] == [11, 480, 1.0]


def test_run_page_shows_what_journal_show_shows_with_curves_and_pictures(lab) -> None:
    server, home, _, _ = lab
    page = server.get("/runs/2").text
    for text in ("AGG_QLOSS_CONT", "3 values not the default", "loss.name", "(default &#34;qloss&#34;)", "exp/mse",
                 "Try MSE on the aggregated loss", "fastpose/pose/losses.py", "untracked: notes.txt",
                 "best-epoch011.ckpt", "same file as best-epoch011.ckpt", "Per class (final)", "IoU25",
                 "resumed from <a href=\"/runs/1\">run #1</a>"):
        assert text in page, text
    assert page.count('<svg class="chart"') >= 10 and page.count('<g class="series"') == page.count('<svg class="chart"')
    assert '<img id="poses" src="/runs/2/poses.png?epoch=11"' in page and 'src="/runs/2/evaluations/1.png"' in page
    panel = server.get("/runs/2/poses.png")
    assert panel.status == 200 and panel.headers["content-type"] == "image/png"
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(panel.body)).size == (64, 48)  # the newest of the two logged
    pr = server.get("/runs/2/evaluations/1.png")
    assert pr.body == (home / "runs" / "x" / "pr-test-best.png").read_bytes()
    crashed = server.get("/runs/3").text
    assert "RuntimeError: CUDA error: out of memory" in crashed and 'id="traceback"' in crashed


def test_files_are_only_those_the_journal_names_as_pngs(lab, tmp_path: Path) -> None:
    """An evaluation whose plot path is no PNG (a secret file, a link to one, a directory) is not served."""
    from fastpose.journal.evaluations import record_evaluation
    from fastpose.journal.store import JournalStore

    home = tmp_path / "home"
    build_lab_min(home)
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    link = tmp_path / "link.png"
    link.symlink_to(real_png := tmp_path / "real.png")
    png_file(real_png)
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        for plot in (secret, link, tmp_path, "/dev/zero", real_png):
            record_evaluation(store, 1, checkpoint="best", split="val", dataset="synthetic", data_root=None,
                              num_images=1, metrics={"10deg": 0.5}, plot_path=str(plot))
    server = UiServer(ui_env(home))
    try:
        assert [server.get(f"/runs/1/evaluations/{i}.png").status for i in range(1, 6)] == [404, 404, 404, 404, 200]
        assert b"password" not in b"".join(server.get(f"/runs/1/evaluations/{i}.png").body for i in range(1, 5))
    finally:
        assert server.stop() == 0


def test_compare_and_sweep_pages(lab) -> None:
    server, _, _, _ = lab
    cmp = server.get("/compare?run=1&run=2").text
    assert "primary</b> val/10deg (higher is better)" in cmp and "#2 AGG_QLOSS_CONT</b> with best 0.4321" in cmp
    charts = re.findall(r'<svg class="chart".*?</svg>', cmp, re.S)
    assert charts and all(c.count('<g class="series"') == 2 for c in charts)
    assert "train.epochs" in cmp and "other commit vs #1" in cmp
    assert "stroke-dasharray" in cmp  # run 2 continues run 1: its parent's epochs dashed
    sweep = server.get("/sweeps/ls").text
    assert "qloss beats mse on val/10deg" in sweep and "Welch" in sweep
    assert sweep.count('<tr class="status-completed">') == 6
    assert all(c.count('<g class="series"') == 2 for c in re.findall(r'<svg class="chart".*?</svg>', sweep, re.S))
    assert "ls" in server.get("/sweeps").text and 'href="/sweeps/ls"' in server.get("/sweeps").text


def test_a_tuned_sweep_shows_its_tuning_grid_and_both_stages(lab) -> None:
    server, _, _, _ = lab
    page = server.get("/sweeps/tuned").text
    grid = page.split('id="grid"')[1].split("</table>")[0]
    assert grid.count("<tr") == 5 and grid.count('class="chosen"') == 2  # header + 4 grid points, 2 chosen
    assert re.search(r'<tr class="chosen"><td>loss.name=qloss</td><td class="num">0.3</td>', grid), grid
    assert re.search(r'<tr class="chosen"><td>loss.name=mse</td><td class="num">0.1</td>', grid), grid
    assert "qloss" in page and "left out: 4 tuning cells" in page and 'href="/sweeps/tuned?tuning=1"' in page
    assert page.count('<tr class="status-completed">') == 8
    tuning = server.get("/sweeps/tuned?tuning=1").text
    assert "Groups (tuning stage)" in tuning and "loss.name=mse, loss.rot_weight=0.1" in tuning
    data = json.loads(server.get("/api/sweeps/tuned").body)
    assert {p["chosen"]["loss.rot_weight"] for p in data["tuning"]} == {0.1, 0.3}
    assert len(data["groups"]["groups"]) == 2 and data["sweep"]["sweep"] == "tuned"


# ------------------------------------------------------------------------------------------- safety
def test_every_response_carries_the_security_headers_and_pages_have_no_inline_script(lab) -> None:
    server, _, ids, _ = lab
    for path in PAGES + ["/nope", "/runs/999", "/static/fastpose.js", "/?status=x", f"/runs/{ids['inj0']}"]:
        resp = server.get(path)
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp, path
        assert resp.headers["x-content-type-options"] == "nosniff" and resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer" and "server-timing" in resp.headers
        if resp.headers["content-type"].startswith("text/html"):
            html = resp.text
            assert all('src="/static/' in tag for tag in re.findall(r"<script[^>]*>", html)), path
            assert not re.search(r"<[a-z]+[^>]*\son[a-z]+=", html), path  # no event-handler attributes
            assert " style=" not in html, path
            assert resp.headers["cache-control"] == "no-store"


def test_user_text_is_escaped_everywhere(lab) -> None:
    server, _, ids, _ = lab
    pages = [server.get(p).text for p in ("/", f"/runs/{ids['inj0']}", f"/compare?run={ids['inj0']}&run={ids['inj1']}")]
    for html in pages:
        assert "<script>window" not in html and "<img src=x" not in html and "<svg onload" not in html
    for html in pages[:2]:  # the note (runs page); notes, config, command, git, traceback (run page)
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    show = pages[1]
    for text in ("&lt;img src=x onerror=&#34;window.__pwned = 2&#34;&gt;", "&#34;&gt;&lt;svg onload=",
                 "{{ 7 * 7 }} {% raw %}", "see [/bold] and [red]x[/]"):
        assert text in show, text
    assert json.loads(server.get(f"/api/runs/{ids['inj0']}").body)["notes"][0].startswith(HTML_INJECTIONS[0])


def test_host_header_must_name_the_loopback_address_without_a_token(lab) -> None:
    server, _, _, _ = lab
    port = server.base.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert server.get("/", headers={"host": host}).status == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        resp = server.get("/", headers={"host": host})
        assert resp.status == 400 and "start it with --token" in resp.text, host


def test_the_token_is_checked_on_every_request(tmp_path: Path) -> None:
    home = tmp_path / "home"
    build_lab_min(home)
    server = UiServer(ui_env(home, FASTPOSE_UI_TOKEN=TOKEN), "--host", "0.0.0.0")
    try:
        base = server.base.rsplit(":", 1)[1]
        assert server.out[0].endswith("(token required)\n") and f"?token={TOKEN}" in server.out[1]
        local = f"http://127.0.0.1:{base}"
        for path in ("/", "/runs/1", "/api/runs", "/static/fastpose.css", "/nope", "/compare?run=1&run=1"):
            resp = request(local, "GET", path)
            assert resp.status == 401 and "runs" not in resp.headers.get("content-type", "") + "", path
            assert b"ONE" not in resp.body
            assert request(local, "GET", path, headers={"authorization": "Bearer wrong-token-0123456789"}).status == 401
            assert request(local, "GET", path, headers={"cookie": f"fastpose_token_{base}=nope"}).status == 401
        assert "Token required" in request(local, "GET", "/").text and 'name="token"' in request(local, "GET", "/").text
        assert request(local, "GET", "/api/runs").headers["content-type"] == "application/json"
        assert request(local, "GET", "/?token=wrong-token-0123456789").status == 401
        login = request(local, "GET", f"/runs/1?token={TOKEN}&x=1")
        assert login.status == 303 and login.headers["location"] == "/runs/1?x=1"
        cookie = login.cookies[0]
        assert cookie.startswith(f"fastpose_token_{base}={TOKEN};") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        with_cookie = request(local, "GET", "/runs/1", headers={"cookie": cookie.split(";")[0]})
        assert with_cookie.status == 200 and "ONE" in with_cookie.text
        bearer = request(local, "GET", "/api/runs", headers={"authorization": f"Bearer {TOKEN}", "host": "lab.example"})
        assert bearer.status == 200 and json.loads(bearer.body)[0]["name"] == "ONE"
        assert TOKEN not in server.log  # the access log has paths, never queries
    finally:
        assert server.stop() == 0


# ------------------------------------------------------------------------------------------- the journal's states
def _served(home: Path, url: str | None = None) -> UiServer:
    return UiServer(ui_env(home, **({"FASTPOSE_JOURNAL_URL": url} if url else {})))


def test_missing_journal_then_created_while_serving(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = _served(home)
    try:
        assert "warning: no journal at" in server.log
        page = server.get("/")
        assert page.status == 503 and "No journal yet" in page.text and not home.exists()
        build_lab_min(home)
        assert server.get("/").status == 200 and "ONE" in server.get("/").text
    finally:
        assert server.stop() == 0


def test_older_journal_gets_a_page_saying_to_run_any_command_and_stays_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "tests" / "journal_fixtures" / "rev_0008.db", home / "fastpose.db")
    before = _digest(home)
    server = _served(home)
    try:
        for path in ("/", "/runs/1", "/api/runs", "/sweeps"):
            resp = server.get(path)
            assert resp.status == 503, path
        page = server.get("/").text
        assert "The journal needs an upgrade" in page and "run any fastpose command once" in page
        assert _digest(home) == before and not list(home.glob("*.bak-*"))
        subprocess.run([sys.executable, "-m", "fastpose", "journal"], env=ui_env(home), capture_output=True, check=True,
                       timeout=300)
        assert server.get("/").status == 200  # upgraded by the command: the same server shows it
    finally:
        assert server.stop() == 0


def test_newer_journal_is_refused_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    build_lab_min(home)
    with sqlite3.connect(home / "fastpose.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    before = _digest(home)
    server = _served(home)
    try:
        page = server.get("/")
        assert page.status == 503 and "newer than this fastpose knows" in page.text
        assert json.loads(server.get("/api/runs").body)["status"] == 503
        assert _digest(home) == before
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other sqlite"])
def test_damaged_journal_is_a_clear_page(tmp_path: Path, damage: str) -> None:
    home = tmp_path / "home"
    build_lab_min(home)
    path = home / "fastpose.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database at all" * 200)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        path.unlink()
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE photos (id INTEGER)")
        conn.close()
    before = _digest(home)
    server = _served(home)
    try:
        page = server.get("/")
        words = {"garbage": "is not a SQLite database", "truncated": "is damaged",
                 "other sqlite": "not a fastpose journal"}[damage]
        assert page.status == 503 and words in page.text, page.text
        assert _digest(home) == before
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log


def test_locked_journal_is_a_busy_page_and_then_reads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    build_lab_min(home)
    locker = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('PRAGMA locking_mode=EXCLUSIVE'); c.execute('BEGIN EXCLUSIVE'); "
        "c.execute('UPDATE runs SET name = name'); print('locked', flush=True); sys.stdin.read(); c.execute('ROLLBACK')"),
        str(home / "fastpose.db")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    server = _served(home)
    try:
        page = server.get("/")
        assert page.status == 503 and "busy" in page.text and page.headers["retry-after"] == "2", page.text
        locker.stdin.close()
        assert locker.wait(timeout=60) == 0
        assert server.get("/").status == 200
    finally:
        if locker.poll() is None:
            locker.kill()
        assert server.stop() == 0
    assert "Traceback" not in server.log


# ------------------------------------------------------------------------------------------- PostgreSQL
def test_postgresql_journal_is_served_read_only(tmp_path: Path) -> None:
    from conftest import drop_pg_database, fresh_pg_database, pg_admin_engine

    from fastpose.journal.access import ReadOnlyJournal
    from fastpose.journal.store import JournalStore, MetricPoint

    admin = pg_admin_engine()
    url = fresh_pg_database(admin)
    try:
        with JournalStore.open(url) as store:
            for name in ("PGA", "PGB"):
                run = store.start_run(name=name, label=f"26-12-01/08-00-{name}-SYNTHETIC-resnet18-scratch")
                store.log_metrics(run.id, [MetricPoint("val/10deg", 0.1, 0, 1), MetricPoint("val/10deg", 0.2, 1, 2)])
                store.finish(run.id)
            gone = store.start_run(name="PGGONE", label="26-12-01/09-00-PGGONE-SYNTHETIC-resnet18-scratch")
            with store.engine.begin() as conn:
                conn.exec_driver_sql(f"UPDATE runs SET pid = 999999999 WHERE id = {gone.id}")
        reader = ReadOnlyJournal(url).reader()
        with pytest.raises(Exception, match="read-only transaction"):
            reader._fetch("UPDATE runs SET name = 'X'")
        server = _served(tmp_path / "home", url)
        try:
            runs = json.loads(server.get("/api/runs").body)
            assert [r["name"] for r in runs] == ["PGGONE", "PGB", "PGA"] and runs[0]["status"] == "lost"
            assert server.get("/compare?run=PGA&run=PGB").status == 200 and server.get("/runs/1").status == 200
            assert "PGB" in server.get("/?sort=metric:val/10deg").text
        finally:
            assert server.stop() == 0
        with JournalStore.open(url) as store:
            assert store.get_run(gone.id).status == "running"  # shown lost, never marked
    finally:
        drop_pg_database(admin, url)
        admin.dispose()


# ------------------------------------------------------------------------------------------- one page of runs
def test_page_runs_cuts_sorts_and_counts_on_the_database(journal_store) -> None:
    """``listing.page_runs`` on SQLite and PostgreSQL: pages in order with the total, metric sorts (runs
    without the metric last, either way), config conditions before the cut, lost runs counted as lost."""
    from datetime import datetime, timedelta, timezone

    from fastpose.journal.listing import page_runs
    from fastpose.journal.store import MetricPoint

    t0 = datetime.now(timezone.utc) + timedelta(hours=1)  # every run ends after it started, later ones later
    ids = []
    for i in range(130):
        run = journal_store.start_run(name=f"R{i % 3}", label=f"26-11-01/08-00-R{i}-SYNTHETIC-resnet18-scratch",
                                      config={"loss": {"name": "mse" if i % 2 else "qloss"}})
        if i % 5:
            journal_store.log_metrics(run.id, [MetricPoint("val/10deg", (i * 37 % 101) / 100, 0, 1)])
        if i != 7:
            journal_store.finish(run.id, at=t0 + timedelta(seconds=30 + i))
        ids.append(run.id)
    first = page_runs(journal_store, limit=50)
    assert first.total == 130 and [r.id for r in first.runs] == ids[::-1][:50]
    third = page_runs(journal_store, limit=50, offset=100)
    assert [r.id for r in third.runs] == ids[::-1][100:]
    everyone = []
    for offset in (0, 50, 100):
        everyone += page_runs(journal_store, sort="metric:val/10deg", descending=True, offset=offset, limit=50).runs
    values = [journal_store.summaries(r.id).get("val/10deg", (None,))[0] for r in everyone]
    have = [v for v in values if v is not None]
    assert len(everyone) == 130 and have == sorted(have, reverse=True) and values[len(have):] == [None] * 26
    up = page_runs(journal_store, sort="metric:val/10deg", descending=False, limit=100).runs
    assert journal_store.summaries(up[0].id)["val/10deg"][0] == min(have)
    longest = page_runs(journal_store, sort="duration", limit=1).runs[0]
    assert longest.id == ids[129]
    mse = page_runs(journal_store, where=[("loss.name", "mse")], limit=50, offset=50)
    assert mse.total == 65 and [r.id for r in mse.runs] == [i for i in ids[::-1] if (ids.index(i)) % 2][50:]
    assert page_runs(journal_store, status="running").total == 1
    lost = page_runs(journal_store, status="lost", lost_ids=[ids[7]])
    assert [r.id for r in lost.runs] == [ids[7]] and page_runs(journal_store, status="running", lost_ids=[ids[7]]).total == 0
    assert page_runs(journal_store, name="R1", limit=50).total == 43
