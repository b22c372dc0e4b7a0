"""Cost of one ASR training step (forward, hybrid CTC/attention loss, backward, AdamW), reference workload.

Workload: 80-dim features, batch of 8 utterances of 3-8 s (300-800 frames), conv2d 4x subsampling
(256 channels), d_model 256, 4 heads, 12 encoder / 6 decoder layers, FFN 2048, dropout 0.1, vocabulary
5000, 15-40 target tokens (0.2 per encoder frame), CTC weight 0.3, 2 threads. Our ``ASRModel`` is timed
against ``torch.nn.Transformer`` of the same size, pre-norm, behind the same conv front-end, positional
encoding, CTC head, embedding and output layer, and against itself with the front-end convolving the
padded batch at once (the code before the per-utterance front-end), interleaved round by round.

Model FLOPs utilization (MFU) = useful FLOPs per step / step time / float32 matmul rate, where the useful
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention --
the CPU flash-attention kernel with PyTorch's own SDPA formula, registered below; forward and backward)
summed over the utterances run one at a time, i.e. without padding, and the matmul rate is the best time
of a 2048^3 float32 matmul measured in the same run. Executed FLOPs on the padded batch are reported too.
Peak memory is the peak-RSS growth across two training steps (``VmHWM`` of /proc/self/status) in a fresh
process per model: activations, gradients, AdamW state.

Usage::

    python benchmarks/train_step.py [--quick] [--rounds 5]
    python benchmarks/train_step.py --device cuda [--compile]   # bf16 autocast (not run on the CPU box)
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
import torch.nn.functional as F  # noqa: E402
from _timing import (
    autocast,
    count_flops,
    interleaved,
    machine,
    matmul_rate,
    median,
    median_ratio,
    timed_main,
)
from torch import nn  # noqa: E402
from torch.utils import flop_counter  # noqa: E402

from seq2seq.core.text import BLANK_ID, EOS_ID, PAD_ID, SOS_ID  # noqa: E402
from seq2seq.models.asr import ASRModel, ASRModelConfig  # noqa: E402
from seq2seq.nn.frontends import Conv2dSubsampling  # noqa: E402
from seq2seq.nn.masking import lengths_to_mask  # noqa: E402
from seq2seq.nn.positional import PositionalEncoding  # noqa: E402
from seq2seq.nn.transformer import TransformerConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"
SHAPES = {  # encoder layers, decoder layers, batch, min frames, max frames
    "default": (12, 6, 8, 300, 800),
    "quick": (3, 2, 4, 300, 500),
}
D_MODEL, HEADS, FFN, VOCAB, CTC_WEIGHT = 256, 4, 2048, 5000, 0.3


class TorchTransformerASR(nn.Module):
    """Baseline: ``nn.Transformer`` (pre-norm) with our conv front-end, positional encoding and heads."""

    def __init__(self, enc_layers: int, dec_layers: int):
        super().__init__()
        self.frontend = Conv2dSubsampling(80, D_MODEL, 4, 256)
        self.position = PositionalEncoding(D_MODEL, 0.1)
        self.transformer = nn.Transformer(
            D_MODEL, HEADS, enc_layers, dec_layers, FFN, 0.1, batch_first=True, norm_first=True
        )
        self.ctc_head = nn.Linear(D_MODEL, VOCAB)
        self.embedding = nn.Embedding(VOCAB, D_MODEL)
        self.output = nn.Linear(D_MODEL, VOCAB)

    def forward(self, features, feature_lengths, tokens_in, token_lengths):
        x, lengths = self.frontend(features, feature_lengths)
        src_pad = ~lengths_to_mask(lengths, x.shape[1])
        tgt_pad = ~lengths_to_mask(token_lengths, tokens_in.shape[1])
        causal = nn.Transformer.generate_square_subsequent_mask(tokens_in.shape[1], dtype=torch.bool)
        memory = self.transformer.encoder(self.position(x), src_key_padding_mask=src_pad)
        y = self.transformer.decoder(
            self.position(self.embedding(tokens_in)),
            memory,
            tgt_mask=causal.to(x.device),
            tgt_key_padding_mask=tgt_pad,
            memory_key_padding_mask=src_pad,
        )
        return self.ctc_head(memory).float().log_softmax(-1), lengths, self.output(y)


KINDS = ("ours", "ours, batched conv", "torch.nn.Transformer")


# PyTorch's FLOP counter has formulas for the CUDA attention kernels only: without these, the CPU flash
# attention kernel counts 0 and attention is missing from both the useful and the executed FLOPs.
@flop_counter.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


@flop_counter.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)
def _cpu_attention_backward_flops(
    grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs
) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def build(kind: str, enc_layers: int, dec_layers: int) -> nn.Module:
    """``ours``; ``ours, batched conv``: the front-end convolving the padded batch at once (as before
    per-utterance convolution); ``torch.nn.Transformer``: the baseline (per-utterance front-end too)."""
    torch.manual_seed(0)
    if kind == "torch.nn.Transformer":
        return TorchTransformerASR(enc_layers, dec_layers)
    stack = dict(d_model=D_MODEL, num_heads=HEADS, ffn_dim=FFN, dropout=0.1)
    model = ASRModel(
        ASRModelConfig(
            vocab_size=VOCAB,
            input_dim=80,
            subsampling=4,
            conv_channels=256,
            encoder=TransformerConfig(num_layers=enc_layers, **stack),
            decoder=TransformerConfig(num_layers=dec_layers, **stack),
        )
    )
    model.frontend.per_utterance = kind == "ours"
    return model


def make_batch(batch: int, min_frames: int, max_frames: int, device: str = "cpu", seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(min_frames, max_frames + 1, (batch,), generator=g)
    frames[0] = max_frames
    token_lengths = (frames // 4 // 5).clamp(min=1)  # 0.2 tokens per encoder frame
    features = torch.randn(batch, max_frames, 80, generator=g) * lengths_to_mask(frames).unsqueeze(-1)
    tokens = torch.randint(5, VOCAB, (batch, int(token_lengths.max())), generator=g)
    tokens = tokens * lengths_to_mask(token_lengths)
    inputs = torch.cat([torch.full((batch, 1), SOS_ID), tokens], 1)
    targets = torch.cat([tokens, torch.full((batch, 1), PAD_ID)], 1)
    targets[torch.arange(batch), token_lengths] = EOS_ID
    targets[~lengths_to_mask(token_lengths + 1, targets.shape[1])] = PAD_ID
    tensors = dict(
        features=features,
        frames=frames,
        inputs=inputs,
        targets=targets,
        tokens=tokens,
        token_lengths=token_lengths,
    )
    return {k: v.to(device) for k, v in tensors.items()}


def utterances(batch: dict) -> list[dict]:
    """Each utterance of the batch alone, trimmed to its own lengths (for the useful-FLOP count)."""
    out = []
    for i in range(batch["frames"].shape[0]):
        t, u = int(batch["frames"][i]), int(batch["token_lengths"][i])
        row = slice(i, i + 1)
        out.append(
            dict(
                features=batch["features"][row, :t],
                frames=batch["frames"][row],
                inputs=batch["inputs"][row, : u + 1],
                targets=batch["targets"][row, : u + 1],
                tokens=batch["tokens"][row, :u],
                token_lengths=batch["token_lengths"][row],
            )
        )
    return out


def loss_fn(model: nn.Module, batch: dict, device: str = "cpu") -> torch.Tensor:
    """The training loss of ``ASRTask``: ``0.3 * CTC + 0.7 * label-smoothed cross-entropy``."""
    with autocast(device):
        log_probs, lengths, logits = model(
            batch["features"], batch["frames"], batch["inputs"], batch["token_lengths"] + 1
        )
    ctc = F.ctc_loss(
        log_probs.float().transpose(0, 1),
        batch["tokens"],
        lengths,
        batch["token_lengths"],
        blank=BLANK_ID,
        zero_infinity=True,
    )
    attention = F.cross_entropy(
        logits.float().flatten(0, 1), batch["targets"].flatten(), ignore_index=PAD_ID, label_smoothing=0.1
    )
    return CTC_WEIGHT * ctc + (1 - CTC_WEIGHT) * attention


def make_step(model: nn.Module, batch: dict, device: str = "cpu", forward_model: nn.Module | None = None):
    # Fused AdamW, as the recipes train (seq2seq.training.optim), for every model compared.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    forward_model = forward_model or model

    def step() -> float:
        loss = loss_fn(forward_model, batch, device)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def peak_rss_mib() -> float:
    """Peak resident memory of this process: ``VmHWM`` (per address space, so not inherited across exec
    the way ``getrusage``'s ``ru_maxrss`` is); ``ru_maxrss`` where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_child(kind: str, shape: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    enc, dec, b, lo, hi = SHAPES[shape]
    model, batch = build(kind, enc, dec).train(), make_batch(b, lo, hi)
    step = make_step(model, batch)
    before = peak_rss_mib()
    step()
    step()
    queue.put(peak_rss_mib() - before)


def peak_memory_mib(kind: str, shape: str, threads: int) -> float:
    """Peak-RSS growth over two steps, in a fresh process so earlier allocations cannot hide it."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_peak_rss_child, args=(kind, shape, threads, queue))
    process.start()
    value = queue.get()
    process.join()
    return value


def run(args: argparse.Namespace) -> dict:
    device, shape = args.device, "quick" if args.quick else "default"
    torch.set_num_threads(args.threads)
    enc, dec, b, lo, hi = SHAPES[shape]
    batch = make_batch(b, lo, hi, device)
    kinds = list(KINDS)
    models = {k: build(k, enc, dec).to(device).train() for k in kinds}
    useful = count_flops(build("ours", enc, dec).train(), utterances(make_batch(b, lo, hi)), loss_fn)
    executed = {k: count_flops(build(k, enc, dec).train(), [make_batch(b, lo, hi)], loss_fn) for k in kinds}
    steps = {
        k: make_step(m, batch, device, torch.compile(m) if args.compile else None) for k, m in models.items()
    }
    for step in steps.values():  # untimed: one-time costs (kernel choice, allocator, AdamW state, compile)
        step()
    peak_dtype = torch.bfloat16 if device == "cuda" else torch.float32
    rate_before = matmul_rate(device, peak_dtype)
    times = interleaved(steps, args.rounds, args.budget, device)
    rate = max(rate_before, matmul_rate(device, peak_dtype))
    audio_frames = int(batch["frames"].sum())
    rows = []
    for kind in kinds:
        seconds = median(times[kind])
        rows.append(
            dict(
                model=kind,
                seconds_per_step=seconds,
                best_seconds=min(t[0] for t in times[kind]),
                cpu_seconds_per_step=median(times[kind], cpu=True),
                ratio_to_torch=median_ratio(times, kind, "torch.nn.Transformer"),
                frames_per_second=audio_frames / seconds,
                executed_gflop=executed[kind] / 1e9,
                mfu=useful / seconds / rate,
                best_mfu=useful / min(t[0] for t in times[kind]) / rate,
                peak_mib=(
                    peak_memory_mib(kind, shape, args.threads)
                    if device == "cpu"
                    else _cuda_peak_mib(steps[kind])
                ),
                all_seconds=[round(t[0], 3) for t in times[kind]],
            )
        )
    return dict(
        benchmark="train_step",
        shape=shape,
        device=device,
        compile=args.compile,
        encoder_layers=enc,
        decoder_layers=dec,
        batch=b,
        frames=batch["frames"].tolist(),
        token_lengths=batch["token_lengths"].tolist(),
        useful_gflop=useful / 1e9,
        matmul_gflops=rate / 1e9,
        matmul_dtype=str(peak_dtype),
        rounds=len(times["ours"]),
        memory_measure="peak RSS (VmHWM) growth over 2 steps in a fresh process"
        if device == "cpu"
        else "torch.cuda.max_memory_allocated",
        machine=machine(device),
        rows=rows,
    )


def _cuda_peak_mib(step) -> float:
    torch.cuda.reset_peak_memory_stats()
    step()
    return torch.cuda.max_memory_allocated() / 2**20


def print_table(result: dict) -> None:
    print(
        f"{result['shape']}: {result['encoder_layers']}+{result['decoder_layers']} layers, batch "
        f"{result['batch']} ({min(result['frames'])}-{max(result['frames'])} frames), {result['device']}, "
        f"{result['machine']['threads']} threads, matmul {result['matmul_gflops']:.1f} GFLOP/s, useful "
        f"{result['useful_gflop']:.1f} GFLOP/step, median of {result['rounds']} interleaved rounds"
    )
    print(
        f"{'model':<22}{'s/step':>8}{'best':>7}{'ratio':>7}{'frames/s':>10}{'exec GFLOP':>12}{'MFU':>7}"
        f"{'best MFU':>10}{'peak MiB':>10}"
    )
    for r in result["rows"]:
        print(
            f"{r['model']:<22}{r['seconds_per_step']:>8.3f}{r['best_seconds']:>7.3f}{r['ratio_to_torch']:>7.3f}"
            f"{r['frames_per_second']:>10.0f}{r['executed_gflop']:>12.1f}{r['mfu']:>7.1%}{r['best_mfu']:>10.1%}"
            f"{r['peak_mib']:>10.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3+2 layers, batch 4 (well under a minute)")
    timed_main(parser, run, print_table, rounds=5, budget=200.0, out=RESULTS)


if __name__ == "__main__":
    main()
