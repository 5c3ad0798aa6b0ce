"""Frames per second end to end (image tensor -> poses), the network forward and the post-processing apart.

    python tests/bench/bench_inference.py                       # 640x480, batch 1 and 8, resnet18 and resnet50
    python tests/bench/bench_inference.py --json out.json       # the same, also written as JSON
    python tests/bench/bench_inference.py --sizes 64,256 --batches 1,32 --backbones resnet18 --before --update
                                                                # the 64/256 px table of docs/benchmarks.md

What is timed, per row (device, backbone, precision, compiled or not, image size, batch):

- ``fwd``: the network forward alone (``FastPoseNet``, eval mode, as a run builds it: encoder to stride 16).
- ``post``: ``fastpose.pose.evaluation.detect`` on that forward's outputs: instances from the mask,
  rotation aggregation, centre voting and pose recovery (translation, size) with the batch's intrinsics,
  on the device the outputs are on.
- ``e2e``: one pass of both (forward, then ``detect``), timed as a whole; ``post %`` is the post-processing
  over that pass, taken within one repeat (the forward's own variance does not enter it); ``FPS`` is
  ``batch / e2e``. Medians over ``--repeats`` after a warm-up pass (and, with ``torch.compile``, after the
  compilation). On a GPU every time is read after ``torch.cuda.synchronize()``.
- Precisions: ``fp32`` everywhere; on a GPU also ``bf16`` and ``fp16`` (``torch.autocast`` around the forward;
  ``detect`` reads the outputs in float32). ``--compile`` (default: on a GPU only) adds rows with
  ``torch.compile(model)``.
- ``--update``: ``PoseEvaluation.update`` (matching and AP bookkeeping, given the detections) and its ratio to
  the forward; ``--before`` (CPU): ``detect`` and ``update`` on all intra-op threads, as they ran before
  ``fastpose.pose.indexing.single_threaded``.

Inputs: rendered synthetic scenes (``SyntheticPoseDataset``) at the size asked for, their intrinsics. Without
``--checkpoint`` the network is freshly initialised, which gives *more* detections (fragments) than a trained
one: a pessimistic case for post-processing. ``--json`` writes every row with the machine (CPU model, cores,
threads, load average, GPU name), torch's version and the git commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch

ANCHORS = (  # frames per second as their papers report them (docs/native-size.md)
    ("NOCS (Wang et al. 2019), RGB-D", 5), ("SPD (Tian et al. 2020), RGB-D", 4),
    ("FS-Net (Chen et al. 2021), RGB-D", 20), ("HS-Pose (Zheng et al. 2023), RGB-D", 50),
    ("YOPO, RGB only, on an A6000", 21),
)


def _detect_all_threads(out, intrinsics):
    """``detect`` as before: the same code on every intra-op thread (``single_threaded`` disabled)."""
    from fastpose.pose.evaluation import detect

    with mock.patch("fastpose.pose.indexing.single_threaded", lambda device: nullcontext()):
        return detect(out, intrinsics)


def _update_all_threads(metric, det, batch):
    with mock.patch("fastpose.pose.indexing.single_threaded", lambda device: nullcontext()):
        metric.update(det, batch)


def machine(device: torch.device, threads: int) -> dict:
    """Where the figures were taken: CPU model and cores, threads, load average, GPU, versions, commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads,
            "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "torch": torch.__version__, "device": str(device), "commit": commit, "dirty": dirty}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _parse_size(text: str) -> tuple[int, int]:
    from fastpose.pose.camera import parse_image_size

    return parse_image_size(text)


def bench_row(model, batch: dict, device: torch.device, precision: str, repeats: int, before: bool = False,
              update: bool = False) -> dict:
    """Medians of the timings of one configuration (see the module docstring); seconds, ratios, FPS."""
    from fastpose.pose.evaluation import PoseEvaluation, detect

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    image, K = batch["image"], batch["intrinsics"]
    bs = image.shape[0]

    def forward():
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            return model(image)

    rows: dict[str, list[float]] = {k: [] for k in ("fwd", "e2e", "post", "share", "old", "old_share", "upd",
                                                    "upd_r", "old_upd", "old_upd_r")}
    dets = 0
    with torch.inference_mode():
        detect(forward(), K)  # warm-up (and compilation)
        _sync(device)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            out = forward()
            _sync(device)
            t1 = time.perf_counter()
            del out
            t2 = time.perf_counter()
            out = forward()
            _sync(device)
            t3 = time.perf_counter()
            det = detect(out, K)
            _sync(device)
            t4 = time.perf_counter()
            fwd, e2e, post = t1 - t0, t4 - t2, t4 - t3
            for key, value in (("fwd", fwd), ("e2e", e2e), ("post", post), ("share", post / e2e)):
                rows[key].append(value)
            if before:
                t5 = time.perf_counter()
                _detect_all_threads(out, K)
                _sync(device)
                old = time.perf_counter() - t5
                rows["old"].append(old)
                rows["old_share"].append(old / (t3 - t2 + old))
            if update:
                t6 = time.perf_counter()
                PoseEvaluation().update(det, batch)
                _sync(device)
                upd = time.perf_counter() - t6
                rows["upd"].append(upd)
                rows["upd_r"].append(upd / fwd)
                if before:
                    t7 = time.perf_counter()
                    _update_all_threads(PoseEvaluation(), det, batch)
                    old_upd = time.perf_counter() - t7
                    rows["old_upd"].append(old_upd)
                    rows["old_upd_r"].append(old_upd / fwd)
            dets = len(det["score"])
            del out, det
    m = {k: statistics.median(v) for k, v in rows.items() if v}
    m["fps"] = bs / m["e2e"]
    m["detections"] = dets
    return m


