"""Batch-statistic norms in 2 processes (gloo) behave like 1 process holding the whole batch."""

from __future__ import annotations

import gc
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from distributed_support import assert_ranks_match_one_process

from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import BATCH_STATISTIC_NORMS, NormConfig, build_norm

D = 6
STEPS = 3  # warm-ups of 1 step: later steps use the running statistics (renorm r/d, PowerNorm psi)
LENGTHS = [(7, 3), (5, 9, 2)]  # per rank: different sizes, lengths and padded widths


def make_norm(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = NormConfig(kind=kind, momentum=0.3, renorm_warmup_steps=1, power_warmup_steps=1)
    norm = build_norm(config, D).train()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    return norm


def rank_batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, mask and upstream gradient of one rank at one step; padding holds garbage."""
    g = torch.Generator().manual_seed(100 * step + rank)
    lengths = torch.tensor(LENGTHS[rank])
    width = int(lengths.max()) + rank + 1
    mask = lengths_to_mask(lengths, width)
    x = 2.0 + 3.0 * torch.randn(len(lengths), width, D, generator=g)
    x = torch.where(mask.unsqueeze(-1), x, 1e4 * torch.randn(x.shape, generator=g))
    return x, mask, torch.randn(x.shape, generator=g)


def run_steps(kind: str, batches) -> dict[str, list[torch.Tensor]]:
    """Train-mode forward/backward per step; valid outputs, input gradients and buffers after each step."""
    norm = make_norm(kind)
    out: dict[str, list[torch.Tensor]] = {"y": [], "grad": [], "buffers": [], "param_grad": []}
    for x, mask, upstream in batches:
        x = x.clone().requires_grad_(True)
        norm.zero_grad(set_to_none=True)
        y = norm(x, mask)
        (y * upstream * mask.unsqueeze(-1)).sum().backward()
        out["y"].append(y[mask].detach())
        out["grad"].append(x.grad[mask])
        out["buffers"].append(torch.cat([b.float().reshape(-1) for b in norm.buffers()]))
        out["param_grad"].append(torch.cat([norm.weight.grad, norm.bias.grad]))
    return out


def worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for kind in BATCH_STATISTIC_NORMS:
            results[kind] = run_steps(kind, [rank_batch(rank, step) for step in range(STEPS)])
            # parameter gradients are per rank; DDP would sum them: do it here to compare
            for grad in results[kind]["param_grad"]:
                dist.all_reduce(grad)
        torch.save(results, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        gc.collect()  # free gloo-backed tensors first: otherwise the process sometimes aborts at exit
        dist.destroy_process_group()


def whole_batch(step: int):
    """Both ranks' utterances in one padded batch, in rank order."""
    parts = [rank_batch(rank, step) for rank in range(2)]
    width = max(x.shape[1] for x, _, _ in parts)

    def pad(t, value=0.0):
        return (
            torch.nn.functional.pad(t, (0, 0, 0, width - t.shape[1]), value=value)
            if t.dim() == 3
            else torch.nn.functional.pad(t, (0, width - t.shape[1]), value=False)
        )

    x = torch.cat([pad(x, 7e3) for x, _, _ in parts])
    mask = torch.cat([pad(m) for _, m, _ in parts])
    upstream = torch.cat([pad(u) for _, _, u in parts])
    return x, mask, upstream


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = lambda kind: run_steps(kind, [whole_batch(step) for step in range(STEPS)])  # noqa: E731
    assert_ranks_match_one_process(ranks, single, BATCH_STATISTIC_NORMS, STEPS, grad_atol=1e-5)
