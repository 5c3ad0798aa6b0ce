"""Benchmarks of the pose science: synthetic rendering speed, and vectorised vs naive aggregation + matching.

    python tests/bench/bench_pose.py            # one thread, as in the README's figures
    python tests/bench/bench_pose.py --images 1024 --threads 2 --chunk 32
    python tests/bench/bench_pose.py --train-step --threads 2   # also FastPoseNet training-step time

Targets: at least 500 rendered 64x64 images per second; the vectorised aggregation + matching
at least 10x faster than a per-instance Python loop on a batch of 32 images with 3 objects each.
The naive loop below is the reference implementation and lives only here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy import ndimage

from fastpose.pose.aggregate import evaluate_batch, gt_instance_quaternions
from fastpose.pose.data.synthetic import SyntheticPoseDataset
from fastpose.pose.rotations import safe_normalize


# ----------------------------------------------------------------------------- the naive reference
def naive_average(q: torch.Tensor) -> torch.Tensor:
    q = safe_normalize(q)
    ref = torch.linalg.eigh(q.T @ q)[1][:, -1]
    sign = torch.where(q @ ref < 0, -1.0, 1.0)
    return safe_normalize((q * sign[:, None]).sum(0))


def naive_gt_instances(out: dict, batch: dict) -> list[torch.Tensor]:
    B, M = batch["inst_valid"].shape
    C = out["quaternion"].shape[1] // 4
    res = []
    for b in range(B):
        for k in range(M):
            if not batch["inst_valid"][b, k]:
                continue
            m = batch["instance_mask"][b] == k + 1
            c = int(batch["inst_class"][b, k])
            field = out["quaternion"][b].view(C, 4, *m.shape)[c - 1]
            res.append(naive_average(field[:, m].T))
    return res


def naive_evaluate(out: dict, batch: dict, iou_threshold: float = 0.5, min_pixels: int = 8) -> dict:
    prob = out["mask_logits"].softmax(1)
    conf, cls = prob[:, 1:].max(1)  # foreground where background has probability < 1/2, then best class
    cls = torch.where(prob[:, 0] < 0.5, cls + 1, 0)
    B, M = batch["inst_valid"].shape
    C = out["quaternion"].shape[1] // 4
    rows = []
    for b in range(B):
        preds = []  # (mask, class, score, quat) per connected component
        for c in range(1, C + 1):
            lab, n = ndimage.label((cls[b] == c).numpy())
            for j in range(1, n + 1):
                m = torch.from_numpy(lab == j)
                if int(m.sum()) < min_pixels:
                    continue
                q = out["quaternion"][b].view(C, 4, *m.shape)[c - 1][:, m].T
                preds.append((m, c, float(conf[b][m].mean()), naive_average(q)))
        gts = [(batch["instance_mask"][b] == k + 1, int(batch["inst_class"][b, k])) for k in range(M)
               if batch["inst_valid"][b, k]]
        pairs = []
        for gi, (gm, gc) in enumerate(gts):
            for pi, (pm, pc, _, _) in enumerate(preds):
                inter = int((gm & pm).sum())
                iou = inter / max(int((gm | pm).sum()), 1)
                if pc == gc and inter > 0 and iou >= iou_threshold:
                    pairs.append((iou, gi, pi))
        used_g, used_p, match = set(), set(), {}
        for iou, gi, pi in sorted(pairs, reverse=True):
            if gi not in used_g and pi not in used_p:
                used_g.add(gi)
                used_p.add(pi)
                match[gi] = pi
        for gi in range(len(gts)):
            rows.append((match.get(gi, -1), preds[match[gi]][3] if gi in match else torch.zeros(4)))
    return {"matched": torch.tensor([r[0] >= 0 for r in rows]), "pred_quat": torch.stack([r[1] for r in rows])}


# ----------------------------------------------------------------------------- benchmarks
def bench_render(n: int, size: int, chunk: int, repeats: int = 1) -> dict[str, tuple[float, float]]:
    """Images per second of wall-clock time and per second of this process's CPU time (the fair figure
    on a machine shared with other work), rendering ``chunk`` images per call as a DataLoader batch does
    (``__getitems__``), and one image per call (``ds[i]``), interleaved round by round; the median of
    ``repeats`` rounds of ``n`` images each."""
    ds = SyntheticPoseDataset(n + chunk, image_size=size, seed=0)
    ds.render(range(n, n + chunk))  # warm up
    rates: dict[str, list[tuple[float, float]]] = {"batched": [], "one by one": []}
    for _ in range(repeats):
        for name, step in (("batched", chunk), ("one by one", 1)):
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(0, n, step):
                ds.render(range(i, min(n, i + step)))
            rates[name].append((n / (time.perf_counter() - start), n / (time.process_time() - cpu)))
    return {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
            for name, rs in rates.items()}


def three_object_batch(batch_size: int = 32) -> dict:
    ds = SyntheticPoseDataset(2000, image_size=64, seed=0)
    samples = []
    for i in range(len(ds)):
        s = ds[i]
        if int(s["inst_valid"].sum()) == 3:
            samples.append(s)
        if len(samples) == batch_size:
            break
    return torch.utils.data.default_collate(samples)


def bench_aggregation(repeats: int, layout: torch.memory_format = torch.contiguous_format) -> tuple[float, float, bool]:
    """Median CPU seconds of the vectorised and the naive path on noisy model outputs laid out as ``layout``
    (FastPoseNet returns NCHW-contiguous ones), and whether their results agree."""
    batch = three_object_batch()
    C = 6
    g = torch.Generator().manual_seed(0)
    logits = torch.nn.functional.one_hot(batch["class_mask"], C + 1).permute(0, 3, 1, 2).float() * 4
    out = {"mask_logits": logits + torch.randn(logits.shape, generator=g),
           "quaternion": batch["quaternion_map"].repeat(1, C, 1, 1) + 0.2 * torch.randn(32, 4 * C, 64, 64, generator=g)}
    out = {k: v.contiguous(memory_format=layout) for k, v in out.items()}

    def vectorised():
        inst = gt_instance_quaternions(out, batch)
        ev = evaluate_batch(out, batch)
        return inst, ev

    def naive():
        return naive_gt_instances(out, batch), naive_evaluate(out, batch)

    (inst, ev), (inst_n, ev_n) = vectorised(), naive()
    agree = bool(torch.equal(ev["matched"], ev_n["matched"])) and len(inst_n) == len(inst["pred"]) and \
        bool(((inst["pred"] * torch.stack(inst_n)).sum(-1).abs() > 1 - 1e-5).all()) and \
        bool(((ev["pred_quat"] * ev_n["pred_quat"]).sum(-1).abs()[ev["matched"]] > 1 - 1e-5).all())
    t_vec, t_naive = [], []
    for _ in range(repeats):  # CPU time of this process: robust to other load on the machine
        start = time.process_time()
        vectorised()
        t_vec.append(time.process_time() - start)
        start = time.process_time()
        naive()
        t_naive.append(time.process_time() - start)
    return statistics.median(t_vec), statistics.median(t_naive), agree


def bench_train_step(repeats: int, batch_size: int = 32, size: int = 64) -> dict[str, float]:
    """Median wall-clock seconds of one AdamW training step (forward, QLoss, backward, step) of the default
    FastPoseNet (resnet18, encoder to stride 16) and of the one that also uses ``layer4`` (stride 32),
    interleaved round by round so that both see the same load."""
    from fastpose.pose.losses import build_loss
    from fastpose.pose.model import FastPoseNet

    ds = SyntheticPoseDataset(batch_size, image_size=size, seed=0)
    batch = torch.utils.data.default_collate([ds[i] for i in range(batch_size)])
    loss_fn = build_loss("qloss")
    setups = {}
    for name, stride in (("default (stride 16)", 16), ("with layer4 (stride 32)", 32)):
        torch.manual_seed(0)
        model = FastPoseNet("resnet18", deepest_stride=stride)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=1e-4)
        setups[name] = (model, opt)

    def step(name: str) -> float:
        model, opt = setups[name]
        start = time.perf_counter()
        loss = loss_fn(model(batch["image"]), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in setups}
    for name in setups:  # warm up
        step(name)
    for _ in range(repeats):
        for name in setups:
            times[name].append(step(name))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500, help="images rendered for the rendering figure")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=32, help="images per render call (a DataLoader batch)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the aggregation benchmark")
    parser.add_argument("--render-repeats", type=int, default=3, help="rounds of the rendering benchmark")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-step", action="store_true", help="also time FastPoseNet training steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    np.random.seed(0)
    for name, (rate, cpu_rate) in bench_render(args.images, args.size, args.chunk, args.render_repeats).items():
        how = f"{args.chunk} per call" if name == "batched" else "1 per call"
        print(f"rendering {name} ({how}): {rate:.0f} images/s wall-clock, {cpu_rate:.0f} images per CPU-second, "
              f"at {args.size}x{args.size}, 1-3 objects, {args.threads} thread(s), median of {args.render_repeats} "
              f"rounds of {args.images} (target >= 500)")
    for name, layout in (("NCHW, as FastPoseNet returns them", torch.contiguous_format),
                         ("channels-last", torch.channels_last)):
        t_vec, t_naive, agree = bench_aggregation(args.repeats, layout)
        print(f"aggregation + matching, 32 images x 3 objects, outputs {name} (CPU time): vectorised "
              f"{t_vec * 1e3:.1f} ms, naive loop {t_naive * 1e3:.1f} ms, speed-up {t_naive / t_vec:.1f}x "
              f"(target >= 10x); results agree: {agree}")
    if args.train_step:
        for name, sec in bench_train_step(args.repeats).items():
            print(f"training step, resnet18 64x64 batch 32, {args.threads} thread(s), {name}: {sec * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
