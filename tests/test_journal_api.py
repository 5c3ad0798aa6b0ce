"""fastpose.journal.api: runs and histories as pandas DataFrames, read-only, torch-free, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastpose.journal.store import JournalStore, MetricPoint

FIXTURES = Path(__file__).parent / "journal_fixtures"


def fill(store: JournalStore) -> dict[str, int]:
    from fastpose.journal.sweeps import attach, open_sweep
    from fastpose.journal.tags import add_tags

    sweep = open_sweep(store, "study", {"name": "study", "base": {}, "axes": {"loss.name": ["mse", "qloss"]}}, None)
    ids = {}
    for i, loss in enumerate(["mse", "qloss", "qloss"]):
        run = store.start_run(name=f"R{i}", label=f"26-11-0{i + 1}/10-00-R{i}-SYNTHETIC-resnet18-scratch",
                              config={"name": f"R{i}", "loss": {"name": loss}, "train": {"seed": i, "lr": 0.001}})
        for epoch in range(3):
            store.log_metrics(run.id, [MetricPoint("val/10deg", 0.1 * (i + 1) + 0.01 * epoch, epoch, 10 * epoch),
                                       MetricPoint("val/rot_err_median", 30.0 - epoch - i, epoch, 10 * epoch)])
        store.log_metrics(run.id, [MetricPoint("train/loss", float("nan"), None, 35)])
        store.finish(run.id)
        ids[f"R{i}"] = run.id
        if i < 2:
            attach(store, run.id, sweep.id, {"loss.name": loss})
    add_tags(store, ids["R2"], ["paper"])
    return ids


def test_runs_and_history(journal_db_url: str) -> None:
    pd = pytest.importorskip("pandas")  # the test extra has it; only the notebook extra brings it to users
    from fastpose.journal import api

    store = JournalStore.open(journal_db_url)
    ids = fill(store)
    store.close()

    df = api.runs()
    assert list(df["id"]) == [ids["R2"], ids["R1"], ids["R0"]]  # newest first
    assert {"config.loss.name", "config.train.seed", "final.val/10deg", "best.val/rot_err_median",
            "sweep", "cell", "tags"} <= set(df.columns)
    r0 = df.set_index("id").loc[ids["R0"]]
    assert r0["final.val/10deg"] == pytest.approx(0.12) and r0["best.val/rot_err_median"] == 28.0
    assert r0["sweep"] == "study" and json.loads(r0["cell"]) == {"loss.name": "mse"}
    assert math.isnan(r0["final.train/loss"])
    assert str(df["started"].dt.tz) == "UTC"
    assert df.set_index("id").loc[ids["R2"], "tags"] == "paper"

    assert list(api.runs(where={"loss.name": "qloss"})["id"]) == [ids["R2"], ids["R1"]]
    assert list(api.runs(where=["loss.name=qloss", "train.seed=1"])["id"]) == [ids["R1"]]
    assert list(api.runs(sweep="study")["id"]) == [ids["R1"], ids["R0"]]
    assert list(api.runs(tags=["paper"])["id"]) == [ids["R2"]]
    only = api.runs(metrics=["val/10deg", "val/never_logged"])
    assert [c for c in only.columns if c.startswith(("final.", "best."))] == [
        "final.val/10deg", "final.val/never_logged", "best.val/10deg", "best.val/never_logged"]
    assert only["final.val/never_logged"].isna().all()
    grouped = api.runs(sweep="study").groupby("config.loss.name")["final.val/10deg"].mean()
    assert grouped["qloss"] == pytest.approx(0.22)

    h = api.history("R1")
    assert list(h.columns) == ["run_id", "name", "epoch", "step", "value", "time"]
    assert len(h) == 7 and set(h["run_id"]) == {ids["R1"]}
    assert list(h[h.name == "val/10deg"]["value"]) == pytest.approx([0.2, 0.21, 0.22])
    assert h[h.name == "train/loss"]["epoch"].isna().all() and math.isnan(h[h.name == "train/loss"]["value"].iloc[0])
    assert len(api.history(ids["R1"], metrics="val/10deg")) == 3

    subprocess.run([sys.executable, "-m", "fastpose", "journal", "rm", "R0"], check=True, capture_output=True)
    assert ids["R0"] not in set(api.runs()["id"])
    assert list(api.runs(deleted="only")["id"]) == [ids["R0"]]
    for call, words in ((lambda: api.history("R0"), "is deleted"), (lambda: api.runs(where={"loss.nam": 1}), "unknown config key"),
                        (lambda: api.runs(status="great"), "status 'great'"), (lambda: api.runs(sweep="nope"), "no sweep"),
                        (lambda: api.runs(deleted="maybe"), "deleted 'maybe'")):
        with pytest.raises(Exception) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value)
    assert pd is not None


def test_read_only_never_creates_upgrades_or_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")
    from fastpose.journal import api
    from fastpose.journal.db import JournalError

    monkeypatch.setenv("FASTPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTPOSE_JOURNAL_URL", raising=False)
    with pytest.raises(JournalError, match="no journal at"):
        api.runs()
    assert not (tmp_path / "home").exists()  # nothing created

    old = tmp_path / "old.db"
    shutil.copy(FIXTURES / "rev_0008.db", old)
    digest = hashlib.sha256(old.read_bytes()).hexdigest()
    with pytest.raises(JournalError) as info:
        api.runs(url=f"sqlite:///{old}")
    assert "older than this fastpose" in str(info.value) and "fastpose journal" in str(info.value)
    assert hashlib.sha256(old.read_bytes()).hexdigest() == digest and sorted(os.listdir(tmp_path)) == ["old.db"]

    url = f"sqlite:///{tmp_path / 'j.db'}"
    store = JournalStore.open(url)
    fill(store)
    running = store.start_run(name="LIVE", label="26-11-09/10-00-LIVE-SYNTHETIC-resnet18-scratch")
    with store.engine.begin() as conn:  # its process is gone: `fastpose journal` would mark it lost
        conn.exec_driver_sql(f"UPDATE runs SET pid = 2147483000 WHERE id = {running.id}")
    store.close()
    before = hashlib.sha256((tmp_path / "j.db").read_bytes()).hexdigest()
    df = api.runs(url=url)
    assert df.set_index("id").loc[running.id, "status"] == "running"  # shown as recorded, not marked
    api.history("R1", url=url)
    assert hashlib.sha256((tmp_path / "j.db").read_bytes()).hexdigest() == before


def test_torch_free_and_one_line_without_pandas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    store = JournalStore.open(url)
    fill(store)
    store.close()
    code = ("import sys\nfrom fastpose.journal import api\ndf = api.runs(url=%r)\nh = api.history('R1', url=%r)\n"
            "print(len(df), len(h), 'torch' in sys.modules, 'pytorch_lightning' in sys.modules)") % (url, url)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "7", "False", "False"]
    blocked = ("import sys\nsys.modules['pandas'] = None  # as if not installed\nfrom fastpose.journal import api\n"
               "try:\n    api.runs(url=%r)\nexcept ImportError as exc:\n    print(type(exc).__name__, '|', exc)\n") % url
    proc = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "MissingExtra | fastpose.journal.api needs pandas: pip install 'fastpose[notebook]'"