def run(sizes: list[tuple[int, int]], batches: list[int], backbones: list[str], device: torch.device,
        precisions: list[str], compile_modes: list[bool], repeats: int, checkpoint: str | None = None,
        before: bool = False, update: bool = False, print_rows: bool = True) -> list[dict]:
    """Every row of the benchmark; prints the table as it goes."""
    from fastpose.pose.data.synthetic import SyntheticPoseDataset
    from fastpose.pose.model import FastPoseNet

    head = ("backbone", "prec", "compiled", "size", "batch", "fwd ms", "post ms", "e2e ms", "post %", "FPS", "dets")
    if update:
        head += ("update ms", "upd/fwd %")
    if before:
        head += ("post-before ms", "post-before %") + (("upd-before/fwd %",) if update else ())
    if print_rows:
        print(" ".join(f"{h:>{max(len(h), 7)}}" for h in head), flush=True)
    results = []
    for size in sizes:
        data = SyntheticPoseDataset(max(batches), image_size=size, seed=5, rotations="tabletop")
        full = data.render_batch(range(max(batches)), device)
        for backbone in ([None] if checkpoint else backbones):  # a checkpoint is one network, its own backbone
            if checkpoint:
                from fastpose.training.evaluate import load_checkpoint

                net, config, _ = load_checkpoint(Path(checkpoint))
                backbone = f"{config.model.backbone} (trained)"
            else:
                torch.manual_seed(0)
                net = FastPoseNet(backbone)
            net = net.eval().to(device)
            for compiled in compile_modes:
                model = torch.compile(net) if compiled else net
                for precision in precisions:
                    for bs in batches:
                        batch = {k: v[:bs] for k, v in full.items()}
                        m = bench_row(model, batch, device, precision, repeats, before=before, update=update)
                        h, w = size
                        row = {"device": str(device), "backbone": backbone, "precision": precision,
                               "compiled": compiled, "width": w, "height": h, "batch": bs,
                               "forward_ms": 1000 * m["fwd"], "post_ms": 1000 * m["post"],
                               "end_to_end_ms": 1000 * m["e2e"], "post_share": m["share"], "fps": m["fps"],
                               "detections": m["detections"]}
                        cells = [row["backbone"], precision, "yes" if compiled else "no", f"{w}x{h}", bs,
                                 f"{row['forward_ms']:.1f}", f"{row['post_ms']:.1f}", f"{row['end_to_end_ms']:.1f}",
                                 f"{100 * m['share']:.1f}", f"{m['fps']:.2f}", m["detections"]]
                        if update:
                            row.update(update_ms=1000 * m["upd"], update_over_forward=m["upd_r"])
                            cells += [f"{1000 * m['upd']:.1f}", f"{100 * m['upd_r']:.1f}"]
                        if before:
                            row.update(post_before_ms=1000 * m["old"], post_before_share=m["old_share"])
                            cells += [f"{1000 * m['old']:.1f}", f"{100 * m['old_share']:.1f}"]
                            if update:
                                row["update_before_over_forward"] = m["old_upd_r"]
                                cells += [f"{100 * m['old_upd_r']:.1f}"]
                        results.append(row)
                        if print_rows:
                            print(" ".join(f"{str(c):>{max(len(h), 7)}}" for c, h in zip(cells, head)), flush=True)
            del net
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto (cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint instead of fresh networks")
    parser.add_argument("--sizes", default="640x480", help="WIDTHxHEIGHT (or a square's side), comma-separated")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--backbones", default="resnet18,resnet50")
    parser.add_argument("--precisions", default=None, help="default: fp32 on the CPU; fp32,bf16,fp16 on a GPU")
    parser.add_argument("--compile", choices=("auto", "yes", "no"), default="auto",
                        help="also torch.compile'd rows (auto: on a GPU)")
    parser.add_argument("--before", action="store_true", help="CPU: detect/update on all threads as well")
    parser.add_argument("--update", action="store_true", help="also time PoseEvaluation.update")
    parser.add_argument("--json", default=None, help="write the rows and the machine to this file")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precisions.split(",") if args.precisions else \
        (["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32"])
    compile_modes = [False] + ([True] if args.compile == "yes" or (args.compile == "auto" and device.type == "cuda")
                               else [])
    info = machine(device, torch.get_num_threads())
    print(f"{info['device']} ({info.get('gpu') or info['cpu']}), {info['threads']} threads, load {info['load_average']}, "
          f"torch {info['torch']}, commit {info['commit']}{' (dirty)' if info['dirty'] else ''}; medians of "
          f"{args.repeats} repeats; {'checkpoint ' + args.checkpoint if args.checkpoint else 'untrained networks'}",
          flush=True)
    rows = run([_parse_size(s) for s in args.sizes.split(",")], [int(b) for b in args.batches.split(",")],
               args.backbones.split(","), device, precisions, compile_modes, args.repeats, args.checkpoint,
               before=args.before and device.type == "cpu", update=args.update)
    result = {"machine": info, "repeats": args.repeats, "rows": rows,
              "anchors_fps": {name: fps for name, fps in ANCHORS}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
