"""The everyday screens through the real CLI on a real SQLite journal, built by direct inserts
(no training): `journal` at 80 and 160 columns, `journal show`, `compare` (screen, --json, --plot), the
provenance capture, `--version`, `train --help`, `--print-config`, `--from`, `resume --no-progress`.

The journal/show/compare screens of real training runs are exercised in tests/test_training.py (one shared
fixture of two tiny runs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastpose.config import RunConfig
from fastpose.journal.records import GitState, MetricPoint, SourceState
from fastpose.journal.store import JournalStore

LONG_NOTE = (
    "resumed from run 1 (26-11-27/09-15-AGG_QLOSS-SYNTHETIC-resnet18-scratch, interrupted) at "
    "/home/ana/lab/journal/runs/26-11-27/09-15-AGG_QLOSS-SYNTHETIC-resnet18-scratch/checkpoints/last.ckpt; "
    "code: commit 1234567890 -> abcdef1234; config: train.epochs 8 -> 12, loss.eps 0.01 -> 0.001, "
    "train.lr 0.003 -> 0.001"
)
# run name -> (status, monitor value, miss rate, val/loss, train/loss); every value distinct, to find it
RUNS = {
    "AGG_QLOSS": ("interrupted", 0.3141, 0.2718, 1.4142, 2.2360),
    "AGG_QLOSS_CONT": ("completed", 0.4321, 0.1234, 1.7320, 2.6457),
    "MSE_BASELINE": ("crashed", 0.0517, 0.8642, 3.3166, 3.6055),
    "NEGLOG": ("diverged", 0.0071, 0.9753, 4.1231, 4.3588),
    "LIVE": ("running", 0.2024, 0.5055, 4.7958, 5.0990),
}


def _config(name: str, **updates) -> dict:
    return RunConfig(name=name).override(updates).to_dict()


@pytest.fixture
def screens(fp_home: Path, tmp_path: Path):
    """Five runs of today: an interrupted run and its resumed continuation (the long resume note), a crashed,
    a diverged and a running one (this process's pid: alive); one run on another backbone."""
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    os.environ["FASTPOSE_JOURNAL_URL"] = url
    store = JournalStore.open(url)
    ids = {}
    for i, (name, (status, ap, miss, vloss, tloss)) in enumerate(RUNS.items()):
        backbone = "resnet34" if name == "NEGLOG" else "resnet18"
        extra = {"train.epochs": 12, "loss.name": "mse"} if name == "AGG_QLOSS_CONT" else {}
        run_dir = tmp_path / "runs" / name
        run = store.start_run(
            name=name, label=f"26-11-28/1{i}-00-{name}-SYNTHETIC-{backbone}-scratch",
            config=_config(name, **{"model.backbone": backbone, "train.progress_bar": i % 2 == 0, **extra}),
            run_dir=str(run_dir), parent_id=ids.get("AGG_QLOSS") if name == "AGG_QLOSS_CONT" else None,
            git=GitState(is_repo=True, commit=f"{i}" * 40, branch="main"),
            source=SourceState(is_repo=True, commit="f" * 40, branch="main", version="0.1.0",
                               location="/src/fastpose/fastpose"),
        )
        ids[name] = run.id
        first = 3 if name == "AGG_QLOSS_CONT" else 0  # the resumed run continues at its parent's epoch 3
        curve = [ap * f for f in (0.5, 0.2, 0.9, 1.0)]
        for e, v in enumerate(curve):
            points = [MetricPoint("val/10deg", v, first + e, 10 * e), MetricPoint("val/miss_rate", miss, first + e),
                      MetricPoint("val/5deg", v / 2, first + e), MetricPoint("val/20deg", v * 1.5, first + e),
                      MetricPoint("val/loss", vloss, first + e), MetricPoint("train/loss", tloss, first + e),
                      MetricPoint("val/10deg_5cm/mug", v / 3, first + e)]
            if name != "MSE_BASELINE":  # it found no object: its median error was never defined
                points.append(MetricPoint("val/rot_err_median", 40.0 - e, first + e))
            store.log_metrics(run.id, points)
        if status == "crashed":
            store.crash(run.id, "RuntimeError", "boom", "Traceback (most recent call last):\nRuntimeError: boom")
        elif status != "running":
            store.finish(run.id, status=status, epoch=first + 3, step=40)
        else:
            store.heartbeat(run.id, epoch=0, step=3)
    store.add_note(LONG_NOTE, run_id=ids["AGG_QLOSS_CONT"])
    store.add_note("why this run: the mse baseline again", run_id=ids["MSE_BASELINE"])
    ckpt = tmp_path / "runs" / "AGG_QLOSS_CONT" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "best-epoch005.ckpt").write_bytes(b"x" * 2500)
    os.link(ckpt / "best-epoch005.ckpt", ckpt / "last.ckpt")
    (ckpt / "epoch004.ckpt").write_bytes(b"x" * 1200)
    store.close()
    yield ids
    os.environ.pop("FASTPOSE_JOURNAL_URL", None)


