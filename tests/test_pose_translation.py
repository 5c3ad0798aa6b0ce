"""Translation and size: the pixel-centre convention, targets, losses (gradcheck), robust voting, recovery."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from fastpose.pose.evaluation import PoseEvaluation, detect
from fastpose.pose.translation import (
    IRLS_STEPS, VOTE_SIGMA, back_project, group_mean, project, recover_translation, translation_losses,
)


def _perfect_output(batch: dict, num_classes: int = 6) -> dict:
    """Network outputs that say exactly the ground truth (mask, quaternions, centre offsets, depth, size)."""
    B, H, W = batch["class_mask"].shape
    logits = torch.nn.functional.one_hot(batch["class_mask"], num_classes + 1).permute(0, 3, 1, 2).float() * 10
    inst = batch["instance_mask"]
    slot = (inst - 1).clamp_min(0)
    t = batch["inst_trans"].gather(1, slot.view(B, -1, 1).expand(-1, -1, 3)).view(B, H, W, 3)
    size = batch["inst_size"].gather(1, slot.view(B, -1, 1).expand(-1, -1, 3)).view(B, H, W, 3)
    K = batch["intrinsics"][:, None, None].expand(B, H, W, 3, 3)
    t = torch.where(t[..., 2:] > 0, t, torch.tensor([0.0, 0.0, 1.0]))  # background: any point in front
    uv = project(t.reshape(-1, 3), K.reshape(-1, 3, 3)).view(B, H, W, 2)
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    offset = (uv - torch.stack([u, v], -1)) / torch.tensor([W, H])
    fg = (inst > 0)[..., None]
    return {"mask_logits": logits, "quaternion": batch["quaternion_map"].repeat(1, num_classes, 1, 1),
            "centre": torch.where(fg, offset, 0.0).permute(0, 3, 1, 2),
            "log_depth": torch.where(fg, t[..., 2:].clamp_min(1e-3).log(), 0.0).permute(0, 3, 1, 2),
            "log_size": torch.where(fg, size.clamp_min(1e-4).log(), 0.0).permute(0, 3, 1, 2).repeat(1, num_classes, 1, 1)}


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotation of the least-squares similarity dst ~ s R src + t (written here, independent of the loader's)."""
    xs, xd = src - src.mean(0), dst - dst.mean(0)
    U, _, Vt = np.linalg.svd(xd.T @ xs)
    D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def test_renderer_pixel_centres_back_project_to_the_pose(synthetic_batch) -> None:
    """Depth through K^-1 [u + 0.5, v + 0.5, 1] and the NOCS map give the pose back by Umeyama to < 0.05 deg."""
    b = synthetic_batch
    worst, shifted = 0.0, 0.0
    for i in range(len(b["image"])):
        K = b["intrinsics"][i].double().numpy()
        for k in range(b["inst_valid"].shape[1]):
            if not bool(b["inst_valid"][i, k]):
                continue
            v, u = np.nonzero((b["instance_mask"][i] == k + 1).numpy())
            if len(u) < 20:
                continue
            z = b["depth"][i].double().numpy()[v, u]
            nocs = b["nocs"][i].double().numpy()[:, v, u].T - 0.5
            for offset, name in ((0.5, "centre"), (0.0, "corner")):
                pts = (np.linalg.inv(K) @ np.stack([u + offset, v + offset, np.ones_like(u, float)])).T * z[:, None]
                R = _umeyama(nocs, pts)
                err = Rotation.from_matrix(R.T @ b["inst_rot"][i, k].double().numpy()).magnitude()
                if name == "centre":
                    worst = max(worst, math.degrees(err))
                else:
                    shifted = max(shifted, math.degrees(err))
    assert worst < 0.05, worst
    assert shifted > 0.1, shifted  # the other convention is measurably wrong: the test can tell them apart


def test_back_project_inverts_project() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.randn(50, 3, generator=g, dtype=torch.float64) * 0.2 + torch.tensor([0, 0, 0.7], dtype=torch.float64)
    K = torch.tensor([[80.0, 0, 33.0], [0, 75.0, 31.0], [0, 0, 1]], dtype=torch.float64).expand(50, 3, 3)
    assert torch.allclose(back_project(project(p, K), p[:, 2], K), p, atol=1e-12)


