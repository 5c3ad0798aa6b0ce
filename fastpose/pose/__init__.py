"""The pose science, torch only (no Lightning, no journal).

- ``rotations``: scalar-last unit quaternions ``(x, y, z, w)``, matrices, stable geodesic angles.
- ``data.synthetic.SyntheticPoseDataset``: procedural NOCS-style scenes rendered in torch (the default data).
- ``data.nocs.NOCSDataset``: the NOCS layout on disk, poses by Umeyama alignment where not given.
- ``backbones`` / ``model.FastPoseNet``: ResNet encoders with torchvision names, FPN decoder, mask and
  per-class quaternion heads.
- ``aggregate``: vectorised per-instance quaternions, predicted instances, IoU matching, ``evaluate_batch``.
- ``losses``: ``LOSSES`` registry and ``build_loss`` (mse, qloss, pw-qloss, geodesic, qloss-neglog).
- ``metrics``: ``rotation_error_deg``, ``RotationAccuracy``, ``DegreeErrorMeanAP``.

Submodules are imported explicitly (``from fastpose.pose.losses import build_loss``), so importing this
package stays cheap.
"""
