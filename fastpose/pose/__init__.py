"""The pose science, torch only (no Lightning, no journal).

- ``rotations``: conventions over roma (scalar-last unit quaternions ``(x, y, z, w)``, matrices, the 6D and
  9D representations), stable geodesic angles.
- ``data.synthetic.SyntheticPoseDataset``: procedural NOCS-style scenes rendered in torch (the default data).
- ``data.nocs.NOCSDataset``: the NOCS layout on disk at its native size (or resized, cropped, letterboxed),
  poses from NOCS's ground-truth files (``data.nocs_gts``, a restricted unpickler), else by Umeyama alignment.
- ``camera``: image sizes as ``(height, width)``, the synthetic camera, and ``fit_frame``: the map from an image
  to the network's input (resize, crop, letterbox) with its intrinsics.
- ``backbones`` / ``model.FastPoseNet``: ResNet encoders with torchvision names, FPN decoder, mask and
  per-class rotation heads (quaternion, 6D or 9D).
- ``aggregate``: vectorised per-instance rotations, predicted instances, IoU matching, ``evaluate_batch``.
- ``losses``: ``LOSSES`` registry and ``build_loss`` (mse, qloss, pw-qloss, geodesic, chordal, qloss-neglog).
- ``metrics``: ``rotation_error_deg``, ``RotationAccuracy``, ``DegreeErrorMeanAP``.

Submodules are imported explicitly (``from fastpose.pose.losses import build_loss``), so importing this
package stays cheap.
"""
