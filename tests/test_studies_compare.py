"""Group statistics (`compare --sweep`, `compare --by`): the numbers against scipy and an independent numpy
implementation on fixed values; the command on a real journal (rows written through the store, no training)."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats as sps

from fastpose.journal import sweeps
from fastpose.journal.store import MetricPoint
from fastpose.studies.stats import describe, welch

# The README's loss study, median rotation error per seed (degrees): qloss and mse.
QLOSS = [9.8, 8.8, 9.5]
MSE = [16.4, 16.6, 15.5]
PW = [9.9, 9.6, 10.1, 9.2]


def _welch_numpy(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Welch's interval and p from the textbook formulas (numpy, float64), independent of the code under test."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    diff = a.mean() - b.mean()
    t = diff / se
    p = 2 * sps.t.sf(abs(t), df)
    half = sps.t.ppf(0.5 + confidence / 2, df) * se
    return diff, diff - half, diff + half, p


@pytest.mark.parametrize("a,b", [(QLOSS, MSE), (QLOSS, PW), (PW, MSE), ([1.0, 2.0], [1.5, 2.5, 3.5, 10.0])])
def test_welch_matches_scipy_and_the_textbook_formulas(a: list[float], b: list[float]) -> None:
    got = welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert got.t == pytest.approx(ref.statistic, rel=1e-12)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-12)
    diff, lo, hi, p = _welch_numpy(a, b)
    assert (got.diff, got.ci_low, got.ci_high) == pytest.approx((diff, lo, hi), rel=1e-12)
    assert got.p == pytest.approx(p, rel=1e-9)
    if hasattr(ref, "confidence_interval"):  # scipy >= 1.11 inverts the same test
        ci = ref.confidence_interval(0.95)
        assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert (got.n_a, got.n_b) == (len(a), len(b))


def test_describe_matches_numpy_and_skips_nan() -> None:
    s = describe([*PW, float("nan"), None])
    assert (s.n, s.mean, s.sd, s.min, s.max) == pytest.approx(
        (4, np.mean(PW), np.std(PW, ddof=1), min(PW), max(PW)), rel=1e-12)
    one = describe([3.0])
    assert one.n == 1 and one.mean == 3.0 and math.isnan(one.sd)
    assert describe([]).n == 0


def test_welch_edge_cases() -> None:
    assert welch([1.0], [2.0, 3.0]) is None and welch([1.0, float("nan")], [2.0, 3.0]) is None
    same = welch([2.0, 2.0], [2.0, 2.0])
    assert same.p == 1.0 and same.diff == 0.0
    apart = welch([1.0, 1.0], [2.0, 2.0])  # no spread at all: the difference is certain
    assert apart.p == 0.0 and apart.ci_low == apart.ci_high == -1.0


# ----------------------------------------------------------------------------- the command on a journal
def _study(store, losses: dict[str, list[float]], sweep_id: str = "study") -> dict[str, list[int]]:
    """A finished sweep as the store would hold it: loss.name x train.seed, final values given per seed."""
    spec = {"name": "ST", "base": {}, "axes": {"loss.name": list(losses), "train.seed": [0, 1, 2, 3][: max(map(len, losses.values()))]},
            "tags": [], "slurm": {}}
    sweep = sweeps.open_sweep(store, sweep_id, spec, None)
    ids: dict[str, list[int]] = {}
    for loss, values in losses.items():
        for seed, value in enumerate(values):
            name = f"ST-{loss}-seed{seed}"
            config = {"name": name, "loss": {"name": loss, "eps": 0.01, "mask_weight": 1.0, "rot_weight": 0.3},
                      "train": {"seed": seed, "epochs": 2}}
            run = store.start_run(name=name, label=f"26-12-01/10-0{seed}-{name}-SYNTHETIC-resnet18-scratch", config=config)
            sweeps.attach(store, run.id, sweep.id, {"loss.name": loss, "train.seed": seed})
            store.log_metrics(run.id, [MetricPoint("val/rot_err_median", value + 5.0, 0, 1),
                                       MetricPoint("train/loss", 1.0 + seed, 0, 1),
                                       MetricPoint("val/rot_err_median", value, 1, 2),
                                       MetricPoint("train/loss", 0.5 + seed, 1, 2)])
            store.finish(run.id, "completed")
            ids.setdefault(loss, []).append(run.id)
    return ids


def test_compare_sweep_screen_json_and_csv(journal_store, run_cli, tmp_path) -> None:
    ids = _study(journal_store, {"mse": MSE, "qloss": QLOSS, "pw-qloss": PW})
    # a cell that crashed is left out, and said so
    extra = journal_store.start_run(name="ST-x", label="26-12-01/11-00-ST-x-SYNTHETIC-resnet18-scratch",
                                    config={"loss": {"name": "mse"}, "train": {"seed": 3}})
    sweeps.attach(journal_store, extra.id, sweeps.get_sweep(journal_store, "study").id,
                  {"loss.name": "mse", "train.seed": 3})
    journal_store.crash(extra.id, "RuntimeError", "boom", "tb")

    screen = run_cli("compare", "--sweep", "study", "--plot", str(tmp_path / "groups.png"), check=True).stdout
    flat = " ".join(screen.split())
    ref = sps.ttest_ind(QLOSS, MSE, equal_var=False)
    assert "Welch's t-test (scipy.stats.ttest_ind, equal_var=False)" in flat
    assert "qloss beats mse on val/rot_err_median" in flat and "n = 3 + 3" in flat and f"p = {ref.pvalue:.2g}" in flat
    assert "qloss vs pw-qloss on val/rot_err_median: not distinguishable at this n" in flat
    assert "left out: cell loss.name=mse, train.seed=3: crashed" in flat
    assert "train/loss" not in flat  # the headline metrics by default; losses with --per-class
    assert (tmp_path / "groups.png").stat().st_size > 0
    every = " ".join(run_cli("compare", "--sweep", "study", "--per-class", check=True).stdout.split())
    assert "train/loss ↓ (not comparable)" in every  # losses of different kinds: no star there

    data = json.loads(run_cli("compare", "--sweep", "study", "--json", check=True).stdout)
    assert data["primary_metric"] == "val/rot_err_median" and data["comparable"]["train/loss"] is False
    groups = {g["group"]: g for g in data["groups"]}
    assert groups["mse"]["metrics"]["val/rot_err_median"]["mean"] == pytest.approx(np.mean(MSE))
    assert groups["pw-qloss"]["metrics"]["val/rot_err_median"]["sd"] == pytest.approx(np.std(PW, ddof=1))
    assert groups["pw-qloss"]["n"] == 4 and groups["mse"]["n"] == 3  # the crashed cell is not in n
    vs_mse = next(c for c in data["comparisons"] if c["other"] == "mse")
    assert vs_mse["best"] == "qloss" and vs_mse["p"] == pytest.approx(ref.pvalue)
    run = next(r for r in data["runs"] if r["id"] == ids["mse"][0])
    assert run["history"]["val/rot_err_median"] == [[0, MSE[0] + 5.0], [1, MSE[0]]]

    rows = list(csv.DictReader(io.StringIO(run_cli("compare", "--sweep", "study", "--csv", check=True).stdout)))
    assert sorted(int(r["run_id"]) for r in rows) == sorted(i for v in ids.values() for i in v)
    for row in rows:
        loss, seed = row["config.loss.name"], int(row["config.train.seed"])
        assert row["group"] == loss and row["status"] == "completed" and row["sweep"] == "study"
        assert float(row["final.val/rot_err_median"]) == pytest.approx({"mse": MSE, "qloss": QLOSS, "pw-qloss": PW}[loss][seed])
        assert float(row["best.val/rot_err_median"]) == float(row["final.val/rot_err_median"])
        assert float(row["final.train/loss"]) == 0.5 + seed


def test_compare_by_key_and_its_errors(journal_store, run_cli) -> None:
    ids = _study(journal_store, {"mse": MSE[:2], "qloss": QLOSS[:1]}, sweep_id="small")
    refs = [str(i) for v in ids.values() for i in v]
    out = " ".join(run_cli("compare", *refs, "--by", "loss.name", check=True).stdout.split())
    assert "qloss vs mse on val/rot_err_median" in out and "too few runs for a test (n = 1 + 2" in out
    for args, message in ((["compare", "--sweep", "nope"], "no sweep 'nope'"),
                          (["compare", *refs, "--by", "loss.nam"], "unknown config key"),
                          (["compare", refs[0], "--by", "loss.name"], "at least two runs"),
                          (["compare", refs[0], *refs, "--by", "loss.name"], "different runs")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_compare_sweep_never_imports_torch(journal_store) -> None:
    _study(journal_store, {"mse": MSE, "qloss": QLOSS})
    code = textwrap.dedent(
        """
        import sys
        from fastpose.cli import main
        for argv in (["compare", "--sweep", "study"], ["compare", "--sweep", "study", "--csv"]):
            sys.argv = ["fastpose", *argv]
            try:
                main()
            except SystemExit as exc:
                assert not exc.code, exc.code
        heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "pytorch_lightning", "torchmetrics")]
        assert not heavy, heavy
        print("OK")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "OK"


