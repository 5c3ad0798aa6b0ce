"""Index helpers shared by the renderer and the aggregation: fast on CPU, plain torch elsewhere."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

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


@contextmanager
def single_threaded(device: torch.device | str) -> Iterator[None]:
    """Run the block with one intra-op thread when ``device`` is the CPU (elsewhere: nothing changes).

    For post-processing: a few hundred small passes over ~10^5 elements, each of which torch splits over
    its threads when it has more than 32,768 elements. Every such pass ends at a barrier that waits for
    every thread, so on a loaded machine, where the other threads wait for a core, each pass costs a time
    slice: measured on the shared 2-core machine, ``detect`` at 256 px, batch 32 took 500-1,300 ms of CPU
    on two threads against 60-100 ms on one (``tests/bench/bench_inference.py``). The results do not
    depend on the thread count (the ops are element-wise, gathers, scatters and per-column reductions).
    ``torch.set_num_threads`` is process-wide: torch work in other Python threads runs on one thread
    meanwhile too.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
