"""Helpers of the web view's tests: a real ``fastpose ui`` process on a free port, and plain HTTP requests to it
(the stdlib's ``http.client``, any method, no redirect followed)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Strings a page must show as text and never run: HTML and script injections, and the terminal's own
# (tests/test_reliability_hardening.py: markup, escape sequences, bidi override).
HTML_INJECTIONS = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '"><svg onload="window.__pwned = 3">',
    "</textarea></pre><script>window.__pwned = 4</script>",
    "javascript:window.__pwned = 5",
    "{{ 7 * 7 }} {% raw %}",
]


@dataclass
class Http:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def request(base: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> Http:
    host, port = base.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Http(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                    [v for k, v in resp.getheaders() if k.lower() == "set-cookie"])
    finally:
        conn.close()


class UiServer:
    """``fastpose ui --port 0 ARGS`` in a subprocess; ``url`` from its first line; stderr kept in ``log``."""

    def __init__(self, env: dict[str, str], *args: str, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "fastpose", "ui", "--port", "0", *args], env=env, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        first = self.proc.stdout.readline()
        self.out.append(first)
        found = re.search(r"at (http://\S+?/)", first)
        if not found:
            rest, err = self.proc.communicate(timeout=60)
            raise AssertionError(f"fastpose ui did not start: {first}{rest}{err}")
        port = found.group(1).rstrip("/").rsplit(":", 1)[1]
        self.base = f"http://127.0.0.1:{port}"  # whatever address it serves, the tests talk to it on loopback only
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.out), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.err), daemon=True).start()
        deadline = time.monotonic() + 60
        while True:  # the socket listens before uvicorn accepts: wait for an answer
            try:
                request(self.base, "GET", "/static/favicon.svg", headers={"host": "127.0.0.1"})
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    @staticmethod
    def _drain(stream, into: list[str]) -> None:  # noqa: ANN001
        for line in stream:
            into.append(line)

    def get(self, path: str, **kw) -> Http:  # noqa: ANN003
        return request(self.base, "GET", path, **kw)

    @property
    def log(self) -> str:
        return "".join(self.err)

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)


def ui_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, FASTPOSE_HOME=str(home))
    for key in ("FASTPOSE_DEBUG", "FASTPOSE_UI_TOKEN", "FASTPOSE_JOURNAL_URL"):
        env.pop(key, None)
    env.update(extra)
    return env
