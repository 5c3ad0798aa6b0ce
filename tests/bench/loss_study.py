"""The loss study, a thin wrapper: `fastpose sweep studies/loss_study.toml`, `fastpose compare --sweep`, checks.

The study itself is the sweep file ``studies/loss_study.toml``: seven arms (the four quaternion losses, the
geodesic loss on a 6D head, the chordal loss on a 9D head, the "-log" control), each arm's rotation weight
tuned on the tune split, then three seeds at the chosen weight. ``fastpose compare --sweep loss_study``
prints its table and Welch's t-test verdicts (``--tuning`` the grid). This script runs both into a journal of
its own, keeps compare's JSON, and prints the checks the README rests on.

    python tests/bench/loss_study.py --jobs 2                  # the full study the README reports
    python tests/bench/loss_study.py --quick --jobs 3          # studies/loss_study_quick.toml: what CI runs
    python tests/bench/loss_study.py --arms qloss,geodesic-6d --seeds 0,1 --jobs 2   # a subset
    python tests/bench/loss_study.py --rotations so3 --epochs 40   # full SO(3): needs a GPU's budget

An arm is named by its loss, plus ``-6d``/``-9d`` for the matrix heads (``qloss``, ``geodesic-6d``,
``chordal-9d``). --arms, --seeds, --epochs and --rotations write a copy of the sweep file (with its own sweep
id) into the study's journal home. Deterministic on the CPU: with --jobs >= the cores, each cell gets one
thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "studies" / "loss_study.toml"
QUICK = REPO / "studies" / "loss_study_quick.toml"
METRIC = "val/rot_err_median"
CONTROL = "qloss-neglog"
GOAL_DEG = 5.0  # the study's goal for the best arm's median rotation error


def arm_name(values: dict[str, Any]) -> str:
    """``qloss`` or ``geodesic-6d``: the loss, and the head when it is not the quaternion one."""
    loss, rotation = values.get("loss.name", "qloss"), values.get("model.rotation", "quaternion")
    return loss if rotation == "quaternion" else f"{loss}-{rotation}"


def derived(source: Path, home: Path, arms: list[str] | None, seeds: list[int] | None, epochs: int | None,
            rotations: str | None) -> Path:
    """``source`` with its arms / seeds / budget replaced (and its own sweep id), written into ``home``."""
    if not (arms or seeds or epochs or rotations):
        return source
    data = tomllib.loads(source.read_text())
    sweep = data["sweep"]
    if arms:
        known = {arm_name(_flat(a)): a for a in sweep["arm"]}
        unknown = sorted(set(arms) - set(known))
        if unknown:
            raise SystemExit(f"unknown arm(s) {', '.join(unknown)}; the sweep file has {', '.join(known)}")
        sweep["arm"] = [known[a] for a in arms]
    if seeds:
        sweep["train.seed"] = seeds
    if epochs:
        data["train"]["epochs"] = epochs
    if rotations:
        data["data"]["rotations"] = rotations
    sweep["id"] = f"{sweep['id']}_custom"
    path = home / source.name
    path.write_text(_toml(data))
    return path


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _toml(data: dict[str, Any]) -> str:
    """The sweep file's shapes only: top-level scalars, tables of scalars, lists of scalars or of tables."""
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in _flat(v).items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]"] + [f"{json.dumps(k)} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def checks(data: dict, quick: bool) -> list[tuple[str, bool]]:
    """What the README's verdict rests on, as checks on the study's groups (compare --sweep --json)."""
    med = {arm_name(g["key"]): g["metrics"][METRIC] for g in data["groups"] if METRIC in g["metrics"]}
    out = []
    if CONTROL in med:
        worst = max(med, key=lambda a: med[a]["mean"])
        out.append((f"the -log control has the worst median error ({worst} is worst: {med[worst]['mean']:.1f})",
                    worst == CONTROL))
    others = {a: m["mean"] for a, m in med.items() if a != CONTROL}
    out.append(("every other arm learns, median below 60 degrees: "
                + ", ".join(f"{a} {v:.1f}" for a, v in others.items()), all(v < 60 for v in others.values())))
    if not quick and others:
        best = min(others, key=others.get)
        out.append((f"goal: the best arm ({best}) reaches a median of {GOAL_DEG:g} degrees or less "
                    f"({others[best]:.2f})", others[best] <= GOAL_DEG))
    runs = data["runs"]
    commits = sorted({(r["git_commit"] or "")[:10] for r in runs} - {""})
    clean = all(not r.get("git_dirty") for r in runs)
    out.append((f"all {len(runs)} runs completed in the journal, with {len(commits)} commit(s) "
                f"({', '.join(commits)}), {'clean' if clean else 'NOT clean'}",
                not [x for x in data["left_out"] if "tuning cells" not in x]
                and all(r["status"] == "completed" and r["git_commit"] for r in runs)))
    return out