def test_compare_metric_keeps_only_the_named_metrics_and_the_primary(journal_store, run_cli) -> None:
    """`--metric` (repeatable) narrows the screen and the JSON; the primary metric (the verdict's) stays; a
    name the runs lack is a one-line error that lists what they have; the same for runs side by side."""
    _study(journal_store, {"mse": MSE, "qloss": QLOSS})
    data = json.loads(run_cli("compare", "--sweep", "study", "--metric", "train/loss", "--json", check=True).stdout)
    assert set(data["groups"][0]["metrics"]) == {"val/rot_err_median", "train/loss"}
    screen = " ".join(run_cli("compare", "--sweep", "study", "--metric", "train/loss", check=True).stdout.split())
    assert "train/loss" in screen and "qloss beats mse on val/rot_err_median" in screen
    only_primary = run_cli("compare", "--sweep", "study", "--metric", "val/rot_err_median", check=True).stdout
    assert "train/loss" not in only_primary
    bad = run_cli("compare", "--sweep", "study", "--metric", "val/nope[/bold]")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "no metric val/nope[/bold] in these runs; they have: " in bad.stderr and "train/loss" in bad.stderr
    runs = run_cli("compare", "ST-mse-seed0", "ST-qloss-seed0", "--metric", "train/loss", "--json", check=True)
    assert set(json.loads(runs.stdout)["metrics"]) == {"val/rot_err_median", "train/loss"}
    assert run_cli("compare", "ST-mse-seed0", "ST-qloss-seed0", "--metric", "val/x").returncode == 2


def test_loss_trans_from_before_and_after_the_depth_branch_is_not_ranked() -> None:
    """loss_trans weighs log-depth 20x since the depth branch: runs without model.depth_head (before it) and runs
    with it log different quantities under one name; rotation metrics stay comparable."""
    from fastpose.metrics import comparable_across

    old, new = {"loss.name": "qloss"}, {"loss.name": "qloss", "model.depth_head": "branch"}
    assert not comparable_across("train/loss_trans", [old, new]) and not comparable_across("train/loss", [old, new])
    assert comparable_across("train/loss_trans", [new, dict(new)]) and comparable_across("val/rot_err_median", [old, new])
