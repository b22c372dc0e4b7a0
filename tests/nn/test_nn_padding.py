"""Padding invariance of the Transformer stacks and the ASR model, for every norm kind and placement.

Padded frames are filled with large random values (not zeros) so that any leak shows up in the numbers.
"""

from __future__ import annotations

import pytest
import torch

from seq2seq.models.asr import ASRModel, ASRModelConfig
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NORM_KINDS, NormConfig, _RunningStatsNorm
from seq2seq.nn.transformer import Decoder, Encoder, TransformerConfig

D = 16
GARBAGE = 1e3  # scale of the values written into padded frames


def stack_config(kind: str, placement: str) -> TransformerConfig:
    return TransformerConfig(
        num_layers=2,
        d_model=D,
        num_heads=2,
        ffn_dim=32,
        dropout=0.0,
        norm=NormConfig(kind=kind, groups=4),
        placement=placement,
    )


def randomize_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every norm non-trivial affine parameters and running statistics (eval must use them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, _RunningStatsNorm):
                if hasattr(m, "running_mean"):
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            for name in ("weight", "bias"):
                p = getattr(m, name, None)
                if isinstance(p, torch.nn.Parameter) and p.dim() == 1 and "Norm" in type(m).__name__:
                    p.add_(0.3 * torch.randn(p.shape, generator=g))


def pad_with_garbage(x: torch.Tensor, lengths: torch.Tensor, seed: int) -> torch.Tensor:
    """Overwrite frames at and after ``lengths`` with large random values."""
    g = torch.Generator().manual_seed(seed)
    mask = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1)
    return torch.where(mask, x, GARBAGE * torch.randn(x.shape, generator=g))


def padded_batch(lengths: list[int], dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), dim, generator=g)
    return pad_with_garbage(x, lengths_t, seed + 1), lengths_t


PARAMS = pytest.mark.parametrize("placement", ["pre", "post"])
KINDS = pytest.mark.parametrize("kind", NORM_KINDS)


