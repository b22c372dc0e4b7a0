"""Cost of one Conformer encoder training step (forward, backward, AdamW), ours against torchaudio's.

Workload: the encoder of a Conformer ASR model after 4x subsampling: batch of 8 utterances of 3-8 s,
i.e. 75-200 encoder frames (the longest 200), d_model 256, 4 heads, 12 layers, FFN 1024 (each of the
two half-step blocks), depthwise kernel 31, dropout 0.1, 2 threads. The loss is the mean squared error of
the valid output frames against a fixed random target (the front-end and heads are the same for any
encoder, so they are left out). Timed, interleaved round by round in a fresh random order, each with its
own fused AdamW:

- ``ours``: :class:`~seq2seq.nn.conformer.ConformerEncoder`, masked batch norm in the conv module,
  absolute positions (added outside the stack, as torchaudio leaves them to the caller), Swish FFNs;
  on CPU the valid frames run packed (only the depthwise convolution and its norm see the padding).
- ``ours, padded``: the same model kept in the padded layout (what packing buys).
- ``ours, unmasked``: ``conv_norm_masked: false`` (statistics over padded frames, no zeroing before the
  depthwise kernel; padded layout, as it must be): what masking costs against ``ours, padded``.
- ``ours, relative``: relative-position self-attention instead of absolute positions.
- ``torchaudio``: ``torchaudio.models.Conformer`` of the same size (BatchNorm1d over padded frames).

``ratio`` is the median over rounds of a model's step time over torchaudio's in the same round. MFU:
useful FLOPs (``ours`` counted utterance by utterance, i.e. without padding, by ``FlopCounterMode``)
per second over the best float32 2048^3 matmul rate measured in the same run.

Usage::

    python benchmarks/conformer_step.py [--rounds 5] [--layers 12]
    python benchmarks/conformer_step.py --layers 2 --rounds 2      # a check that it runs (seconds)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
import torchaudio  # noqa: E402
from _timing import (
    count_flops,
    interleaved,
    machine,
    matmul_rate,
    median,
    median_ratio,
    timed_main,
)
from torch import nn  # noqa: E402
from train_step import _cpu_attention_flops  # noqa: E402, F401  (registers CPU attention FLOP formulas)

from seq2seq.nn.conformer import ConformerConfig, ConformerEncoder  # noqa: E402
from seq2seq.nn.masking import lengths_to_mask  # noqa: E402
from seq2seq.nn.positional import PositionalEncoding  # noqa: E402
from seq2seq.nn.transformer import TransformerConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "conformer_step.json"
D_MODEL, HEADS, FFN, KERNEL, BATCH, MIN_FRAMES, MAX_FRAMES = 256, 4, 1024, 31, 8, 75, 200
KINDS = ("ours", "ours, padded", "ours, unmasked", "ours, relative", "torchaudio")


class Ours(nn.Module):
    """Positions (absolute ones added here, scale 1 as for the front-end output) + our Conformer stack."""

    def __init__(self, layers: int, masked: bool = True, positions: str = "absolute"):
        super().__init__()
        stack = TransformerConfig(
            num_layers=layers, d_model=D_MODEL, num_heads=HEADS, ffn_dim=FFN, dropout=0.1, activation="swish"
        )
        conformer = ConformerConfig(kernel_size=KERNEL, conv_norm_masked=masked, positions=positions)
        self.position = PositionalEncoding(D_MODEL, 0.1, scale_input=False, absolute=positions == "absolute")
        self.encoder = ConformerEncoder(stack, conformer)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.position(x), lengths_to_mask(lengths, x.shape[1]))


class Torchaudio(nn.Module):
    """The same positions + ``torchaudio.models.Conformer``."""

    def __init__(self, layers: int):
        super().__init__()
        self.position = PositionalEncoding(D_MODEL, 0.1, scale_input=False)
        self.encoder = torchaudio.models.Conformer(D_MODEL, HEADS, FFN, layers, KERNEL, dropout=0.1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.position(x), lengths)[0]


def build(kind: str, layers: int) -> nn.Module:
    torch.manual_seed(0)
    match kind:
        case "ours":
            return Ours(layers)
        case "ours, padded":
            model = Ours(layers)
            model.encoder.packable = False
            return model
        case "ours, unmasked":
            return Ours(layers, masked=False)
        case "ours, relative":
            return Ours(layers, positions="relative")
        case "torchaudio":
            return Torchaudio(layers)
    raise ValueError(kind)


def make_batch(device: str = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(MIN_FRAMES, MAX_FRAMES + 1, (BATCH,), generator=g)
    lengths[0] = MAX_FRAMES
    mask = lengths_to_mask(lengths).unsqueeze(-1)
    x = torch.randn(BATCH, MAX_FRAMES, D_MODEL, generator=g) * mask  # the front-end zero-pads
    target = torch.randn(BATCH, MAX_FRAMES, D_MODEL, generator=g)
    return {k: v.to(device) for k, v in dict(x=x, lengths=lengths, target=target).items()}


def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    valid = lengths_to_mask(batch["lengths"], batch["x"].shape[1])
    y = model(batch["x"], batch["lengths"])
    return (y - batch["target"])[valid].square().mean()


def make_step(model: nn.Module, batch: dict[str, torch.Tensor], forward_model: nn.Module | None = None):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    forward_model = forward_model or model

    def step() -> float:
        loss = loss_fn(forward_model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def utterances(batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Each utterance alone, trimmed to its length (for the useful-FLOP count)."""
    out = []
    for i, n in enumerate(batch["lengths"].tolist()):
        out.append(
            dict(
                x=batch["x"][i : i + 1, :n],
                lengths=batch["lengths"][i : i + 1],
                target=batch["target"][i : i + 1, :n],
            )
        )
    return out


