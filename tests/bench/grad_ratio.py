"""How strongly each rotation loss pulls on the shared layers, relative to the mask term: the weighting confound.

For each rotation loss (and representation), over several training batches, the ratio

    |d loss_rot / d shared| / |d loss_mask / d shared|          (at rot_weight = 1)

where ``shared`` is every parameter both terms reach: the encoder and the shared decoder (lateral, smooth,
reduce, stem_lateral, fuse), not the heads. The ratio at another weight ``w`` is ``w`` times it (the terms
are added linearly), so ``x 0.3`` below is the ratio at the study's former ``rot_weight = 0.3``. A loss whose
ratio is 4 times another's is, for the shared features, weighted 4 times more: comparing losses at one
``rot_weight`` compares weights as much as shapes.

    python tests/bench/grad_ratio.py                         # fresh model, 60 mask-only warm-up steps, 8 batches
    python tests/bench/grad_ratio.py --steps 0 --batches 16  # at initialisation
    python tests/bench/grad_ratio.py --checkpoint journal/runs/<label>/checkpoints/last.ckpt   # a trained run
    python tests/bench/grad_ratio.py --json ratios.json

Without ``--checkpoint``: a demo-sized quaternion network (the defaults of ``fastpose train``) is built from
``--seed`` and trained ``--steps`` steps with the mask, translation and size terms only (``rot_weight = 0``),
so the shared layers are past initialisation but owe nothing to any rotation loss. Every representation then
gets exactly these shared layers, mask head and geometry head, and its own rotation head freshly drawn from
``--seed``: the losses of one representation see the same network, and the representations differ in their
rotation head only. With ``--checkpoint`` (repeatable): each checkpoint's own network, for the losses that
fit its representation.

Measured on ``--batches`` batches of the synthetic training set (tabletop poses, the demo's data) that the
warm-up did not use; the median and the spread (quartiles, min-max) are over those batches. BatchNorm in
training mode, as in training. Deterministic on the CPU for a given seed and thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from fastpose.config import LOSS_REPRESENTATIONS, RunConfig  # noqa: E402

# (loss, representation) rows, in the order of the study.
ROWS = [("mse", "quaternion"), ("qloss", "quaternion"), ("pw-qloss", "quaternion"), ("geodesic", "quaternion"),
        ("geodesic", "6d"), ("chordal", "6d"), ("geodesic", "9d"), ("chordal", "9d"), ("qloss-neglog", "quaternion")]
HEADS = ("mask_head.", "quat_head.", "rot_head.", "geometry_head.")


def shared_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The encoder and the shared decoder: every parameter but the heads'."""
    return [p for n, p in model.named_parameters() if not n.startswith(HEADS)]


def grad_norm(value: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))


def batches(config: RunConfig, start: int, count: int) -> list[dict]:
    from fastpose.pose.data.synthetic import SyntheticPoseDataset

    d, B = config.data, config.train.batch_size
    ds = SyntheticPoseDataset((start + count) * B, image_size=d.image_hw, seed=d.seed, rotations=d.rotations,
                              max_objects=d.max_objects)
    return [torch.utils.data.default_collate(ds.__getitems__(list(range(k * B, (k + 1) * B))))
            for k in range(start, start + count)]


def warm_up(config: RunConfig, steps: int) -> torch.nn.Module:
    """A quaternion network after ``steps`` AdamW steps on the mask, translation and size terms only."""
    from fastpose.training.module import build_loss_fn, build_model

    torch.manual_seed(config.train.seed)
    model = build_model(config).train()
    if steps:
        loss_fn = build_loss_fn(config.override({"loss.rot_weight": 0.0}))
        opt = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
        for batch in batches(config, 0, steps):
            terms = loss_fn(model(batch["image"]), batch)
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
    return model


