"""Index helpers shared by the renderer and the aggregation: fast on CPU, plain torch elsewhere."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def flat_nonzero(mask: Tensor) -> Tensor:
    """Positions (n,) int64 of the true entries of a 1-D bool ``mask``, increasing: ``mask.nonzero()[:, 0]``.

    On CPU this goes through numpy's ``flatnonzero``, several times faster than ``torch.nonzero`` there
    (about 7x on 131k entries, one thread); elsewhere it is ``torch.nonzero``. Same result either way.
    """
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy())).long()
    return mask.nonzero().squeeze(1)


def index_dtype(bound: int) -> torch.dtype:
    """int32 for indices below ``bound`` when it fits (half the memory traffic of int64), else int64."""
    return torch.int32 if bound < 2 ** 31 else torch.long