def _cli(*args: str, columns: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "fastpose", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("columns", [80, 160])
def test_journal_keeps_status_duration_primary_metric_and_miss_rate_on_each_line(screens, columns):
    proc = _cli("journal", columns=columns)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= columns for line in lines), [line for line in lines if len(line) > columns]
    for name, (status, ap, miss, vloss, tloss) in RUNS.items():
        (line,) = [ln for ln in lines if re.match(rf"\d\d:\d\d\s+#{screens[name]}\s", ln)]
        assert status in line.split(), (status, line)  # the whole word, never "co…"
        assert f"{ap:.4g}" in line and f"{miss:.4g}" in line, line  # the primary metric (final) and miss rate
        assert re.search(r"\b\d+(s|m\d\ds|h\d\dm)\b", line), line  # the duration
        assert name in line and "26-11-28" not in line and "SYNTHETIC" not in line  # the date is the heading
        assert ("resnet34" in line) == (name == "NEGLOG") or "resnet18" in line  # what differs: the backbone
        if columns >= 120:  # wide: both losses
            assert f"{vloss:.4g}" in line and f"{tloss:.4g}" in line
    header = lines[0]
    assert "val/10deg" in header and "miss_rate" in header
    if columns >= 120:  # room for both losses, named in full
        assert "val/loss" in header and "train/loss" in header
    cont = next(ln for ln in lines if re.match(rf"\d\d:\d\d\s+#{screens['AGG_QLOSS_CONT']}\s", ln))
    start = lines.index(cont)
    assert f"↻#{screens['AGG_QLOSS']}" in cont + lines[start + 1]  # resumed from; the run column may fold
    # the notes: whole, wrapped under their run (between its line and the next run's)
    flat = "".join(proc.stdout.split())
    assert "".join(LONG_NOTE.split()) in flat
    after = next(i for i in range(start + 1, len(lines)) if re.match(r"\d\d:\d\d\s+#\d+\s", lines[i]))
    assert "".join(LONG_NOTE.split()) in "".join("".join(lines[start + 1 : after]).split())