def test_losses_are_zero_at_the_truth_and_gradcheck(synthetic_batch) -> None:
    out = _perfect_output(synthetic_batch)
    terms = translation_losses(out, synthetic_batch)
    assert float(terms["loss_trans"]) < 1e-4 and float(terms["loss_size"]) < 1e-5
    # a 16 x 16 crop of image 0 around its first object's pixels (small enough for gradcheck)
    v, u = torch.nonzero(synthetic_batch["instance_mask"][0] == 1).float().mean(0).round().long().tolist()
    r, c = min(max(v - 8, 0), 48), min(max(u - 8, 0), 48)
    small = {k: x[:1, ..., r:r + 16, c:c + 16].contiguous() for k, x in synthetic_batch.items() if x.dim() >= 3
             and k not in ("inst_rot", "inst_quat", "inst_trans", "inst_size")}
    small.update({k: synthetic_batch[k][:1] for k in ("inst_valid", "inst_class", "inst_trans", "inst_size", "intrinsics")})
    assert int((small["instance_mask"] > 0).sum()) > 10
    g = torch.Generator().manual_seed(1)
    fields = [torch.randn(1, c, 16, 16, generator=g, dtype=torch.float64, requires_grad=True) for c in (2, 1, 18)]

    def f(centre, log_depth, log_size):
        t = translation_losses({"centre": centre, "log_depth": log_depth, "log_size": log_size}, small)
        return t["loss_trans"], t["loss_size"]

    assert torch.autograd.gradcheck(f, fields)


def test_losses_without_foreground_are_attached_zeros(synthetic_batch) -> None:
    empty = dict(synthetic_batch, instance_mask=torch.zeros_like(synthetic_batch["instance_mask"]))
    out = {k: v.requires_grad_() for k, v in _perfect_output(synthetic_batch).items()}
    terms = translation_losses(out, empty)
    assert float(terms["loss_trans"].detach()) == 0 and terms["loss_trans"].requires_grad


