"""The path of the GPU mode (``torch.compile``): the whole model traces as one graph with dynamic shapes
and trains as in eager mode. Runs on CPU, where the packing shortcuts step aside under compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seq2seq.core.text import PAD_ID
from seq2seq.models.asr import ASRModel, ASRModelConfig
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.transformer import TransformerConfig


def _loss(model, features, frames, tokens, token_lengths):
    """0.3 CTC + 0.7 cross-entropy over valid positions only, as the ASR task trains."""
    log_probs, lengths, logits = model(features, frames, tokens, token_lengths)
    ctc = F.ctc_loss(log_probs.transpose(0, 1), tokens, lengths, token_lengths, zero_infinity=True)
    targets = tokens.masked_fill(~lengths_to_mask(token_lengths, tokens.shape[1]), PAD_ID)
    attention = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)
    return 0.3 * ctc + 0.7 * attention


@pytest.mark.slow
def test_compiled_model_is_one_graph_and_matches_eager():
    torch.manual_seed(0)
    stack = dict(num_layers=1, d_model=16, num_heads=2, ffn_dim=32, dropout=0.0)
    model = ASRModel(
        ASRModelConfig(
            vocab_size=12,
            input_dim=20,
            conv_channels=4,
            encoder=TransformerConfig(**stack),
            decoder=TransformerConfig(**stack),
        )
    ).train()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)  # fullgraph: a graph break fails
    for batch, frames in enumerate(([40, 31, 22], [36, 36, 17])):  # second batch: new shapes, no recompile
        frames = torch.tensor(frames)
        features = torch.randn(3, int(frames.max()), 20)
        token_lengths = torch.tensor([6, 4, 2]) - batch
        tokens = torch.randint(5, 12, (3, int(token_lengths.max())))
        inputs = (features, frames, tokens, token_lengths)
        loss = _loss(compiled, *inputs)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        eager_loss = _loss(model, *inputs)
        eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
        for grad, eager_grad in zip(grads, eager_grads):
            torch.testing.assert_close(grad, eager_grad, rtol=1e-4, atol=1e-5)