def test_journal_show_defaults_first_metrics_in_order_checkpoints_and_running(screens):
    out = _cli("journal", "show", "AGG_QLOSS_CONT", columns=160).stdout
    assert "config: 3 values not the default (*)" in out  # epochs, loss.name, progress_bar
    first = out.index("(default 10)")
    assert re.search(r"\*\s+train\.epochs\s+12\s+\(default 10\)", out)
    assert re.search(r"\*\s+loss\.name\s+\"mse\"\s+\(default \"qloss\"\)", out)
    assert first < out.index("[train]") and re.search(r"\* epochs = 12", out)  # then the whole config, marked
    table = out[out.index("metrics (final"):]
    rows = [ln.split()[0] for ln in table.splitlines()[2:] if ln.startswith(("val/", "train/"))]
    assert rows[:4] == ["val/10deg", "val/5deg", "val/20deg", "val/rot_err_median"]  # primary, then 5 < 20
    assert rows.index("val/miss_rate") < rows.index("val/loss") < rows.index("train/loss")
    line = next(ln for ln in table.splitlines() if ln.startswith("val/10deg "))
    lo, hi = 0.4321 * 0.2, 0.4321  # min and max beside the sparkline
    assert re.search(rf"{lo:.4g}\s+[▁▂▃▄▅▆▇█]+\s+{hi:.4g}", line), line
    assert "per class (final)" in out and "mug" in out
    assert re.search(r"best\s+best-epoch005\.ckpt\s+2\.5 kB", out)
    assert re.search(r"last\s+last\.ckpt\s+2\.5 kB\s+same file as best-epoch005\.ckpt", out)
    assert re.search(r"periodic\s+epoch004\.ckpt\s+1\.2 kB", out) and "checkpoints (3.7 kB on disk)" in out
    assert "fastpose (the code the run ran)" in out and "f" * 40 in out

    live = _cli("journal", "show", "LIVE", columns=160).stdout
    assert re.search(r"running\s+epoch 1, step 3; last heartbeat", live) and "ended at" not in live
    assert "run directory not on this machine" in live


def test_compare_compact_json_nulls_no_config_noise(screens):
    data = json.loads(_cli("compare", "AGG_QLOSS_CONT", "MSE_BASELINE", "--json").stdout)
    cont, mse = data["runs"]
    # MSE_BASELINE never defined its median error; it is there, as null, beside every other metric
    assert "val/rot_err_median" in mse["final_metrics"] and mse["final_metrics"]["val/rot_err_median"] is None
    assert mse["best_metrics"]["val/rot_err_median"] is None
    assert set(cont["final_metrics"]) == set(mse["final_metrics"]) == set(data["metrics"])
    assert {"val/trans_err_median_cm", "val/10deg_5cm/mug"} <= set(data["metrics"])  # defined or not
    assert data["metrics"]["val/rot_err_median"]["runs"][str(mse["id"])]["final"] is None
    assert data["config_diff"] == {"loss.name": ["mse", "qloss"], "train.epochs": [12, 10]}  # no name, no display
    assert cont["resumed_from"] == [screens["AGG_QLOSS"]] and mse["resumed_from"] == []
    assert cont["fastpose"]["commit"] == "f" * 40 and cont["fastpose_vs_first"] == "-"
    assert mse["fastpose_vs_first"] == "same" and mse["code_vs_first"] == "other commit"
    assert data["primary"] == {"metric": "val/10deg", "direction": "max", "winner": cont["id"]}
    # mse against qloss: their losses are other quantities, never ranked; the APs are
    for name in ("val/loss", "train/loss"):
        assert data["metrics"][name]["comparable"] is False and data["metrics"][name]["winner"] is None
    assert data["metrics"]["val/20deg"]["comparable"] is True and data["metrics"]["val/20deg"]["winner"] == cont["id"]

    out = _cli("compare", "AGG_QLOSS_CONT", "MSE_BASELINE", columns=100).stdout
    row = next(ln for ln in out.splitlines() if ln.startswith("val/20deg "))  # one row per metric
    assert f"{0.4321 * 1.5:.4g}" in row and f"{0.0517 * 1.5:.4g}" in row and "★" in row
    assert not any(ch in out for ch in "▁▂▃▄▅▆▇█")  # no sparkline unless asked
    assert "val/10deg_5cm/mug" not in out and "1 per-class metrics not shown" in out
    assert "train.progress_bar" not in out and "loss.name" in out
    assert next(ln for ln in out.splitlines() if ln.startswith("val/loss ")).startswith("val/loss ≠")
    spark = _cli("compare", "AGG_QLOSS_CONT", "MSE_BASELINE", "--spark", "--per-class", columns=160).stdout
    assert any(ch in spark for ch in "▁▂▃▄▅▆▇█") and "val/10deg_5cm/mug" in spark