def test_robust_mean_resists_outlier_votes() -> None:
    """20 % of an instance's pixels vote 10 px away: the centre moves < 0.3 px (the plain mean moves 2 px)."""
    H = W = 32
    centre = torch.tensor([14.3, 17.6])
    v, u = torch.meshgrid(torch.arange(8, 20), torch.arange(10, 22), indexing="ij")
    pixel = (v * W + u).reshape(-1)
    uv = torch.stack([u.reshape(-1) + 0.5, v.reshape(-1) + 0.5], 1).float()
    votes = centre.expand_as(uv).clone()
    votes[::5] += torch.tensor([10.0, 0.0])
    offset = torch.zeros(1, 2, H, W)
    offset[0, :, pixel // W, pixel % W] = ((votes - uv) / torch.tensor([W, H])).T
    out = {"centre": offset, "log_depth": torch.full((1, 1, H, W), math.log(0.5)), "log_size": torch.zeros(1, 18, H, W)}
    K = torch.tensor([[[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]]])
    inst = torch.zeros(len(pixel), dtype=torch.long)
    _, _, got = recover_translation(out, pixel, inst, torch.zeros(1, dtype=torch.long), torch.ones(1, dtype=torch.long), K)
    plain = group_mean(votes, inst, 1)
    assert (got[0] - centre).norm() < 0.3 and (plain[0] - centre).norm() > 1.5


def test_perfect_outputs_recover_the_whole_pose(synthetic_batch) -> None:
    b = synthetic_batch
    out = _perfect_output(b)
    det = detect(out, b["intrinsics"])
    metric = PoseEvaluation()
    metric.update(det, b)
    values = metric.compute()
    # Two touching objects of one class merge into one detection (a mask-only limitation), so allow a miss.
    assert float(values["miss_rate"]) < 0.15
    assert float(values["trans_err_median_cm"]) < 0.05 and float(values["rot_err_median"]) < 0.1
    assert float(values["iou_75"]) > 0.8 and float(values["10deg_2cm"]) > 0.8


def test_one_convention_renderer_and_nocs_loader(tmp_path) -> None:
    """The renderer's rays are pixel_rays of its K; NOCS's matrices (OpenCV) gain half a pixel on loading."""
    from fastpose.pose.data.nocs import CAMERA_K, NOCSDataset, export_nocs_layout
    from fastpose.pose.data.synthetic import SyntheticPoseDataset
    from fastpose.pose.translation import pixel_rays

    ds = SyntheticPoseDataset(1, image_size=32)
    assert torch.equal(ds._on("cpu")["rays"], pixel_rays(ds.intrinsics, 32, 32).float())  # the renderer's rays
    assert torch.allclose(pixel_rays(ds.intrinsics, 32, 32)[0], torch.tensor([-15.5 / 32, -15.5 / 32, 1], dtype=torch.float64))
    stem = export_nocs_layout(ds, tmp_path, "val")[0]
    assert np.loadtxt(f"{stem}_intrinsics.txt")[0, 2] == 15.5  # written in OpenCV's convention
    loader = NOCSDataset(tmp_path, "val", image_size=32)
    assert torch.allclose(loader[0]["intrinsics"], ds.intrinsics)
    (tmp_path / "val" / "scene_1" / "0000_intrinsics.txt").unlink()
    assert loader.intrinsics_native(stem)[0, 2] == CAMERA_K[0, 2] + 0.5 == 320.0


def _recover_translation_reference(out: dict, pixel, instance, image_k, class_k, intrinsics):
    """``recover_translation`` as first written (advanced indexing per field): the reference of the faster one."""
    B, _, H, W = out["centre"].shape
    n = image_k.numel()
    image, p = pixel // (H * W), pixel % (H * W)
    scale = torch.tensor([W, H], dtype=torch.float32)
    uv = torch.stack([(p % W).float() + 0.5, (p // W).float() + 0.5], 1)
    votes = uv + out["centre"].flatten(2)[image, :, p].float() * scale
    centre = group_mean(votes, instance, n)
    for _ in range(IRLS_STEPS):
        d2 = ((votes - centre.index_select(0, instance)) ** 2).sum(1)
        centre = group_mean(votes, instance, n, 1.0 / (1.0 + d2 / (VOTE_SIGMA * W) ** 2))
    log_z = group_mean(out["log_depth"].flatten(2)[image, :, p].float(), instance, n)[:, 0]
    chan = (class_k.index_select(0, instance) - 1).clamp_min(0)[:, None] * 3 + torch.arange(3)
    log_size = group_mean(out["log_size"].flatten(2)[image[:, None], chan, p[:, None]].float(), instance, n)
    t = back_project(centre, log_z.exp(), intrinsics.float().index_select(0, image_k))
    return t, log_size.exp(), centre


def test_detect_is_bit_identical_to_the_reference_on_any_thread_count_and_layout(synthetic_batch) -> None:
    """A real batch through a seeded network: the gathers through memory give the reference's numbers bit for
    bit, in NCHW and channels-last, and ``detect`` gives the same detections whatever the thread count
    (it runs on one intra-op thread on CPU and leaves the caller's count as it was)."""
    from fastpose.pose.model import FastPoseNet

    b = synthetic_batch
    torch.manual_seed(3)
    with torch.no_grad():
        out = FastPoseNet(backbone="resnet18").eval()(b["image"])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        det = detect(out, b["intrinsics"])
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        det1 = detect(out, b["intrinsics"])
    finally:
        torch.set_num_threads(threads)
    assert det["score"].numel() > 0 and set(det) == set(det1)
    assert all(torch.equal(det[k], det1[k]) for k in det)
    args = (det["pixel"], det["pixel_instance"], det["image"], det["class_id"], b["intrinsics"])
    want = _recover_translation_reference(out, *args)
    for layout in (torch.contiguous_format, torch.channels_last):
        o = {k: v.contiguous(memory_format=layout) if v.dim() == 4 else v for k, v in out.items()}
        got = recover_translation(o, *args)
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    assert torch.equal(det["trans"], want[0]) and torch.equal(det["size"], want[1])
