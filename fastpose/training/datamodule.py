"""LightningDataModule over the pose datasets, built from a RunConfig."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from fastpose.config import SPLIT_SEED_OFFSET, RunConfig


def build_datasets(config: RunConfig) -> tuple[Dataset, Dataset]:
    """(train, val) datasets for ``config.data`` (val: ``data.val_split``); the plain-PyTorch benchmark uses this too."""
    d = config.data
    if d.dataset == "synthetic":
        from fastpose.pose.data.synthetic import SyntheticPoseDataset

        common = dict(image_size=d.image_size, rotations=d.rotations, max_objects=d.max_objects)
        return (
            SyntheticPoseDataset(d.train_size, seed=d.seed, **common),
            SyntheticPoseDataset(d.val_size, seed=d.seed + SPLIT_SEED_OFFSET[d.val_split], **common),
        )
    from fastpose.pose.data.nocs import NOCSDataset

    common = dict(image_size=d.image_size, max_objects=d.max_objects)
    return NOCSDataset(d.data_root, "train", **common), NOCSDataset(d.data_root, "val", **common)


class PoseDataModule(pl.LightningDataModule):
    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = build_datasets(self.config)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        workers = self.config.data.num_workers
        generator = torch.Generator().manual_seed(self.config.train.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.config.train.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=shuffle and len(dataset) > self.config.train.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