def test_compare_plot_one_colour_per_run_one_legend_integer_epochs_and_the_parents_history(screens, tmp_path):
    from fastpose.screens.comparison import load_comparison
    from fastpose.screens.plot import plot_figure

    cmp = load_comparison(["AGG_QLOSS_CONT", "MSE_BASELINE"])
    fig = plot_figure(cmp)
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == len([n for n in cmp.shown_metrics() if any(cmp.histories[r.id].get(n) for r in cmp.runs)])
    colours = {}
    for ax in axes:
        assert ax.get_legend() is None
        for line in ax.get_lines():
            colours.setdefault(line.get_gid().split("-")[0], set()).add(line.get_color())
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert all(len(c) == 1 for c in colours.values()) and colours["run0"] != colours["run1"]
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 2
    ax = next(a for a in axes if a.get_title().startswith("val/10deg "))
    inherited = next(line for line in ax.get_lines() if line.get_gid() == "run0-inherited")
    # the parent's epochs before the fourth (counted from 1, as every screen), joined to the run's first
    assert list(inherited.get_xdata()) == [1, 2, 3, 4]
    png = tmp_path / "c.png"
    proc = _cli("compare", "AGG_QLOSS_CONT", "MSE_BASELINE", "--plot", str(png))
    assert proc.returncode == 0 and png.read_bytes()[:4] == b"\x89PNG", proc.stderr


def test_hostile_text_in_the_new_screens_prints_literally(screens, tmp_path):
    """Checkpoint file names and the recorded fastpose location are user data too."""
    nasty = "see [/bold] \x1b[31mred"
    store = JournalStore.open(os.environ["FASTPOSE_JOURNAL_URL"])
    run = store.resolve("AGG_QLOSS_CONT")
    (Path(run.run_dir) / "checkpoints" / "see [bold] \x1b[31mred.ckpt").write_bytes(b"x")  # no "/" in a name
    other = store.start_run(name="HOSTILE", label="26-11-28/19-00-HOSTILE-SYNTHETIC-resnet18-scratch",
                            config=_config("HOSTILE", **{"data.data_root": nasty}),
                            source=SourceState(is_repo=False, version=nasty, location=f"/x/{nasty}", error=nasty))
    store.finish(other.id)
    store.close()
    for args, shown in ((["journal", "show", "AGG_QLOSS_CONT"], "see [bold] \\x1b[31mred.ckpt"),
                        (["journal", "show", "HOSTILE"], "see [/bold] \\x1b[31mred"),
                        (["compare", "HOSTILE", "AGG_QLOSS_CONT"], "see [/bold] \\x1b[31mred"),
                        (["journal"], "HOSTILE")):
        proc = _cli(*args, columns=160)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and shown in proc.stdout, (args, proc.stdout)


