"""Decoding speed on the reference workload: greedy and beam search, with and without CTC.

Workload: a random-init ASR model (encoder 12 layers, decoder 6, d_model 256, 4 heads, FFN 2048,
80-dim features, 4x subsampling) decoding a batch of 8 random utterances of 3-8 s (300-800 frames) on
2 CPU threads. The EOS logit is pushed down so every hypothesis runs to the maximum length
(``max_length_ratio`` × encoder frames, 0.2 by default: 15-40 tokens, about 5 per second of audio,
BPE-like), which makes runs comparable. Also measures the cost of one decoder step with the KV cache
against a full recomputation, at several output lengths. Shallow fusion: beam 10 + CTC again with a
random-init language model (4 layers, d_model 256, 4 heads, FFN 1024, same vocabulary) at weight 0.3,
and the cost of one cached LM step at several lengths. With ``--encoders``: beam 10 + CTC 0.3 with a
Conformer encoder of the reference size (12 layers, d 256, 4 heads, two FFN halves of 1024, kernel 31, as
``conformer_step.py``) against the Transformer one, at batch 8 and batch 1, interleaved round by round.

Usage: ``python benchmarks/decoding.py [--quick]``; prints a table and writes
``benchmarks/results/decoding.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
from _timing import add_device_arguments, autocast, interleaved, median, median_ratio, parse_arguments, timed

from seq2seq.core.text import EOS_ID, SOS_ID
from seq2seq.decoding import DecodingConfig, beam_search, greedy_search
from seq2seq.models.asr import ASRModel, ASRModelConfig
from seq2seq.models.lm import LanguageModel, LMModelConfig
from seq2seq.nn.conformer import ConformerConfig
from seq2seq.nn.transformer import TransformerConfig

FRAMES_PER_SECOND = 100  # 10 ms hop
DEVICE = "cpu"  # set by --device; cuda runs under bf16 autocast


def build_model(vocab_size: int, encoder: str = "transformer") -> ASRModel:
    stack = dict(d_model=256, num_heads=4, ffn_dim=2048, dropout=0.0)
    conformer = dict(ffn_dim=1024, activation="swish") if encoder == "conformer" else {}
    config = ASRModelConfig(
        vocab_size=vocab_size,
        input_dim=80,
        subsampling=4,
        conv_channels=256,
        encoder=TransformerConfig(num_layers=12, **{**stack, **conformer}),
        decoder=TransformerConfig(num_layers=6, **stack),
        encoder_kind=encoder,
        conformer=ConformerConfig(kernel_size=31),
    )
    model = ASRModel(config).eval()
    with torch.no_grad():
        model.output.bias[EOS_ID] = -1e4  # hypotheses end only at the maximum length
    return model


def build_lm(vocab_size: int) -> LanguageModel:
    stack = TransformerConfig(num_layers=4, d_model=256, num_heads=4, ffn_dim=1024, dropout=0.0)
    return LanguageModel(LMModelConfig(vocab_size=vocab_size, decoder=stack)).eval()


def make_batch(batch: int, min_frames: int, max_frames: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_frames, max_frames + 1, (batch,), generator=generator)
    return torch.randn(batch, int(lengths.max()), 80, generator=generator), lengths


def search_rows(model, features, lengths, beams, ratio: float, lm=None) -> list[dict]:
    audio_seconds = float(lengths.sum()) / FRAMES_PER_SECOND
    runs = {
        ("encoder only", 0, 0.0): lambda: (model.encode(features, lengths), [])[1],
        ("greedy", 1, 0.0): lambda: greedy_search(model, features, lengths, ratio),
    }
    for beam in beams:
        for ctc_weight in (0.0, 0.3):
            config = DecodingConfig(beam_size=beam, ctc_weight=ctc_weight, max_length_ratio=ratio)
            runs["beam", beam, ctc_weight] = lambda c=config: [
                hyps[0].tokens for hyps in beam_search(model, features, lengths, c)
            ]
    if lm is not None:
        fused = DecodingConfig(beam_size=10, ctc_weight=0.3, max_length_ratio=ratio, lm_weight=0.3)
        runs["beam + LM", 10, 0.3] = lambda: [
            hyps[0].tokens for hyps in beam_search(model, features, lengths, fused, lm)
        ]
    rows = []
    for (search, beam, ctc_weight), run in runs.items():
        with torch.inference_mode(), autocast(DEVICE):
            seconds, cpu_seconds, out = timed(run, DEVICE)
        tokens = sum(map(len, out))
        rows.append(
            dict(
                search=search,
                beam=beam,
                ctc_weight=ctc_weight,
                seconds=seconds,
                cpu_seconds=cpu_seconds,
                tokens=tokens,
                seconds_per_utterance=seconds / len(lengths),
                cpu_seconds_per_utterance=cpu_seconds / len(lengths),
                real_time_factor=seconds / audio_seconds,
                tokens_per_second=tokens / seconds,
            )
        )
    return rows


@torch.inference_mode()
def step_costs(model, features, lengths, rows: int, positions: list[int], window: int = 5) -> list[dict]:
    """Cost of producing token ``U``: a cached step (mean of the ``window`` steps up to ``U``) against a
    full pass over ``U`` tokens, for ``rows`` hypotheses (utterances repeated as a beam would).
    """
    memory, memory_lengths = model.encode(features, lengths)
    repeat = torch.arange(memory.shape[0], device=memory.device).repeat_interleave(rows // memory.shape[0])
    memory, memory_lengths = memory[repeat], memory_lengths[repeat]
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, model.config.vocab_size, (len(repeat), max(positions)), generator=generator)
    tokens = tokens.to(memory.device)
    tokens[:, 0] = SOS_ID
    cache, steps, results = model.new_cache(), [], []
    for u in range(1, max(positions) + 1):
        steps.append(
            timed(lambda n=u: model.decode(tokens[:, n - 1 : n], memory, memory_lengths, cache), DEVICE)[:2]
        )
        if u in positions:
            wall, cpu, _ = timed(lambda n=u: model.decode(tokens[:, :n], memory, memory_lengths), DEVICE)
            cached_wall, cached_cpu = (sum(t) / len(steps[-window:]) for t in zip(*steps[-window:]))
            results.append(
                dict(
                    tokens=u,
                    rows=len(repeat),
                    cached_step_seconds=cached_wall,
                    cached_step_cpu_seconds=cached_cpu,
                    uncached_step_seconds=wall,
                    uncached_step_cpu_seconds=cpu,
                    cpu_speedup=cpu / cached_cpu,
                )
            )
    return results


def encoder_rows(args, features, lengths, batches: list[int], rounds: int = 3) -> list[dict]:
    """Beam 10 + CTC 0.3 per encoder kind, the batch decoded together (``B``) or one utterance at a time
    (1); ratios are against the Transformer in the same round."""
    config = DecodingConfig(beam_size=10, ctc_weight=0.3, max_length_ratio=args.max_length_ratio)
    models = {kind: build_model(args.vocab_size, kind).to(DEVICE) for kind in args.encoders}

    def run(model, size: int):
        with torch.inference_mode(), autocast(DEVICE):
            for start in range(0, len(lengths), size):
                length = lengths[start : start + size]
                beam_search(model, features[start : start + size, : int(length.max())], length, config)

    variants = {
        f"{kind} {size}": lambda m=model, n=size: run(m, n)
        for size in batches
        for kind, model in models.items()
    }
    times = interleaved(variants, rounds, budget_s=600.0, device=DEVICE)
    audio_seconds = float(lengths.sum()) / FRAMES_PER_SECOND
    rows = []
    for name, series in times.items():
        kind, size = name.split()
        reference = f"{args.encoders[0]} {size}"
        rows.append(
            dict(
                encoder=kind,
                batch=int(size),
                parameters=sum(p.numel() for p in models[kind].encoder.parameters()),
                seconds_per_utterance=median(series) / len(lengths),
                cpu_seconds_per_utterance=median(series, cpu=True) / len(lengths),
                real_time_factor=median(series) / audio_seconds,
                ratio=median_ratio(times, name, reference),
                rounds=series,
            )
        )
    return rows


def print_encoders(rows: list[dict]) -> None:
    print(f"\n{'encoder':<13}{'batch':>6}{'params':>12}{'s/utt':>9}{'RTF':>8}{'ratio':>7}{'CPU s/utt':>11}")
    for r in rows:
        print(
            f"{r['encoder']:<13}{r['batch']:>6}{r['parameters']:>12,}{r['seconds_per_utterance']:>9.3f}"
            f"{r['real_time_factor']:>8.4f}{r['ratio']:>7.3f}{r['cpu_seconds_per_utterance']:>11.3f}"
        )


@torch.inference_mode()
def lm_step_costs(lm, rows: int, positions: list[int], window: int = 5) -> list[dict]:
    """Cost of the LM's cached step producing token ``U`` (mean of the ``window`` steps up to ``U``)
    against a full pass over ``U`` tokens, for ``rows`` hypotheses."""
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(5, lm.config.vocab_size, (rows, max(positions)), generator=generator).to(DEVICE)
    tokens[:, 0] = SOS_ID
    cache, steps, results = lm.new_cache(), [], []
    for u in range(1, max(positions) + 1):
        steps.append(timed(lambda n=u: lm.log_probs(tokens[:, n - 1 : n], cache=cache), DEVICE)[:2])
        if u in positions:
            wall, cpu, _ = timed(lambda n=u: lm.log_probs(tokens[:, :n]), DEVICE)
            cached_wall, cached_cpu = (sum(t) / len(steps[-window:]) for t in zip(*steps[-window:]))
            results.append(
                dict(
                    tokens=u,
                    rows=rows,
                    cached_step_seconds=cached_wall,
                    cached_step_cpu_seconds=cached_cpu,
                    uncached_step_seconds=wall,
                    uncached_step_cpu_seconds=cpu,
                )
            )
    return results


def print_tables(search: list[dict], steps: list[dict], lm_steps: list[dict] | None = None) -> None:
    print(f"{'search':<13}{'beam':>5}{'ctc':>6}{'s/utt':>9}{'RTF':>8}{'tokens/s':>10}{'CPU s/utt':>11}")
    for r in search:
        print(
            f"{r['search']:<13}{r['beam']:>5}{r['ctc_weight']:>6.1f}{r['seconds_per_utterance']:>9.3f}"
            f"{r['real_time_factor']:>8.4f}{r['tokens_per_second']:>10.1f}"
            f"{r['cpu_seconds_per_utterance']:>11.3f}"
        )
    print(
        f"\n{'tokens':>7}{'rows':>6}{'cached ms':>11}{'uncached ms':>13}{'CPU ms cached':>15}{'uncached':>10}"
    )
    for r in steps:
        print(
            f"{r['tokens']:>7}{r['rows']:>6}{1e3 * r['cached_step_seconds']:>11.1f}"
            f"{1e3 * r['uncached_step_seconds']:>13.1f}{1e3 * r['cached_step_cpu_seconds']:>15.1f}"
            f"{1e3 * r['uncached_step_cpu_seconds']:>10.1f}"
        )
    plain = next((r for r in search if r["search"] == "beam" and r["beam"] == 10 and r["ctc_weight"]), None)
    fused = next((r for r in search if r["search"] == "beam + LM"), None)
    if plain and fused:
        print(f"\nbeam 10 + CTC + LM / without LM: {fused['seconds'] / plain['seconds']:.2f}x wall")
    if lm_steps:
        print(f"\n{'LM tokens':>9}{'rows':>6}{'cached ms':>11}{'uncached ms':>13}")
        for r in lm_steps:
            print(
                f"{r['tokens']:>9}{r['rows']:>6}{1e3 * r['cached_step_seconds']:>11.2f}"
                f"{1e3 * r['uncached_step_seconds']:>13.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 utterances, beams 1 and 10, one step length")
    parser.add_argument("--vocab-size", type=int, default=5000, help="output symbols (BPE-sized)")
    parser.add_argument("--max-length-ratio", type=float, default=0.2, help="output tokens per encoder frame")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/decoding.json"))
    parser.add_argument(
        "--encoders",
        nargs="*",
        default=["transformer", "conformer"],
        choices=("transformer", "conformer"),
        help="encoder kinds compared at beam 10 + CTC 0.3, batch 8 and 1 (none: skip the comparison)",
    )
    add_device_arguments(parser)
    args = parse_arguments(parser)
    global DEVICE
    DEVICE = args.device
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.vocab_size).to(DEVICE)
    if args.compile:
        model.decoder = torch.compile(model.decoder, dynamic=True)
    batch = 2 if args.quick else 8
    features, lengths = (t.to(DEVICE) for t in make_batch(batch, 300, 800, seed=0))
    beams = [1, 10] if args.quick else [1, 5, 10]
    with autocast(DEVICE):
        greedy_search(model, features[:1, :300], lengths[:1].clamp(max=300))  # warm-up: one-time kernel setup
    lm = build_lm(args.vocab_size).to(DEVICE)
    search = search_rows(model, features, lengths, beams, args.max_length_ratio, lm)
    positions = [25] if args.quick else [25, 50, 100]
    steps = step_costs(model, features, lengths, rows=batch * 10, positions=positions)
    lm_steps = lm_step_costs(lm, rows=batch * 10, positions=positions)
    print_tables(search, steps, lm_steps)
    encoders = encoder_rows(args, features, lengths, [batch, 1]) if args.encoders else []
    print_encoders(encoders)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(
        torch=torch.__version__,
        threads=args.threads,
        machine=platform.machine(),
        batch=batch,
        frames=lengths.tolist(),
        vocab_size=args.vocab_size,
        max_length_ratio=args.max_length_ratio,
        quick=args.quick,
        device=DEVICE,
        compile=args.compile,
        load_average=os.getloadavg(),
        cpus=os.cpu_count(),
    )
    args.output.write_text(
        json.dumps(
            dict(meta=meta, search=search, decoder_step=steps, lm_step=lm_steps, encoders=encoders), indent=2
        )
        + "\n"
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