def with_head(base: torch.nn.Module, config: RunConfig, rotation: str) -> torch.nn.Module:
    """``base``'s network with a fresh ``rotation`` head (drawn from the seed); everything else copied."""
    from fastpose.training.module import build_model

    if rotation == "quaternion":
        return base
    torch.manual_seed(config.train.seed)
    model = build_model(config.override({"model.rotation": rotation})).train()
    own = {k: v for k, v in base.state_dict().items() if not k.startswith("quat_head.")}
    missing, unexpected = model.load_state_dict(own, strict=False)
    assert not unexpected and all(k.startswith("rot_head.") for k in missing), (missing, unexpected)
    return model


def measure(model: torch.nn.Module, config: RunConfig, losses: list[str], data: list[dict]) -> dict[str, dict]:
    """Per loss: the ratio (and both norms) on each batch, rot_weight = 1."""
    from fastpose.pose.losses import build_loss

    params = shared_parameters(model)
    rotation = model.rotation
    fns = {name: build_loss(name, eps=config.loss.eps, rot_weight=1.0, rotation=rotation) for name in losses}
    out: dict[str, dict] = {name: {"ratio": [], "rot": [], "mask": []} for name in losses}
    for batch in data:
        pred = model(batch["image"])
        mask = None
        for name, fn in fns.items():
            terms = fn(pred, batch)
            mask = grad_norm(terms["loss_mask"], params) if mask is None else mask  # the same for every loss
            rot = grad_norm(terms["loss_rot"], params)
            out[name]["ratio"].append(rot / mask)
            out[name]["rot"].append(rot)
            out[name]["mask"].append(mask)
    return out


def summary(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "min": min(values), "max": max(values),
            "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", action="append", type=Path, help="a Lightning checkpoint of fastpose train (repeatable)")
    ap.add_argument("--steps", type=int, default=60, help="mask-only warm-up steps of the fresh network (default 60)")
    ap.add_argument("--batches", type=int, default=8, help="batches measured (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", type=Path, help="also write the per-batch values and summaries here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    networks: list[tuple[str, torch.nn.Module, RunConfig]] = []
    if args.checkpoint:
        from fastpose.training.evaluate import load_checkpoint

        for path in args.checkpoint:
            model, config, _ = load_checkpoint(path)
            networks.append((str(path), model.train(), config))
        source = ", ".join(str(p) for p in args.checkpoint)
    else:
        config = RunConfig(name="GRAD_RATIO").override({"train.seed": args.seed, "data.seed": args.seed})
        base = warm_up(config, args.steps)
        for rotation in ("quaternion", "6d", "9d"):
            networks.append((rotation, with_head(base, config, rotation), config))
        source = f"fresh demo-size network, seed {args.seed}, {args.steps} mask-only warm-up steps"

    results = []
    for label, model, config in networks:
        start = 0 if args.checkpoint else args.steps  # batches the warm-up did not see
        data = batches(config, start, args.batches)
        losses = [name for name, rep in ROWS if rep == model.rotation and rep in LOSS_REPRESENTATIONS[name]]
        for name, values in measure(model, config, losses, data).items():
            results.append({"loss": name, "rotation": model.rotation, "network": label,
                            "ratio": summary(values["ratio"]), "rot_grad": summary(values["rot"]),
                            "mask_grad": summary(values["mask"]), "per_batch": values})
    order = {row: i for i, row in enumerate(ROWS)}
    results.sort(key=lambda r: order.get((r["loss"], r["rotation"]), len(order)))

    print(f"Gradient norm of the rotation term over the mask term's, on the shared layers (encoder + shared "
          f"decoder), rot_weight = 1; {source}; median and spread over {args.batches} batches of "
          f"{networks[0][2].train.batch_size} synthetic {networks[0][2].data.rotations} images.\n")
    print("| loss | rotation | ratio (median) | quartiles | min - max | x 0.3 (median) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        s = r["ratio"]
        print(f"| {r['loss']} | {r['rotation']} | {s['median']:.3f} | {s['q1']:.3f} - {s['q3']:.3f} | "
              f"{s['min']:.3f} - {s['max']:.3f} | {0.3 * s['median']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"source": source, "batches": args.batches, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