@KINDS
@PARAMS
def test_stacks_eval_outputs_do_not_depend_on_batch_neighbours(kind, placement):
    torch.manual_seed(0)
    config = stack_config(kind, placement)
    encoder, decoder = Encoder(config).eval(), Decoder(config).eval()
    randomize_norms(encoder, 1)
    randomize_norms(decoder, 2)
    src, src_len = padded_batch([5, 9, 12], D, seed=3)  # utterance 0 is the shortest
    tgt, tgt_len = padded_batch([4, 7, 6], D, seed=4)
    src_mask, tgt_mask = lengths_to_mask(src_len), lengths_to_mask(tgt_len)
    with torch.no_grad():
        memory = encoder(src, src_mask)
        out = decoder(tgt, tgt_mask, memory, src_mask)
        memory_padded = pad_with_garbage(memory, src_len, seed=5)  # garbage memory must not matter either
        out_garbage_memory = decoder(tgt, tgt_mask, memory_padded, src_mask)
        for b in range(3):
            s, u = int(src_len[b]), int(tgt_len[b])
            alone_memory = encoder(src[b : b + 1, :s], torch.ones(1, s, dtype=torch.bool))
            alone_out = decoder(tgt[b : b + 1, :u], None, alone_memory, torch.ones(1, s, dtype=torch.bool))
            torch.testing.assert_close(memory[b, :s], alone_memory[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(out[b, :u], alone_out[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(out_garbage_memory[b, :u], alone_out[0], atol=1e-5, rtol=0)


def train_step(encoder, decoder, src, src_len, tgt, tgt_len, weights):
    """One training forward/backward; returns valid outputs, running statistics and parameter grads."""
    src = src.clone().requires_grad_(True)
    src_mask, tgt_mask = lengths_to_mask(src_len), lengths_to_mask(tgt_len)
    memory = encoder(src, src_mask)
    out = decoder(tgt, tgt_mask, memory, src_mask)
    valid_memory = memory[src_mask]
    valid_out = out[tgt_mask]
    loss = (valid_out * weights[: valid_out.shape[0]]).sum() + valid_memory.square().mean()
    loss.backward()
    stats = {
        k: v.clone() for k, v in {**encoder.state_dict(), **decoder.state_dict()}.items() if "running" in k
    }
    grads = [p.grad.clone() for p in [*encoder.parameters(), *decoder.parameters()]]
    return valid_memory.detach(), valid_out.detach(), stats, grads, src.grad[src_mask]


@KINDS
@PARAMS
def test_stacks_train_padding_values_have_no_effect(kind, placement):
    torch.manual_seed(0)
    config = stack_config(kind, placement)
    encoder, decoder = Encoder(config).train(), Decoder(config).train()
    state = {
        **{f"e{k}": v.clone() for k, v in encoder.state_dict().items()},
        **{f"d{k}": v.clone() for k, v in decoder.state_dict().items()},
    }
    src, src_len = padded_batch([5, 9, 12], D, seed=3)
    tgt, tgt_len = padded_batch([4, 7, 6], D, seed=4)
    weights = torch.randn(64, D)
    results = []
    for seed in (10, 20):
        encoder.load_state_dict({k[1:]: v for k, v in state.items() if k[0] == "e"})
        decoder.load_state_dict({k[1:]: v for k, v in state.items() if k[0] == "d"})
        encoder.zero_grad(set_to_none=True)
        decoder.zero_grad(set_to_none=True)
        results.append(
            train_step(
                encoder,
                decoder,
                pad_with_garbage(src, src_len, seed),
                src_len,
                pad_with_garbage(tgt, tgt_len, seed + 1),
                tgt_len,
                weights,
            )
        )
    (mem_a, out_a, stats_a, grads_a, gx_a), (mem_b, out_b, stats_b, grads_b, gx_b) = results
    torch.testing.assert_close(mem_a, mem_b, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=0)
    assert stats_a.keys() == stats_b.keys()
    if kind in ("batch", "batch_renorm", "power", "instance"):
        assert stats_a, "batch-statistic norms must keep running statistics"
    for key in stats_a:
        assert torch.isfinite(stats_a[key]).all(), key
        torch.testing.assert_close(stats_a[key], stats_b[key], atol=1e-5, rtol=1e-5, msg=key)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gx_a, gx_b, atol=1e-5, rtol=1e-5)


def test_running_statistics_equal_those_of_valid_frames_only():
    """The batch norm's running mean after one step is exactly ``momentum * mean(valid frames)``."""
    from seq2seq.nn.norms import MaskedBatchNorm

    norm = MaskedBatchNorm(D, 1e-5, 0.5).train()
    x, lengths = padded_batch([3, 8, 5], D, seed=7)
    mask = lengths_to_mask(lengths)
    norm(x, mask)
    valid = x[mask]
    torch.testing.assert_close(norm.running_mean, 0.5 * valid.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.running_var, 0.5 + 0.5 * valid.var(0), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- ASR model end to end


def asr_model(kind: str, placement: str, frontend: str) -> ASRModel:
    stack = stack_config(kind, placement)
    config = ASRModelConfig(
        vocab_size=12,
        input_dim=20,
        subsampling=4,
        conv_channels=8,
        frontend_norm=NormConfig(kind=frontend, groups=4),
        encoder=stack,
        decoder=stack,
    )
    return ASRModel(config)


def asr_batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    feat_len = torch.tensor([23, 40, 31])
    tok_len = torch.tensor([3, 6, 5])
    features = torch.randn(3, 40, 20, generator=g)
    tokens = torch.randint(0, 12, (3, 6), generator=g)
    return features, feat_len, tokens, tok_len


def garbage_features(features, lengths, seed):
    return pad_with_garbage(features, lengths, seed)


def garbage_tokens(tokens, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    mask = lengths_to_mask(lengths, tokens.shape[1])
    return torch.where(mask, tokens, torch.randint(0, 12, tokens.shape, generator=g))


ASR_CASES = [
    ("layer", "pre", "batch"),
    ("batch", "pre", "batch"),
    ("batch", "post", "none"),
    ("power", "pre", "power"),
    ("instance", "post", "instance"),
    ("batch_renorm", "pre", "layer"),
    ("rms", "post", "group"),
]


@pytest.mark.parametrize("kind,placement,frontend", ASR_CASES)
def test_asr_eval_padding_invariance(kind, placement, frontend):
    torch.manual_seed(0)
    model = asr_model(kind, placement, frontend).eval()
    randomize_norms(model, 3)
    features, feat_len, tokens, tok_len = asr_batch(1)
    features = garbage_features(features, feat_len, 2)
    tokens = garbage_tokens(tokens, tok_len, 3)
    with torch.no_grad():
        memory, mem_len = model.encode(features, feat_len)
        ctc, _, logits = model(features, feat_len, tokens, tok_len)
        for b in range(3):
            t, u, s = int(feat_len[b]), int(tok_len[b]), int(mem_len[b])
            memory_alone, len_alone = model.encode(features[b : b + 1, :t], feat_len[b : b + 1])
            assert memory_alone.shape[1] == s == int(len_alone)
            torch.testing.assert_close(memory[b, :s], memory_alone[0], atol=1e-5, rtol=0)
            ctc_alone, _, logits_alone = model(
                features[b : b + 1, :t], feat_len[b : b + 1], tokens[b : b + 1, :u], tok_len[b : b + 1]
            )
            torch.testing.assert_close(ctc[b, :s], ctc_alone[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(logits[b, :u], logits_alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind,placement,frontend", ASR_CASES)
def test_asr_train_padding_values_have_no_effect(kind, placement, frontend):
    torch.manual_seed(0)
    model = asr_model(kind, placement, frontend).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    features, feat_len, tokens, tok_len = asr_batch(1)
    runs = []
    for seed in (5, 6):
        model.load_state_dict(state)
        model.zero_grad(set_to_none=True)
        ctc, mem_len, logits = model(
            garbage_features(features, feat_len, seed),
            feat_len,
            garbage_tokens(tokens, tok_len, seed),
            tok_len,
        )
        ctc_valid = ctc[lengths_to_mask(mem_len, ctc.shape[1])]
        logits_valid = logits[lengths_to_mask(tok_len, logits.shape[1])]
        (ctc_valid.exp().square().sum() + logits_valid.square().mean()).backward()
        running = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        runs.append((ctc_valid.detach(), logits_valid.detach(), running, grads))
    (ctc_a, log_a, run_a, grads_a), (ctc_b, log_b, run_b, grads_b) = runs
    torch.testing.assert_close(ctc_a, ctc_b, atol=1e-5, rtol=0)
    torch.testing.assert_close(log_a, log_b, atol=1e-5, rtol=0)
    for key in run_a:
        torch.testing.assert_close(run_a[key], run_b[key], atol=1e-5, rtol=1e-5, msg=key)
    assert len(grads_a) == len(grads_b)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, atol=1e-4, rtol=1e-4)


def test_asr_batch_with_an_utterance_too_short_to_subsample():
    """An utterance shorter than the front-end's receptive field gets no frames and harms no neighbour."""
    torch.manual_seed(0)
    model = asr_model("batch", "pre", "batch").train()
    features, _, tokens, tok_len = asr_batch(1)
    feat_len = torch.tensor([40, 4, 31])
    ctc, mem_len, logits = model(garbage_features(features, feat_len, 2), feat_len, tokens, tok_len)
    assert mem_len.tolist()[1] == 0
    assert torch.isfinite(ctc).all() and torch.isfinite(logits).all()
    logits[lengths_to_mask(tok_len, logits.shape[1])].square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        _, _, logits = model(features, feat_len, tokens, tok_len)
        _, _, alone = model(features[:1], feat_len[:1], tokens[:1, :3], tok_len[:1])
    torch.testing.assert_close(logits[0, :3], alone[0], atol=1e-5, rtol=0)
