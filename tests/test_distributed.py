"""The collectives of multi-process distillation, checked against one process on the union of the ranks' data."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robodistill.distill import distributed

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")

WORLD = 2
ROWS = 24  # per rank; ranks hold different numbers of rows in the moments check


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * ROWS, 5, generator=gen) * 3 + 1, torch.randn(WORLD * ROWS, 2, generator=gen)


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _rank(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x, y = _data()
        # uneven shares for the moments: rank 0 has 10 rows, rank 1 the other 38
        cut = 10
        mine = x[:cut] if rank == 0 else x[cut:]
        count, mean, var = distributed.global_moments(mine)
        # equal shares for the gradient (a mean loss per rank, averaged: the mean over the union)
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        model = _model()
        torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
        distributed.average_gradients(model)
        torch.save({"count": count, "mean": mean, "var": var,
                    "grads": [p.grad.clone() for p in model.parameters()],
                    "in_sync": distributed.in_sync(model), "rank_differs": _differs_when_a_buffer_differs(rank)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _differs_when_a_buffer_differs(rank: int) -> bool:
    """``in_sync`` compares buffers too: a module whose buffer differs across ranks is out of sync."""
    module = torch.nn.Linear(2, 2)
    torch.nn.init.zeros_(module.weight)
    torch.nn.init.zeros_(module.bias)
    module.register_buffer("stat", torch.full((3,), float(rank)))
    return not distributed.in_sync(module)


def test_moments_and_gradients_over_two_ranks_equal_one_process_on_the_union(tmp_path):
    mp.spawn(_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    x, y = _data()
    model = _model()
    torch.nn.functional.mse_loss(model(x), y).backward()
    xd = x.double()
    for out in ranks:
        assert out["count"] == WORLD * ROWS
        torch.testing.assert_close(out["mean"], xd.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out["var"], xd.var(0, unbiased=False), rtol=1e-10, atol=1e-10)
        for got, param in zip(out["grads"], model.parameters()):
            torch.testing.assert_close(got, param.grad, rtol=1e-5, atol=1e-7)
        assert out["in_sync"] and out["rank_differs"]