def run(args: argparse.Namespace) -> dict:
    device = args.device
    torch.set_num_threads(args.threads)
    batch = make_batch(device)
    models = {k: build(k, args.layers).to(device).train() for k in KINDS}
    useful = count_flops(build("ours", args.layers).train(), utterances(make_batch()), loss_fn)
    executed = {k: count_flops(build(k, args.layers).train(), [make_batch()], loss_fn) for k in KINDS}
    steps = {k: make_step(m, batch, torch.compile(m) if args.compile else None) for k, m in models.items()}
    for step in steps.values():  # untimed: one-time costs (allocator, AdamW state, compile)
        step()
    rate_before = matmul_rate(device)
    times = interleaved(steps, args.rounds, args.budget, device)
    rate = max(rate_before, matmul_rate(device))
    frames = int(batch["lengths"].sum())
    rows = []
    for kind in KINDS:
        seconds = median(times[kind])
        rows.append(
            dict(
                model=kind,
                parameters=sum(p.numel() for p in models[kind].parameters()),
                seconds_per_step=seconds,
                best_seconds=min(t[0] for t in times[kind]),
                cpu_seconds_per_step=median(times[kind], cpu=True),
                ratio_to_torchaudio=median_ratio(times, kind, "torchaudio"),
                frames_per_second=frames / seconds,
                executed_gflop=executed[kind] / 1e9,
                mfu=useful / seconds / rate,
                all_seconds=[round(t[0], 4) for t in times[kind]],
            )
        )
    mask_cost = median_ratio(times, "ours, padded", "ours, unmasked")
    return dict(
        benchmark="conformer_step",
        device=device,
        compile=args.compile,
        layers=args.layers,
        d_model=D_MODEL,
        heads=HEADS,
        ffn_dim=FFN,
        kernel=KERNEL,
        batch=BATCH,
        frames=batch["lengths"].tolist(),
        useful_gflop=useful / 1e9,
        matmul_gflops=rate / 1e9,
        rounds=len(times["ours"]),
        masked_over_unmasked_padded=mask_cost,
        machine=machine(device),
        rows=rows,
    )


def print_table(result: dict) -> None:
    frames, r = result["frames"], result
    print(
        f"conformer encoder: {r['layers']} layers, d {r['d_model']}, {r['heads']} heads, FFN {r['ffn_dim']}, "
        f"kernel {r['kernel']}, batch {r['batch']} ({min(frames)}-{max(frames)} frames), {r['device']}, "
        f"{r['machine']['threads']} threads, matmul {r['matmul_gflops']:.1f} GFLOP/s, useful "
        f"{r['useful_gflop']:.2f} GFLOP/step, median of {r['rounds']} interleaved rounds"
    )
    header = f"{'model':<16}{'params':>11}{'s/step':>9}{'best':>8}{'ratio':>7}{'frames/s':>10}"
    print(f"{header}{'exec GFLOP':>12}{'MFU':>7}")
    for row in result["rows"]:
        print(
            f"{row['model']:<16}{row['parameters']:>11,}{row['seconds_per_step']:>9.3f}{row['best_seconds']:>8.3f}"
            f"{row['ratio_to_torchaudio']:>7.3f}{row['frames_per_second']:>10.0f}{row['executed_gflop']:>12.2f}"
            f"{row['mfu']:>7.1%}"
        )
    print(f"masked / unmasked conv norm, both padded: {result['masked_over_unmasked_padded']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12, help="Conformer blocks (12 is the reference)")
    timed_main(parser, run, print_table, rounds=5, budget=300.0, out=RESULTS)


if __name__ == "__main__":
    main()
