"""Helpers of the web view's tests: a real ``fastpose ui`` process on a free port, and plain HTTP requests to it
(the stdlib's ``http.client``, any method, no redirect followed)."""

from __future__ import annotations

import http.client
import os
import re
import sqlite3
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NASTY = "see [/bold] and [red]x[/] :smile: \x1b[2J\x1b]0;pwned\x07 \u202eevil\r"  # test_reliability_hardening.NASTY

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


def png_file(path: Path, size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 60, 40)).save(path)
    return path.read_bytes()


def build_lab(home: Path) -> dict[str, int]:
    """The golden journal, then: runs whose notes, config, commit message, diff and traceback hold injection
    strings; a running run whose process is gone (shown lost); a running run of this live process; a pose
    panel in run 2's TensorBoard events and the PR-curve PNG its evaluation names."""
    sys.path.insert(0, str(ROOT / "tests" / "golden"))
    from build_journal import build

    from fastpose.journal.records import GitState
    from fastpose.journal.store import JournalStore, MetricPoint

    ids = build(home)
    hostile = " ".join(HTML_INJECTIONS) + " " + NASTY
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        for i in range(2):
            run = store.start_run(
                name=f"INJ{i}", label=f"26-12-01/09-0{i}-INJ{i}-SYNTHETIC-resnet18-scratch",
                command=f"fastpose train {HTML_INJECTIONS[0]}", run_dir=str(home / "runs" / f"inj{i}"),
                config={"data": {"data_root": HTML_INJECTIONS[1]}, "train": {"strategy": HTML_INJECTIONS[2]},
                        "note": hostile, "loss": {"name": "mse"}},
                git=GitState(is_repo=True, commit="c" * 40, branch=HTML_INJECTIONS[3], dirty=True,
                             diff=f"diff --git a/{HTML_INJECTIONS[0]} b/x\n+{hostile}\n", message=hostile))
            store.log_metrics(run.id, [MetricPoint("val/loss", 1.0 + i, 0, 1), MetricPoint("val/loss", 0.5, 1, 2)])
            store.crash(run.id, "RuntimeError", hostile, f"Traceback (most recent call last):\n  {hostile}\nRuntimeError")
            store.add_note(hostile, run_id=run.id)
            ids[f"inj{i}"] = run.id
        store.add_note(HTML_INJECTIONS[0])
        dead = store.start_run(name="GONE", label="26-12-02/10-00-GONE-SYNTHETIC-resnet18-scratch")
        store.log_metrics(dead.id, [MetricPoint("val/loss", 1.5, 0, 1)])
        ids["gone"] = dead.id
        alive = store.start_run(name="ALIVE", label="26-12-02/11-00-ALIVE-SYNTHETIC-resnet18-scratch")
        store.log_metrics(alive.id, [MetricPoint("val/loss", 1.2, 0, 1)])
        ids["alive"] = alive.id
        ids.update(tuned_sweep(store))
    with sqlite3.connect(home / "fastpose.db") as conn:
        conn.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (dead.id,))  # its process is long gone
    conn.close()
    run_dir = Path(sqlite3.connect(home / "fastpose.db").execute("SELECT run_dir FROM runs WHERE id = 2").fetchone()[0])
    write_pose_panel(run_dir)
    png_file(home / "runs" / "x" / "pr-test-best.png")
    return ids


def write_pose_panel(run_dir: Path) -> None:
    """Two ``val/poses`` images in TensorBoard events, as Lightning's logger writes them (the newer is 64x48)."""
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tensorboard"))
    writer.add_image("val/poses", np.zeros((32, 32, 3), np.uint8), global_step=1, dataformats="HWC")
    writer.add_scalar("val/loss", 1.0, 1)
    writer.add_image("val/poses", np.full((48, 64, 3), 200, np.uint8), global_step=3, dataformats="HWC")
    writer.close()




def tuned_sweep(store) -> dict[str, int]:  # noqa: ANN001 - JournalStore
    """A tuned sweep ``tuned`` by direct inserts, as ``fastpose sweep`` files it: the tuning stage (each loss
    at loss.rot_weight 0.1 and 0.3, seed 0), then the final cells at the chosen weight (seeds 0 and 1)."""
    from fastpose.journal import sweeps
    from fastpose.journal.store import MetricPoint
    from fastpose.studies.plan import choose
    from fastpose.studies.spec import SweepSpec

    spec = SweepSpec("tuned", "TU", {}, {"loss.name": ["mse", "qloss"], "train.seed": [0, 1]},
                     tune_axes={"loss.rot_weight": [0.1, 0.3]})
    record = sweeps.open_sweep(store, "tuned", spec.to_json(), source="studies/tuned.toml")
    out, n = {}, 0

    def run(cell, value: float) -> int:  # noqa: ANN001
        nonlocal n
        n += 1
        r = store.start_run(name=cell.config.name, label=f"26-12-04/10-{n:02d}-{cell.config.name}-SYNTHETIC-resnet18-scratch",
                            config=cell.config.to_dict())
        store.log_metrics(r.id, [MetricPoint("val/10deg", value / 2, 0, 1), MetricPoint("val/10deg", value, 1, 2)])
        store.finish(r.id)
        sweeps.attach(store, r.id, record.id, cell.values)
        return r.id

    for cell in spec.tuning_cells():  # qloss is best at 0.3, mse at 0.1
        good = (cell.values["loss.name"] == "qloss") == (cell.values["loss.rot_weight"] == 0.3)
        out[f"tune-{cell.values['loss.name']}-{cell.values['loss.rot_weight']}"] = run(cell, 0.4 if good else 0.2)
    chosen = {group: c.values for group, c in choose(store, record.id, spec).items()}
    for cell in spec.cells(chosen):
        out[f"final-{cell.values['loss.name']}-{cell.values['train.seed']}"] = run(
            cell, (0.5 if cell.values["loss.name"] == "qloss" else 0.3) + 0.01 * cell.values["train.seed"])
    return out
