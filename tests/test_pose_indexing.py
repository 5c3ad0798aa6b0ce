"""The index helpers behind the renderer and the aggregation."""

from __future__ import annotations

import torch

from fastpose.pose.indexing import flat_nonzero, index_dtype


def test_flat_nonzero_is_torch_nonzero() -> None:
    g = torch.Generator().manual_seed(0)
    cases = [torch.zeros(0, dtype=torch.bool), torch.zeros(7, dtype=torch.bool), torch.ones(7, dtype=torch.bool),
             torch.rand(100_003, generator=g) < 0.3, (torch.rand(64, 9, generator=g) < 0.5)[:, 3]]  # last: strided
    for mask in cases:
        got = flat_nonzero(mask)
        assert got.dtype == torch.long and torch.equal(got, mask.nonzero().squeeze(1))
    with torch.inference_mode():  # as in Lightning's validation loop
        assert torch.equal(flat_nonzero(cases[3]), cases[3].nonzero().squeeze(1))


def test_index_dtype_switches_to_int64_past_int32() -> None:
    assert index_dtype(2 ** 31 - 1) == torch.int32 and index_dtype(2 ** 31) == torch.long
