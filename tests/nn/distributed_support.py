"""The comparison both gloo tests make: two processes with half a batch each against one with all of it."""

from __future__ import annotations

from collections.abc import Callable

import torch


def assert_ranks_match_one_process(
    ranks: list[dict], single_run: Callable[[str], dict], kinds, steps: int, grad_atol: float = 1e-4
) -> None:
    """Per norm kind and step: outputs and input gradients (concatenated over ranks), and each rank's
    running statistics and all-reduced parameter gradients, equal the single process's."""
    for kind in kinds:
        single = single_run(kind)
        for step in range(steps):
            where = f"{kind} step {step}"
            y = torch.cat([rank[kind]["y"][step] for rank in ranks])
            torch.testing.assert_close(y, single["y"][step], atol=1e-5, rtol=1e-5, msg=f"outputs, {where}")
            grad = torch.cat([rank[kind]["grad"][step] for rank in ranks])
            torch.testing.assert_close(
                grad, single["grad"][step], atol=grad_atol, rtol=1e-4, msg=f"input gradients, {where}"
            )
            for r, rank in enumerate(ranks):
                for name, tolerance in (("buffers", 1e-5), ("param_grad", 1e-4)):
                    torch.testing.assert_close(
                        rank[kind][name][step],
                        single[name][step],
                        atol=tolerance,
                        rtol=tolerance,
                        msg=f"{name}, rank {r}, {where}",
                    )