# ------------------------------------------------------------------------------------------ provenance
def _git(*args: str, cwd: Path) -> str:
    base = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "init.defaultBranch=main"]
    return subprocess.run([*base, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_capture_source_finds_the_checkout_of_an_editable_install(tmp_path):
    """A package tracked in a checkout records that checkout's commit, from any working directory; one
    that is the working directory's repository says so; a copy in an untracked folder of a repository (a
    site-packages inside .venv) is an installed package."""
    from fastpose.journal.git import capture_source

    checkout = tmp_path / "src"
    (checkout / "fastpose").mkdir(parents=True)
    (checkout / "fastpose" / "__init__.py").write_text("__version__ = '0'\n")
    _git("init", "-q", cwd=checkout)
    _git("add", ".", cwd=checkout)
    _git("commit", "-qm", "one", cwd=checkout)
    head = _git("rev-parse", "HEAD", cwd=checkout)
    (checkout / "fastpose" / "__init__.py").write_text("__version__ = '1'\n")  # uncommitted change
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    outside = capture_source(elsewhere, package=checkout / "fastpose")
    assert outside.is_repo and outside.commit == head and outside.dirty and not outside.same_as_cwd
    assert "__version__ = '1'" in outside.diff and outside.location == str(checkout / "fastpose")
    inside = capture_source(checkout, package=checkout / "fastpose")
    assert inside.is_repo and inside.commit == head and inside.same_as_cwd and inside.diff is None

    venv = checkout / ".venv" / "site-packages" / "fastpose"
    venv.mkdir(parents=True)
    (venv / "__init__.py").write_text("")
    installed = capture_source(checkout, package=venv)
    assert not installed.is_repo and installed.commit is None and installed.error == "installed package, not a git checkout"


def test_source_state_round_trips_through_both_backends(journal_store):
    source = SourceState(is_repo=True, commit="a" * 40, branch=None, dirty=True, diff="+x\n", untracked=("n ü",),
                         message="m", version="0.1.0", location="/src/fastpose", same_as_cwd=False)
    run = journal_store.start_run(name="SRC", label="26-11-28/10-00-SRC-SYNTHETIC-resnet18-scratch", source=source)
    assert journal_store.source_state(run.id) == source
    bare = journal_store.start_run(name="OLD", label="26-11-28/10-01-OLD-SYNTHETIC-resnet18-scratch")
    assert journal_store.source_state(bare.id) is None


# ------------------------------------------------------------------------------------------ help and reuse
def test_version_and_defaults_in_train_help(fp_home):
    from fastpose.journal.git import fastpose_version

    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.startswith(f"fastpose {fastpose_version()} (")
    out = " ".join(_cli("train", "--help").stdout.split())
    for option, default in (("--epochs", "10"), ("--lr", "0.003"), ("--loss", "qloss"), ("--monitor", "val/10deg"),
                            ("--weights", "none"), ("--progress / --no-progress", "true")):
        assert re.search(rf"{re.escape(option)} (<\w+> )?.*?\[default: {re.escape(default)}\]", out), option
    resume = _cli("resume", "--help").stdout
    for option in ("--progress / --no-progress", "--log-images"):  # every display option of train
        assert option in resume


def test_print_config_round_trips_through_config(fp_home, tmp_path):
    first = _cli("train", "--name", "RT", "--epochs", "7", "--lr", "1e-05", "--data-root", 'a "quoted" \\ path',
                 "--print-config")
    assert first.returncode == 0, first.stderr
    path = tmp_path / "rt.toml"
    path.write_text(first.stdout)
    second = _cli("train", "--config", str(path), "--print-config")
    assert second.returncode == 0 and second.stdout == first.stdout, second.stderr
    from fastpose.config import build_config

    assert build_config(path).to_dict() == RunConfig(name="RT").override(
        {"train.epochs": 7, "train.lr": 1e-5, "data.data_root": 'a "quoted" \\ path'}).to_dict()
    bare = _cli("train", "--print-config")  # no name: a template; --config then asks for --name
    assert bare.returncode == 0 and bare.stdout.startswith("# name =")
    assert not (fp_home / "fastpose.db").exists()  # printing writes nothing


def test_from_takes_the_runs_config_with_overrides_on_top(screens, fp_home):
    out = _cli("train", "--from", "AGG_QLOSS_CONT", "--lr", "5e-4", "--print-config").stdout
    import tomllib

    config = tomllib.loads(out)
    assert config["name"] == "AGG_QLOSS_CONT" and config["train"]["epochs"] == 12 and config["loss"]["name"] == "mse"
    assert config["train"]["lr"] == 5e-4
    before = (fp_home / "fastpose.db").stat().st_mtime_ns
    for args, message in ((["train", "--from", "NOPE"], "no run matches 'NOPE'"),
                          (["resume", "NOPE", "--no-progress", "--log-images", "0"], "no run matches 'NOPE'")):
        proc = _cli(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
    assert (fp_home / "fastpose.db").stat().st_mtime_ns == before
