"""Checkpoint averaging and the re-estimation of batch-norm statistics after it."""

from __future__ import annotations

import torch
from support import tiny_asr_config

from seq2seq.models.asr import ASRModel
from seq2seq.nn.norms import NormConfig, batch_statistic_norms
from seq2seq.training.export import average_state_dicts, recompute_norm_statistics


def tiny_model(kind: str) -> ASRModel:
    return ASRModel(tiny_asr_config(10, input_dim=12, norm=NormConfig(kind=kind)))


def test_float_tensors_are_averaged_and_integer_buffers_are_not():
    states = [{"w": torch.full((2,), float(i)), "steps": torch.tensor(10 * i)} for i in (1, 2, 3)]
    averaged = average_state_dicts(states)
    assert torch.equal(averaged["w"], torch.full((2,), 2.0))
    assert averaged["steps"].dtype == torch.long and int(averaged["steps"]) == 30


def test_recomputed_statistics_equal_the_plain_average_over_batches():
    torch.manual_seed(0)
    model = tiny_model("batch")
    batches = []
    for _ in range(3):
        lengths = torch.tensor([40, 31])
        batches.append(
            (torch.randn(2, 40, 12) * 3 + 1, lengths, torch.randint(5, 10, (2, 4)), torch.tensor([4, 3]))
        )
    norm = batch_statistic_norms(model)[0]
    norm.running_mean.fill_(99.0)  # stale statistics that no longer match the (averaged) weights
    captured = []
    hook = norm.register_forward_hook(lambda m, args, out: captured.append(args))

    def forward(m, batch):
        m(*batch)

    used = recompute_norm_statistics(model, iter(batches), forward)
    hook.remove()
    assert used == 3
    means = []
    for x, mask in captured:  # a packed encoder passes its valid frames alone, with no mask
        valid = x.flatten(0, 1) if mask is None else x[mask]
        means.append(valid.mean(0))
    assert torch.allclose(norm.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert not model.training and not norm.training  # left in eval mode
    assert norm.momentum == NormConfig().momentum  # restored
