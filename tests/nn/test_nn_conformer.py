"""Conformer encoder: padding cannot reach valid frames (for every conv-module norm, packed and padded,
absolute and relative positions), the unmasked option shows why, 2 processes = 1, cached decoding =
full, and a tiny model learns."""

from __future__ import annotations

import copy
import gc
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from distributed_support import assert_ranks_match_one_process

from seq2seq.core.config import ConfigError, from_dict
from seq2seq.core.text import BLANK_ID, EOS_ID, PAD_ID, SOS_ID
from seq2seq.experiments import load_experiment
from seq2seq.models.asr import ASRModel, ASRModelConfig
from seq2seq.nn.conformer import ConformerConfig, ConformerEncoder
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import BATCH_STATISTIC_NORMS, NormConfig, _RunningStatsNorm
from seq2seq.nn.positional import RelativePositionalEncoding
from seq2seq.nn.relative_attention import relative_shift
from seq2seq.nn.transformer import Encoder, TransformerConfig

D = 16
KERNEL = 5
GARBAGE = 1e3  # scale of the values written into padded frames
CONV_NORMS = ["batch", "batch_renorm", "power", "layer", "rms", "group", "instance"]
LENGTHS = [5, 13, 9]  # utterance 0 is the shortest: its neighbours pad it by 8 frames, more than the kernel


def stack(**changes) -> TransformerConfig:
    fields = dict(num_layers=2, d_model=D, num_heads=2, ffn_dim=32, dropout=0.0, activation="swish")
    return TransformerConfig(**{**fields, **changes})


def conformer(kind: str = "batch", **changes) -> ConformerConfig:
    norm = NormConfig(kind=kind, groups=4, momentum=0.3, renorm_warmup_steps=1, power_warmup_steps=1)
    return ConformerConfig(**{"kernel_size": KERNEL, "conv_norm": norm, **changes})


def padded_batch(
    lengths: list[int], seed: int, garbage: float = GARBAGE
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) inputs whose padded frames hold large random values, and the mask."""
    g = torch.Generator().manual_seed(seed)
    mask = lengths_to_mask(torch.tensor(lengths))
    x = torch.randn(len(lengths), max(lengths), D, generator=g)
    return torch.where(mask.unsqueeze(-1), x, GARBAGE * torch.randn(x.shape, generator=g)), mask


def warm_up(encoder: torch.nn.Module, steps: int = 3) -> None:
    """Train-mode passes, so that running statistics are far from their initial (0, 1)."""
    encoder.train()
    with torch.no_grad():
        for step in range(steps):
            x, mask = padded_batch([11, 7, 13, 4], seed=50 + step)
            encoder(3.0 * x + 2.0, mask)
    norms = [m for m in encoder.modules() if isinstance(m, _RunningStatsNorm)]
    for norm in norms:
        assert (norm.running_var - 1).abs().max() > 0.1, "running statistics are still trivial"


def build(kind: str, layout: str, positions: str = "absolute", **changes) -> ConformerEncoder:
    torch.manual_seed(0)
    encoder = ConformerEncoder(stack(), conformer(kind, positions=positions, **changes))
    encoder.packable = encoder.packable and layout == "packed"
    return encoder


LAYOUTS = pytest.mark.parametrize("layout", ["packed", "padded"])
POSITIONS = pytest.mark.parametrize("positions", ["absolute", "relative"])


@pytest.mark.parametrize("kind", CONV_NORMS)
@LAYOUTS
@POSITIONS
@torch.no_grad()
def test_eval_output_alone_equals_output_in_a_padded_batch(kind, layout, positions):
    encoder = build(kind, layout, positions)
    warm_up(encoder)
    encoder.eval()
    x, mask = padded_batch(LENGTHS, seed=3)
    batch = encoder(x, mask)
    for b, n in enumerate(LENGTHS):
        alone = encoder(x[b : b + 1, :n], torch.ones(1, n, dtype=torch.bool))
        torch.testing.assert_close(batch[b, :n], alone[0], atol=1e-5, rtol=0)


def train_step(encoder: ConformerEncoder, x: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor):
    """Valid outputs, running statistics, parameter and input gradients of one forward/backward."""
    x = x.clone().requires_grad_(True)
    encoder.zero_grad(set_to_none=True)
    y = encoder(x, mask)
    (y[mask] * weights[: int(mask.sum())]).sum().backward()
    buffers = [b.clone() for b in encoder.buffers()]
    grads = [p.grad.clone() for p in encoder.parameters() if p.grad is not None]
    return y[mask].detach(), buffers, grads, x.grad[mask]


@pytest.mark.parametrize("kind", CONV_NORMS)
@LAYOUTS
def test_train_padding_changes_neither_statistics_nor_valid_outputs(kind, layout):
    """Other values in the padded frames, or more padded frames, leave the valid outputs, the running
    statistics and every gradient as they were."""
    encoder = build(kind, layout).train()
    state = copy.deepcopy(encoder.state_dict())
    initial = [b.clone() for b in encoder.buffers()]
    weights = torch.randn(64, D, generator=torch.Generator().manual_seed(9))
    x, mask = padded_batch(LENGTHS, seed=3)
    results = []
    for garbage_seed, extra in ((10, 0), (20, 0), (30, 6)):
        encoder.load_state_dict(state)
        wider = F.pad(x, (0, 0, 0, extra))
        wider_mask = F.pad(mask, (0, extra), value=False)
        other, _ = padded_batch([n + extra for n in LENGTHS], seed=garbage_seed)
        padded = torch.where(wider_mask.unsqueeze(-1), wider, other[:, : wider.shape[1]])
        results.append(train_step(encoder, padded, wider_mask, weights))
    y_a, stats_a, grads_a, gx_a = results[0]
    if kind in BATCH_STATISTIC_NORMS:
        assert any(not torch.equal(a, b) for a, b in zip(stats_a, initial)), "statistics did not move"
    for y_b, stats_b, grads_b, gx_b in results[1:]:
        torch.testing.assert_close(y_a, y_b, atol=1e-5, rtol=0)
        for a, b in zip(stats_a, stats_b):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
        assert len(grads_a) == len(grads_b) > 0
        for a, b in zip(grads_a, grads_b):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gx_a, gx_b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The unmasked option (ESPnet / NeMo / torchaudio): an utterance's output depends on its batch


def tiny_asr(encoder_kind: str = "conformer", vocab: int = 11, **conformer_changes) -> ASRModel:
    torch.manual_seed(0)
    config = ASRModelConfig(
        vocab_size=vocab,
        input_dim=12,
        conv_channels=4,
        encoder=stack(),
        decoder=stack(activation="relu"),
        encoder_kind=encoder_kind,
        conformer=conformer(**conformer_changes),
        scale_encoder_input=False,
    )
    return ASRModel(config)


def features(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded feature batch, as the data loader collates it."""
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), 12, generator=g) * lengths_to_mask(lengths_t).unsqueeze(-1)
    return x, lengths_t