CLASSES = ("bottle", "bowl", "camera", "can", "laptop", "mug")


def per_class(data: dict, a: str, b: str, metric: str = "val/10deg") -> list[str]:
    """Arm ``a`` against arm ``b`` on ``metric`` per class: the lab's "MSE beats QLoss in all categories"
    question. Welch's t-test (two-sided) on each run's final value; p not corrected for the classes."""
    from scipy.stats import ttest_ind

    runs: dict[str, list[dict]] = {}
    for r in data["runs"]:
        c = r["config"]
        runs.setdefault(arm_name({"loss.name": c["loss"]["name"], "model.rotation": c["model"]["rotation"]}), []).append(r)
    if a not in runs or b not in runs:
        return []
    lines = [f"{a} vs {b}, {metric} per class (AP, mean over {len(runs[a])} and {len(runs[b])} seeds; Welch's t-test):"]
    for cls in CLASSES:
        key = f"{metric}/{cls}"
        x = [r["final_metrics"].get(key) for r in runs[a]]
        y = [r["final_metrics"].get(key) for r in runs[b]]
        if None in x or None in y:
            continue
        p = ttest_ind(x, y, equal_var=False).pvalue if len(x) > 1 and len(y) > 1 else float("nan")
        mx, my = sum(x) / len(x), sum(y) / len(y)
        lines.append(f"  {cls:<7} {a} {mx:.3f}  {b} {my:.3f}  difference {mx - my:+.3f}  p = {p:.2g}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the demo's budget, one seed (studies/loss_study_quick.toml)")
    parser.add_argument("--home", type=Path, default=None, help="journal home for the study (default: a new folder)")
    parser.add_argument("--arms", default=None, help="comma-separated subset of arms, e.g. qloss,geodesic-6d,qloss-neglog")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the sweep file's)")
    parser.add_argument("--rotations", choices=("tabletop", "so3"), default=None, help="override the poses")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--jobs", type=int, default=1, help="cells side by side (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write compare's JSON and the checks to this file")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="run nothing: print the checks and the per-class table of a --json file written earlier")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        report(saved["compare"], "quick" in Path(saved["sweep_file"]).name)
        return 0

    arms = args.arms.split(",") if args.arms else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    home = args.home or REPO / "tests" / "bench" / "out" / f"loss-study-{time.strftime('%Y%m%d-%H%M%S')}"
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} is not empty; the study writes a journal of its own")
    home.mkdir(parents=True, exist_ok=True)
    sweep_file = derived(QUICK if args.quick else FULL, home, arms, seeds, args.epochs, args.rotations)
    spec = tomllib.loads(sweep_file.read_text())
    sweep_id, tuned = spec["sweep"]["id"], "tune" in spec

    env = {k: v for k, v in os.environ.items() if k != "FASTPOSE_JOURNAL_URL"}
    env.update(FASTPOSE_HOME=str(home), COLUMNS="200")
    fastpose = [sys.executable, "-m", "fastpose"]
    start = time.perf_counter()
    swept = subprocess.run([*fastpose, "sweep", str(sweep_file), "--jobs", str(max(1, args.jobs))], env=env)
    total = time.perf_counter() - start
    if swept.returncode != 0:
        raise SystemExit(f"fastpose sweep failed with exit code {swept.returncode}; cell logs: {home / 'sweeps'}")
    if tuned:
        subprocess.run([*fastpose, "compare", "--sweep", sweep_id, "--tuning"], env=env, check=True)
    subprocess.run([*fastpose, "compare", "--sweep", sweep_id], env=env, check=True)
    data = json.loads(subprocess.run([*fastpose, "compare", "--sweep", sweep_id, "--json"], env=env, check=True,
                                     capture_output=True, text=True).stdout)
    print(f"\nstudy wall time {total / 60:.1f} min; journal: {home / 'fastpose.db'}")
    results = report(data, args.quick)
    if args.json:
        args.json.write_text(json.dumps({"sweep_file": str(sweep_file), "wall_s": total, "compare": data,
                                         "checks": [{"check": t, "ok": ok} for t, ok in results]}, indent=2))
    return 0


def report(data: dict, quick: bool) -> list[tuple[str, bool]]:
    """Print the checks and the per-class mse vs qloss table; return the checks."""
    results = checks(data, quick)
    for text, ok in results:
        print(f"[{'x' if ok else ' '}] {text}")
    for line in per_class(data, "mse", "qloss"):
        print(line)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
