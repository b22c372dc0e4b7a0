"""TTS synthesis real-time factor of the small config (configs/tts/small.yaml), batch 1 and 16.

RTF = compute seconds / seconds of audio produced, audio seconds = frames x hop / sample rate (mels only:
``TTSModel.infer``, encoder + autoregressive decoder with the KV cache + postnet; the Griffin-Lim
vocoder is not included). The model is randomly initialised, so the stop token is disabled (threshold
above 1) and every sentence runs to ``max_length_ratio x tokens`` frames: a fixed output length.
Batch sizes are interleaved round by round; medians are reported.

Usage::

    python benchmarks/tts_synthesis.py [--rounds 5] [--tokens 40] [--frames-per-token 5]
    python benchmarks/tts_synthesis.py --device cuda [--compile]   # bf16 autocast (not run on the CPU box)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
from _timing import (
    add_device_arguments,
    autocast,
    interleaved,
    machine,
    median,
    median_ratio,
    parse_arguments,
    write_json,
)

from seq2seq.decoding.tts import synthesize as synthesize_mels  # noqa: E402
from seq2seq.experiments import load_experiment  # noqa: E402
from seq2seq.models.tts import TTSModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "tts_synthesis.json"
VOCAB = 40  # a character vocabulary (reserved ids included)


def build(config_path: Path, device: str, compile_model: bool) -> tuple[TTSModel, dict]:
    experiment = load_experiment(config_path, [f"--model.vocab_size={VOCAB}"])
    torch.manual_seed(0)
    model = TTSModel(experiment.model).to(device).eval()
    if compile_model:
        model.decoder = torch.compile(model.decoder, dynamic=True)
        model.postnet = torch.compile(model.postnet, dynamic=True)
    features = experiment.data.features
    return model, dict(
        sample_rate=features.sample_rate,
        hop_length=features.hop_length,
        reduction_factor=experiment.model.reduction_factor,
    )


def synthesize(model: TTSModel, batch: int, tokens: int, ratio: float, device: str):
    generator = torch.Generator().manual_seed(batch)
    text = torch.randint(5, VOCAB, (batch, tokens), generator=generator).to(device)
    lengths = torch.full((batch,), tokens, device=device)

    def run() -> int:
        with torch.inference_mode(), autocast(device):
            out = synthesize_mels(model, text, lengths, max_length_ratio=ratio, stop_threshold=1.1)
        return int(out.mel_lengths.sum())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/tts/small.yaml", help="TTS config")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes to time")
    parser.add_argument("--tokens", type=int, default=40, help="input characters per sentence")
    parser.add_argument("--frames-per-token", type=float, default=5.0, help="output frames per character")
    parser.add_argument("--rounds", type=int, default=5, help="most timed rounds")
    parser.add_argument("--budget", type=float, default=120.0, help="stop starting rounds after this many s")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    add_device_arguments(parser)
    args = parse_arguments(parser)
    torch.set_num_threads(args.threads)
    model, audio = build(args.config, args.device, args.compile)
    runs = {
        f"batch {b}": synthesize(model, b, args.tokens, args.frames_per_token, args.device)
        for b in args.batches
    }
    frames = {name: run() for name, run in runs.items()}  # untimed warm-up; also the fixed frame counts
    times = interleaved(runs, args.rounds, args.budget, args.device)
    rows = []
    for name, batch in zip(runs, args.batches):
        seconds = median(times[name])
        audio_seconds = frames[name] * audio["hop_length"] / audio["sample_rate"]
        rows.append(
            dict(
                batch=batch,
                frames=frames[name],
                audio_seconds=audio_seconds,
                seconds=seconds,
                cpu_seconds=median(times[name], cpu=True),
                rtf=seconds / audio_seconds,
                best_rtf=min(t[0] for t in times[name]) / audio_seconds,
                time_ratio_to_first=median_ratio(times, name, next(iter(runs))),
            )
        )
    result = dict(
        benchmark="tts_synthesis",
        config=str(args.config.relative_to(ROOT)),
        device=args.device,
        compile=args.compile,
        tokens=args.tokens,
        frames_per_token=args.frames_per_token,
        decoder_steps=-(-int(args.tokens * args.frames_per_token) // audio["reduction_factor"]),
        rounds=len(next(iter(times.values()))),
        **audio,
        machine=machine(args.device),
        rows=rows,
    )
    print(
        f"{result['config']}: {args.tokens} characters -> {rows[0]['frames'] // args.batches[0]} frames "
        f"({result['decoder_steps']} decoder steps, r={audio['reduction_factor']}), {args.device}, "
        f"{result['machine']['threads']} threads, median of {result['rounds']} interleaved rounds"
    )
    print(f"{'batch':>6}{'audio s':>9}{'compute s':>11}{'RTF':>8}{'best RTF':>10}{'CPU s':>8}")
    for r in rows:
        print(
            f"{r['batch']:>6}{r['audio_seconds']:>9.2f}{r['seconds']:>11.3f}{r['rtf']:>8.4f}{r['best_rtf']:>10.4f}"
            f"{r['cpu_seconds']:>8.3f}"
        )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