def batch_dependence(model: ASRModel, train: bool) -> tuple[float, float]:
    """How much an utterance's encoder output depends on what is padded around it, and the mean |output|.

    Eval (running statistics after a warm-up): the shortest utterance alone against inside a batch of
    longer neighbours. Train (batch statistics, which legitimately depend on the other utterances): a
    batch against the same batch padded by 40 more (zero) feature frames, as another bucket would pad it.
    """
    model.train()
    with torch.no_grad():
        for step in range(3):
            model.encode(*features([80, 61, 47], seed=60 + step))
        model.train(train)
        x, lengths = features([30, 90, 70, 84], seed=4)
        if train:
            reference, memory_lengths = copy.deepcopy(model).encode(x, lengths)
            wider, _ = model.encode(F.pad(x, (0, 0, 0, 40)), lengths)
            valid = lengths_to_mask(memory_lengths, reference.shape[1])
            difference = (wider[:, : reference.shape[1]] - reference)[valid]
            return float(difference.abs().max()), float(reference[valid].abs().mean())
        memory, memory_lengths = model.encode(x, lengths)
        n = int(memory_lengths[0])
        alone, _ = model.encode(x[:1, :30], lengths[:1])
    return float((memory[0, :n] - alone[0]).abs().max()), float(alone.abs().mean())


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_unmasked_conv_norm_makes_outputs_depend_on_padding(train):
    """With the masked default an utterance's encoder output does not depend on the padding around it;
    with the unmasked option (statistics over padded frames, padding not zeroed before the depthwise
    kernel) it does."""
    masked, _ = batch_dependence(tiny_asr(), train)
    unmasked, scale = batch_dependence(tiny_asr(conv_norm_masked=False), train)
    mode = "train" if train else "eval"
    print(
        f"\n{mode}: max |difference| masked {masked:.2e}, unmasked {unmasked:.3f} (mean |output| {scale:.3f})"
    )
    # float32 rounding only: batch statistics summed over a wider (zero-padded) tensor differ in the last
    # bits, by an amount the CPU decides (train mode: 1.1e-5 on an AVX2 machine, under 1e-5 on earlier ones)
    assert masked < 1e-4
    assert unmasked > 0.05 * scale


