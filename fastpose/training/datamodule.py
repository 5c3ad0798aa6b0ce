"""LightningDataModule over the pose datasets, built from a RunConfig.

Where synthetic images are rendered (``data.render_device``; ``docs/ARCHITECTURE.md``, "Rendering"):

- ``loader``: in the ``DataLoader``, i.e. in its ``data.num_workers`` worker processes, or in the training
  process when there are none; on the CPU.
- ``accelerator``: the loader (or its workers) only samples the scenes (numpy; ``SyntheticPoseDataset.scenes``,
  small tensors), Lightning moves them to the training device, and ``on_after_batch_transfer`` ray-casts the
  batch there (``render_scenes``). The batch the model sees is the same either way (bit for bit on the CPU).
- ``auto`` (default): ``accelerator`` when the model trains on a GPU (or another accelerator), and on the
  CPU without workers (the same ray cast in the same process, without unbinding and re-collating samples:
  6-12 % faster in ``tests/bench/bench_render.py``, README "Benchmarks"); ``loader`` on the CPU with workers.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from fastpose.config import SPLIT_SEED_OFFSET, RunConfig


def build_datasets(config: RunConfig) -> tuple[Dataset, Dataset]:
    """(train, val) datasets for ``config.data`` (val: ``data.val_split``); the plain-PyTorch benchmark uses this too."""
    d = config.data
    if d.dataset == "synthetic":
        from fastpose.pose.data.synthetic import SyntheticPoseDataset

        common = dict(image_size=d.image_hw, rotations=d.rotations, max_objects=d.max_objects)
        return (
            SyntheticPoseDataset(d.train_size, seed=d.seed, **common),
            SyntheticPoseDataset(d.val_size, seed=d.seed + SPLIT_SEED_OFFSET[d.val_split], **common),
        )
    from fastpose.pose.data.nocs import NOCSDataset

    common = dict(image_size=d.image_hw, max_objects=d.max_objects, fit=d.fit)
    return NOCSDataset(d.data_root, "train", **common), NOCSDataset(d.data_root, "val", **common)


class EpochOrderSampler(RandomSampler):
    """A shuffling sampler whose epoch orders depend on its generator alone, with or without workers.

    A ``DataLoader(shuffle=True, generator=g)`` drew, at the start of each epoch's iterator, a base seed
    for its workers from ``g`` (every epoch without workers, only the first with persistent ones), then
    the epoch's permutation; and a worker loader's prefetching ran ``RandomSampler`` to its end, where it
    draws one more (empty) permutation. So with workers the orders differed from the second epoch on. This
    sampler makes exactly the draws a training run without workers made from ``g`` per epoch (one int64,
    then the permutation), so ``num_workers`` changes no order (tested).
    """

    def __init__(self, data_source, generator: torch.Generator) -> None:  # noqa: ANN001
        super().__init__(data_source, generator=generator)

    def __iter__(self):  # noqa: ANN204
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # the loader's base-seed draw
        yield from torch.randperm(len(self.data_source), generator=self.generator).tolist()


class PoseDataModule(pl.LightningDataModule):
    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = build_datasets(self.config)

    def renders_on_device(self) -> bool:
        """Whether batches are ray-cast on the training device after the transfer (see the module docstring)."""
        mode = self.config.data.render_device
        if self.config.data.dataset != "synthetic" or mode == "loader":
            return False
        if mode == "accelerator":
            return True
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return False
        # auto: on an accelerator always; on the CPU when there are no workers (the ray cast then runs in
        # this process either way, minus the per-sample unbind and re-collate: measured 6-12 % faster); with
        # workers, in the workers (ray-casting here would leave them only the scene sampling)
        return trainer.strategy.root_device.type != "cpu" or self.config.data.num_workers == 0

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        workers = self.config.data.num_workers
        extra: dict = {}
        if shuffle:
            seed = self.config.train.seed
            # The order comes from the sampler's own generator; the loader's (its workers' base seeds) is
            # another one, so the order is the same with and without (persistent) workers.
            extra = {"sampler": EpochOrderSampler(dataset, generator=torch.Generator().manual_seed(seed)),
                     "generator": torch.Generator().manual_seed(seed)}
        if self.renders_on_device():
            from fastpose.pose.data.synthetic import SceneSampler

            dataset, extra["collate_fn"] = SceneSampler(dataset), _scenes_batch
        return DataLoader(
            dataset,
            batch_size=self.config.train.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=shuffle and len(dataset) > self.config.train.batch_size,
            **extra,
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):  # noqa: ANN001, ANN201
        if isinstance(batch, dict) and "scenes" in batch:  # sampled scenes, now on the training device
            return self.train_set.render_scenes(batch["scenes"])  # the renderer depends on the image size only
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


def _scenes_batch(scenes: dict) -> dict:
    """``collate_fn`` of a ``SceneSampler``: its ``__getitems__`` already packed the batch."""
    return {"scenes": scenes}
