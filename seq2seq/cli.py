"""``seq2seq`` command line: each subcommand is a typed function; its docstring is its help.

Implementations are imported inside each command so that ``seq2seq --help`` is instant and
inference never imports Lightning.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Literal

# ---------------------------------------------------------------------------------------------
# Commands


def train(config: str, overrides: list[str] | None = None) -> int:
    """Train a recipe; rerunning the same command resumes from its last checkpoint.

    Args:
        config: recipe YAML (configs/asr/*.yaml or configs/tts/*.yaml).
        overrides: field overrides such as --trainer.max_steps=100 --model.encoder.norm.kind=batch.
    """
    from seq2seq.config import load_experiment
    from seq2seq.training.run import train as run_training

    experiment = load_experiment(config, overrides)
    run_training(experiment)
    return 0


def export(
    checkpoint: str,
    out_dir: str,
    average: int = 1,
    select: Literal["best", "last"] = "best",
    trust_checkpoint: bool = False,
) -> int:
    """Turn a training checkpoint (or a run folder) into a model package for inference.

    Args:
        checkpoint: a .ckpt file, or a run folder (its best or last validated checkpoints are used).
        out_dir: package folder to write (safetensors weights, config, tokenizer, statistics).
        average: average N checkpoints of the run folder (batch-norm statistics are re-estimated).
        select: with a run folder: the N with the lowest validation loss, or the N most recent.
        trust_checkpoint: allow unpickling arbitrary objects (only for files you made yourself).
    """
    from seq2seq.training.export import export_run

    path = export_run(checkpoint, out_dir, average=average, trust=trust_checkpoint, select=select)
    print(f"model package -> {path}")
    return 0


def transcribe(
    model: str,
    inputs: list[str] | None = None,
    manifest: str | None = None,
    beam_size: int = 10,
    ctc_weight: float = 0.3,
    batch_size: int = 8,
    output_format: Literal["text", "jsonl"] = "text",
    output: str | None = None,
    window_seconds: float = 30.0,
) -> int:
    """Transcribe audio files, folders or a manifest with a model package.

    Args:
        model: model package folder (from `seq2seq export`).
        inputs: audio files or folders (searched for .wav/.flac/.ogg/.mp3).
        manifest: JSON Lines manifest of audio files instead of (or besides) inputs.
        beam_size: beam width; 1 with ctc_weight 0 is greedy.
        ctc_weight: weight of the CTC prefix score in joint decoding.
        batch_size: files decoded together.
        output_format: `text` (path<TAB>transcript) or `jsonl`.
        output: write results here instead of standard output.
        window_seconds: recordings longer than this are split into windows and stitched.
    """
    from seq2seq.inference import transcribe as run

    return run.transcribe_command(
        model,
        inputs or [],
        manifest,
        beam_size,
        ctc_weight,
        batch_size,
        output_format,
        output,
        window_seconds,
    )


def evaluate(
    model: str,
    manifest: str,
    out: str | None = None,
    beam_size: int = 10,
    ctc_weight: float = 0.3,
    batch_size: int = 8,
    asr_model: str | None = None,
    limit: int | None = None,
) -> int:
    """Score a package on a manifest: ASR prints WER/CER; TTS prints mel L1, MCD and round-trip CER.

    Args:
        model: ASR or TTS model package folder.
        manifest: JSON Lines manifest with reference texts (and audio).
        out: per-utterance results file (default: <model>/eval-<manifest name>.jsonl).
        beam_size: ASR beam width.
        ctc_weight: ASR weight of the CTC prefix score.
        batch_size: utterances decoded or synthesized together.
        asr_model: TTS only: ASR package that transcribes the synthesized audio (round-trip CER).
        limit: TTS only: evaluate the first N sentences.
    """
    from seq2seq.package import read_package_config

    task, _ = read_package_config(model)
    if task == "tts":
        import json
        from dataclasses import asdict

        from seq2seq.tts_evaluation import evaluate_tts

        out = out or str(Path(model) / f"eval-{Path(manifest).stem}.jsonl")
        print(json.dumps(asdict(evaluate_tts(model, manifest, asr_model, limit, batch_size, out)), indent=2))
        return 0
    from seq2seq.inference import transcribe as run

    return run.evaluate_command(model, manifest, out, beam_size, ctc_weight, batch_size)


def synthesize(
    model: str,
    texts: list[str] | None = None,
    out: str = "synthesized",
    text_file: str | None = None,
    batch_size: int = 16,
) -> int:
    """Synthesize mel spectrograms (.npy, .pt, .png) and Griffin-Lim audio (.wav) from text.

    Args:
        model: TTS model package folder.
        texts: sentences to speak.
        out: output folder.
        text_file: a file with one sentence per line, instead of (or besides) texts.
        batch_size: sentences synthesized together.
    """
    from seq2seq.synthesis import synthesize as run

    return run(model, texts or [], out, text_file=text_file, batch_size=batch_size)


def demo(out: str = "runs/demo", minutes: float = 9.5, tts_minutes: float = 4.0) -> int:
    """The main job: make the synthetic corpus, train ASR (and TTS), evaluate, transcribe, synthesize.

    Args:
        out: working folder for the corpus, runs and outputs.
        minutes: ASR training budget in minutes.
        tts_minutes: TTS training budget in minutes (0 skips TTS).
    """
    from seq2seq.demo import run_demo

    return run_demo(Path(out), minutes, tts_minutes)


def _prepare_commands() -> dict[str, Callable]:
    from seq2seq.data import prepare

    return {
        "synthetic": prepare.synthetic,
        "librispeech": prepare.librispeech,
        "ljspeech": prepare.ljspeech,
        "commonvoice": prepare.commonvoice,
    }


def _tokenizer_command() -> Callable:
    from seq2seq.data.prepare import tokenizer

    return tokenizer


COMMANDS: dict[str, Callable | str] = {
    "prepare": "corpus manifests: synthetic (eSpeak NG), librispeech, ljspeech, commonvoice",
    "tokenizer": "train a tokenizer on a manifest's texts",
    "train": train,
    "export": export,
    "transcribe": transcribe,
    "evaluate": evaluate,
    "synthesize": synthesize,
    "demo": demo,
}

# ---------------------------------------------------------------------------------------------
# Signature -> argparse


def _arg_help(doc: str) -> dict[str, str]:
    """The one-line help of each argument from a Google-style ``Args:`` section."""
    helps, in_args = {}, False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            in_args = True
        elif in_args and ":" in stripped:
            name, _, text = stripped.partition(":")
            helps[name.strip()] = text.strip()
    return helps


def _add_argument(parser: argparse.ArgumentParser, name: str, hint, default, help_text: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return  # structured options are for the Python API and YAML configs; the default applies
    kwargs: dict = {"help": help_text.replace("%", "%%")}
    if origin is list:
        kwargs.update(nargs="*", type=args[0])
    elif origin is Literal:
        kwargs.update(choices=args)
    elif hint is bool:
        kwargs.update(action=argparse.BooleanOptionalAction)
    else:
        kwargs["type"] = hint
    if default is inspect.Parameter.empty:
        parser.add_argument(name, **kwargs)
    else:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=default, **kwargs)


def _add_command(subparsers, name: str, function: Callable) -> None:
    doc = inspect.getdoc(function) or ""
    sub = subparsers.add_parser(name, help=doc.splitlines()[0], description=doc.split("\n\n")[0])
    sub.set_defaults(function=function)
    helps, hints = _arg_help(doc), typing.get_type_hints(function)
    for param in inspect.signature(function).parameters.values():
        if function is train and param.name == "overrides":
            continue  # the rest of the command line
        if function is train and param.name == "config":
            sub.add_argument("--config", "-c", required=True, help=helps["config"])
            continue
        is_positional_list = param.name in ("inputs", "texts")
        default = inspect.Parameter.empty if is_positional_list else param.default
        _add_argument(sub, param.name, hints[param.name], default, helps.get(param.name, ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq", description="Transformer ASR and TTS toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, function in COMMANDS.items():
        if name == "prepare":
            group = subparsers.add_parser(name, help=function).add_subparsers(dest="corpus", required=True)
            for corpus, preparer in _prepare_commands().items():
                _add_command(group, corpus, preparer)
        elif name == "tokenizer":
            _add_command(subparsers, name, _tokenizer_command())
        else:
            _add_command(subparsers, name, function)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "verbose", "corpus", "function")}
    if args.command == "train":
        kwargs["overrides"] = rest
    try:
        result = args.function(**kwargs)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        result = 130
    except (ValueError, OSError, RuntimeError) as error:  # our errors are one line and name the file
        if args.verbose:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        result = 2
    sys.exit(result if isinstance(result, int) else 0)