def test_unmasked_option_keeps_the_padded_layout():
    assert not ConformerEncoder(stack(), conformer(conv_norm_masked=False)).packable
    assert not ConformerEncoder(stack(norm=NormConfig(kind="instance")), conformer()).packable
    assert ConformerEncoder(stack(), conformer("instance")).packable  # the conv norm runs padded anyway


# ---------------------------------------------------------------------------------------------
# Two processes with half a batch each = one process with the whole batch

RANK_LENGTHS = [(7, 12), (9, 4, 10)]
STEPS = 2


def rank_batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, mask = padded_batch(list(RANK_LENGTHS[rank]), seed=100 * step + rank)
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(7 + 100 * step + rank))
    return x, mask, upstream


def run_steps(kind: str, batches) -> dict[str, list[torch.Tensor]]:
    encoder = build(kind, "packed").train()
    out: dict[str, list[torch.Tensor]] = {"y": [], "grad": [], "buffers": [], "param_grad": []}
    for x, mask, upstream in batches:
        x = x.clone().requires_grad_(True)
        encoder.zero_grad(set_to_none=True)
        y = encoder(x, mask)
        (y * upstream * mask.unsqueeze(-1)).sum().backward()
        out["y"].append(y[mask].detach())
        out["grad"].append(x.grad[mask])
        out["buffers"].append(torch.cat([b.float().reshape(-1) for b in encoder.buffers()]))
        out["param_grad"].append(torch.cat([p.grad.reshape(-1) for p in encoder.parameters()]))
    return out


def rank_results(rank: int) -> dict[str, dict[str, list[torch.Tensor]]]:
    results = {}
    for kind in BATCH_STATISTIC_NORMS:
        results[kind] = run_steps(kind, [rank_batch(rank, step) for step in range(STEPS)])
        for grad in results[kind]["param_grad"]:  # DDP would sum them: do it here to compare
            dist.all_reduce(grad)
    return results


def worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(rank_results(rank), os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        # Free what is left of the autograd graphs before the group goes: without it, 1 run in 3 or so
        # aborts at interpreter exit ("terminate called without an active exception").
        gc.collect()
        dist.destroy_process_group()


def whole_batch(step: int):
    parts = [rank_batch(rank, step) for rank in range(2)]
    width = max(x.shape[1] for x, _, _ in parts)

    def pad(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 2:
            return F.pad(t, (0, width - t.shape[1]), value=False)
        return F.pad(t, (0, 0, 0, width - t.shape[1]), value=5e3)

    return tuple(torch.cat([pad(part[i]) for part in parts]) for i in range(3))


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = lambda kind: run_steps(kind, [whole_batch(step) for step in range(STEPS)])  # noqa: E731
    assert_ranks_match_one_process(ranks, single, BATCH_STATISTIC_NORMS, STEPS, grad_atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The ASR model with a Conformer encoder


@POSITIONS
@torch.no_grad()
def test_cached_decoding_equals_full_recomputation(positions):
    model = tiny_asr(positions=positions)
    model.train()
    model.encode(*features([80, 61, 47], seed=6))  # non-trivial running statistics
    model.eval()
    x, lengths = features([60, 38, 50], seed=2)
    memory, memory_lengths = model.encode(x, lengths)
    tokens = torch.randint(0, 11, (3, 7), generator=torch.Generator().manual_seed(3))
    full = model.decode(tokens, memory, memory_lengths)
    cache = model.new_cache()
    steps = [model.decode(tokens[:, t : t + 1], memory, memory_lengths, cache) for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def fixed_batch(vocab: int) -> dict[str, torch.Tensor]:
    x, lengths = features([64, 52, 40, 58], seed=8)
    token_lengths = torch.tensor([6, 5, 4, 6])
    tokens = torch.randint(5, vocab, (4, 6), generator=torch.Generator().manual_seed(9))
    tokens = tokens * lengths_to_mask(token_lengths, 6)
    inputs = torch.cat([torch.full((4, 1), SOS_ID), tokens], 1)
    targets = torch.cat([tokens, torch.full((4, 1), PAD_ID)], 1)
    targets[torch.arange(4), token_lengths] = EOS_ID
    return dict(
        x=x, lengths=lengths, tokens=tokens, token_lengths=token_lengths, inputs=inputs, targets=targets
    )


def hybrid_loss(model: ASRModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The recipes' training loss: ``0.3 * CTC + 0.7 * cross-entropy``."""
    token_lengths = batch["token_lengths"]
    log_probs, memory_lengths, logits = model(
        batch["x"], batch["lengths"], batch["inputs"], token_lengths + 1
    )
    ctc = F.ctc_loss(
        log_probs.transpose(0, 1),
        batch["tokens"],
        memory_lengths,
        token_lengths,
        blank=BLANK_ID,
        zero_infinity=True,
    )
    attention = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=PAD_ID)
    return 0.3 * ctc + 0.7 * attention


@POSITIONS
def test_a_tiny_conformer_asr_model_learns_a_fixed_batch(positions):
    model = tiny_asr(vocab=16, positions=positions).train()
    batch = fixed_batch(16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = hybrid_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], [round(v, 3) for v in losses]


# ---------------------------------------------------------------------------------------------
# Configuration and the pieces


def test_transformer_stays_the_default_with_its_state_dict_keys():
    tiny = {"num_layers": 1, "d_model": 16, "num_heads": 2, "ffn_dim": 32}
    config = from_dict(ASRModelConfig, {"vocab_size": 11, "encoder": tiny, "decoder": tiny})
    assert config.encoder_kind == "transformer"
    model = ASRModel(config)
    assert isinstance(model.encoder, Encoder)
    expected = {f"encoder.{key}" for key in Encoder(config.encoder).state_dict()}
    assert {key for key in model.state_dict() if key.startswith("encoder.")} == expected
    assert load_experiment("configs/asr/small.yaml").model.encoder_kind == "transformer"


def test_conformer_small_config_loads_and_builds():
    model = load_experiment("configs/asr/conformer_small.yaml").model
    assert model.encoder_kind == "conformer" and model.conformer.kernel_size == 15
    asr = ASRModel(model)
    assert isinstance(asr.encoder, ConformerEncoder)
    assert not any(key.startswith("encoder.relative") for key in asr.state_dict())


@pytest.mark.parametrize(
    "data, words",
    [
        ({"encoder_kind": "lstm"}, ["encoder_kind", "transformer", "conformer"]),
        ({"conformer": {"kernel_size": 4}}, ["kernel_size", "odd"]),
        ({"conformer": {"positions": "rotary"}}, ["positions", "absolute", "relative"]),
        (
            {"encoder_kind": "conformer", "conformer": {"conv_norm": {"kind": "group", "groups": 5}}},
            ["groups=5", "d_model=256"],
        ),
    ],
)
def test_invalid_conformer_config_is_a_one_line_error(data, words):
    with pytest.raises(ConfigError) as error:
        from_dict(ASRModelConfig, data)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_relative_shift_puts_distance_i_minus_j_at_i_j():
    t = 6
    scores = torch.randn(2, 3, t, 2 * t - 1)
    i, j = torch.arange(t)[:, None], torch.arange(t)[None]
    torch.testing.assert_close(relative_shift(scores), scores[..., i, t - 1 - i + j], atol=0, rtol=0)


def test_relative_positions_are_centred_and_grow():
    encoding = RelativePositionalEncoding(8, max_len=4)
    small, large = encoding(3), encoding(10)  # the second call grows the table
    assert small.shape == (5, 8) and large.shape == (19, 8)
    torch.testing.assert_close(large[9 - 2 : 9 + 3], small)  # distances 2 .. -2 in both
    torch.testing.assert_close(small[2], torch.tensor([0.0, 1.0] * 4))  # distance 0: sin 0, cos 0


def test_relative_positions_change_the_output():
    """Relative attention is not position-blind: reversing an utterance does not just reverse its output."""
    encoder = build("layer", "padded", "relative").eval()
    x, _ = padded_batch([9], seed=1)
    mask = torch.ones(1, 9, dtype=torch.bool)
    with torch.no_grad():
        forward, backward = encoder(x, mask), encoder(x.flip(1), mask).flip(1)
    assert (forward - backward).abs().max() > 1e-2


@POSITIONS
@torch.no_grad()
def test_empty_utterances_and_empty_batches_encode(positions):
    """Audio shorter than the front-end's receptive field gives no frames: a row of length 0, or none."""
    encoder = build("batch", "packed", positions).eval()
    x, mask = padded_batch([6, 0], seed=2)
    y = encoder(x, mask)
    torch.testing.assert_close(y[0], encoder(x[:1], mask[:1])[0], atol=1e-5, rtol=0)
    assert encoder(torch.zeros(2, 0, D), torch.zeros(2, 0, dtype=torch.bool)).shape == (2, 0, D)
