"""The loss study, a thin wrapper: `fastpose sweep studies/loss_study.toml`, `fastpose compare --sweep`, checks.

The study itself is the sweep file ``studies/loss_study.toml`` (five rotation losses x three seeds; only
``loss.name`` and ``train.seed`` vary); ``fastpose compare --sweep loss_study`` prints its table and Welch's
t-test verdicts. This script runs both into a journal of its own and adds the checks the README's verdict
rests on (qloss beats mse, the spreads do not overlap, the -log "fix" is the worst).

    python tests/bench/loss_study.py --jobs 2                 # the full study the README reports
    python tests/bench/loss_study.py --quick --jobs 2         # studies/loss_study_quick.toml: the demo's budget
    python tests/bench/loss_study.py --quick --losses mse,qloss,qloss-neglog --jobs 3    # what CI runs
    python tests/bench/loss_study.py --rotations so3 --epochs 40   # full SO(3): needs a much larger budget
    python tests/bench/loss_study.py --json out.json          # also write compare's JSON and the checks

--losses, --seeds, --epochs and --rotations write a copy of the sweep file (with its own sweep id) into the
study's journal home. Deterministic on the CPU: with --jobs >= the cores, each cell gets one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "studies" / "loss_study.toml"
QUICK = REPO / "studies" / "loss_study_quick.toml"
LOSSES = ("mse", "qloss", "pw-qloss", "geodesic", "qloss-neglog")
METRIC = "val/rot_err_median"


def derived(source: Path, home: Path, losses: list[str] | None, seeds: list[int] | None, epochs: int | None,
            rotations: str | None) -> Path:
    """``source`` with its axes/budget replaced (and its own sweep id), written into ``home``; or ``source``."""
    if not (losses or seeds or epochs or rotations):
        return source
    text = source.read_text()
    subs = {
        r'^"loss\.name" = \[.*\]': lambda: '"loss.name" = ' + json.dumps(losses),
        r'^"train\.seed" = \[.*\]': lambda: '"train.seed" = ' + json.dumps(seeds),
        r"^epochs = \d+": lambda: f"epochs = {epochs}",
        r'^rotations = "\w+"': lambda: f'rotations = "{rotations}"',
    }
    for (pattern, value), wanted in zip(subs.items(), (losses, seeds, epochs, rotations)):
        if wanted:
            text, n = re.subn(pattern + r".*$", value(), text, count=1, flags=re.M)
            assert n == 1, f"{pattern} not found in {source}"
    text = re.sub(r'^id = "(\w+)"', lambda m: f'id = "{m.group(1)}_custom"', text, count=1, flags=re.M)
    path = home / source.name
    path.write_text(text)
    return path


def checks(data: dict) -> list[tuple[str, bool]]:
    """The README's verdict, as checks on the study's groups (compare --sweep --json)."""
    groups = {g["key"]["loss.name"]: g["metrics"] for g in data["groups"]}
    med = {loss: m[METRIC] for loss, m in groups.items() if METRIC in m}
    out = []
    qlosses = [loss for loss in ("qloss", "pw-qloss") if loss in med]
    if "mse" in med and qlosses:
        best = min(qlosses, key=lambda loss: med[loss]["mean"])
        out.append((f"best QLoss ({best}) median {med[best]['mean']:.2f} <= half of mse's {med['mse']['mean']:.2f}",
                    med[best]["mean"] <= med["mse"]["mean"] / 2))
        out.append((f"{best} worst seed {med[best]['max']:.2f} < mse best seed {med['mse']['min']:.2f} "
                    "(spreads do not overlap)", med[best]["max"] < med["mse"]["min"]))
        if "qloss" in med:
            out.append((f"qloss median {med['qloss']['mean']:.2f} < mse median {med['mse']['mean']:.2f}",
                        med["qloss"]["mean"] < med["mse"]["mean"]))
    if "qloss-neglog" in groups:
        neg = groups["qloss-neglog"]["val/rot_err_median"]  # rot_err_mean is no longer logged (issue 12)
        hist = [r["history"].get("val/rot_err_median", []) for r in data["runs"] if r["group"] == "qloss-neglog"]
        rising = all(len(h) >= 2 and h[-1][1] > h[0][1] for h in hist)
        out.append((f"qloss-neglog median error {neg['mean']:.1f} > 120 and rising (first -> last epoch: "
                    + ", ".join(f"{h[0][1]:.0f} -> {h[-1][1]:.0f}" for h in hist if h) + ")", neg["mean"] > 120 and rising))
        worst = max(med, key=lambda loss: med[loss]["mean"])
        out.append((f"qloss-neglog has the worst median error ({worst} is worst)", worst == "qloss-neglog"))
    runs = data["runs"]
    commits = sorted({(r["git_commit"] or "")[:10] for r in runs} - {""})
    out.append((f"all {len(runs)} runs completed in the journal, each with its git commit ({', '.join(commits)})",
                not data["left_out"] and all(r["status"] == "completed" and r["git_commit"] for r in runs)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the demo's budget, one seed (studies/loss_study_quick.toml)")
    parser.add_argument("--home", type=Path, default=None, help="journal home for the study (default: a new folder)")
    parser.add_argument("--losses", default=None, help="comma-separated subset of losses, e.g. mse,qloss,qloss-neglog")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the sweep file's)")
    parser.add_argument("--rotations", choices=("tabletop", "so3"), default=None, help="override the poses")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--jobs", type=int, default=1, help="cells side by side (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write compare's JSON and the checks to this file")
    args = parser.parse_args(argv)

    losses = args.losses.split(",") if args.losses else None
    if losses and set(losses) - set(LOSSES):
        raise SystemExit(f"unknown loss(es) {', '.join(sorted(set(losses) - set(LOSSES)))}; choose from {', '.join(LOSSES)}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    home = args.home or REPO / "tests" / "bench" / "out" / f"loss-study-{time.strftime('%Y%m%d-%H%M%S')}"
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} is not empty; the study writes a journal of its own")
    home.mkdir(parents=True, exist_ok=True)
    sweep_file = derived(QUICK if args.quick else FULL, home, losses, seeds, args.epochs, args.rotations)
    sweep_id = re.search(r'^id = "(\w+)"', sweep_file.read_text(), flags=re.M).group(1)

    env = {k: v for k, v in os.environ.items() if k != "FASTPOSE_JOURNAL_URL"}
    env.update(FASTPOSE_HOME=str(home), COLUMNS="200")
    fastpose = [sys.executable, "-m", "fastpose"]
    start = time.perf_counter()
    swept = subprocess.run([*fastpose, "sweep", str(sweep_file), "--jobs", str(max(1, args.jobs))], env=env)
    total = time.perf_counter() - start
    if swept.returncode != 0:
        raise SystemExit(f"fastpose sweep failed with exit code {swept.returncode}; cell logs: {home / 'sweeps'}")
    subprocess.run([*fastpose, "compare", "--sweep", sweep_id], env=env, check=True)
    data = json.loads(subprocess.run([*fastpose, "compare", "--sweep", sweep_id, "--json"], env=env, check=True,
                                     capture_output=True, text=True).stdout)
    print(f"\nstudy wall time {total / 60:.1f} min; journal: {home / 'fastpose.db'}")
    results = checks(data)
    for text, ok in results:
        print(f"[{'x' if ok else ' '}] {text}")
    if args.json:
        args.json.write_text(json.dumps({"sweep_file": str(sweep_file), "wall_s": total, "compare": data,
                                         "checks": [{"check": t, "ok": ok} for t, ok in results]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
