"""``seq2seq`` command line: each subcommand is a typed function; its docstring is its help.

The signature says how each argument is given: parameters without a default are positional,
``*name`` takes any number of positional values, keyword-only parameters without a default are
required options, and a ``*overrides: Override`` parameter takes the rest of the line as
``--section.field=value`` config overrides. Every value is checked (``CHECKS``) before its command
starts, and any refusal is one ``error:`` line, exit status 2. Implementations are imported inside each
command so that ``seq2seq --help`` is instant and inference never imports Lightning.
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
from typing import Literal, NewType, NoReturn

from seq2seq.cli_checks import check_options, is_option

Override = NewType("Override", str)  # one ``--section.field=value`` config override
SHORT_FLAGS = {"config": "-c"}

# ---------------------------------------------------------------------------------------------
# Commands


def train(*overrides: Override, config: str, init_from: str | None = None) -> int:
    """Train a recipe; rerunning the same command resumes from its last checkpoint.

    Args:
        overrides: field overrides such as --trainer.max_steps=100 --model.encoder.norm.kind=batch.
        config: recipe YAML (configs/asr/*.yaml, configs/tts/*.yaml or configs/lm/*.yaml).
        init_from: model package to fine-tune: the run starts from its weights, statistics and tokenizer.
    """
    from seq2seq.experiments import load_experiment
    from seq2seq.tasks import train as run_training

    run_training(load_experiment(config, list(overrides)), init_from=init_from)
    return 0


def export(
    checkpoint: str,
    out_dir: str,
    average: int = 1,
    select: Literal["best", "last"] = "best",
    trust_checkpoint: bool = False,
    onnx: bool = False,
    quantize: Literal["none", "int8"] = "none",
    calibration_manifest: str | None = None,
    quantize_tolerance: float = 0.5,
    lexicon: str | None = None,
) -> int:
    """Turn a training checkpoint (or a run folder) into a model package for inference.

    Args:
        checkpoint: a .ckpt file, a run folder (its best or last validated checkpoints), or a package to copy.
        out_dir: package folder to write (safetensors weights, config, tokenizer, statistics).
        average: average N checkpoints of the run folder (batch-norm statistics are re-estimated).
        select: with a run folder: the N with the lowest validation loss, or the N most recent.
        trust_checkpoint: allow unpickling arbitrary objects (only for files you made yourself).
        onnx: also write ONNX graphs (out_dir/onnx) for `transcribe --engine onnx` (needs seq2seq[onnx]).
        quantize: int8: quantize the linear layers for both engines, after measuring the CER it costs.
        calibration_manifest: manifest the int8 CER cost is measured on (required with --quantize int8).
        quantize_tolerance: refuse int8 when it loses more than this many CER points (absolute).
        lexicon: ASR: include this word list (`prepare lexicon`); the package's search then spells its words.
    """
    from seq2seq.tasks import Deployment, deploy
    from seq2seq.tasks import export as export_package

    precision = "int8" if quantize == "int8" else "fp32"
    deployment = Deployment(onnx, precision, calibration_manifest, quantize_tolerance)
    if onnx:
        from seq2seq.inference.onnx_engine import onnxruntime_module

        onnxruntime_module()  # a missing onnxruntime is an error before the package is written
    path = export_package(
        checkpoint, out_dir, average=average, trust=trust_checkpoint, select=select, lexicon=lexicon
    )
    print(f"model package -> {path}")
    if onnx or precision == "int8":
        deploy(path, deployment)
        print(f"{'ONNX graphs ' if onnx else ''}{precision} -> {path}")
    return 0


def transcribe(
    model: str,
    *inputs: str,
    manifest: str | None = None,
    beam_size: int | None = None,
    ctc_weight: float | None = None,
    batch_size: int = 8,
    output_format: Literal["text", "jsonl"] = "text",
    output: str | None = None,
    window_seconds: float = 30.0,
    device: str = "cpu",
    lightning: bool = False,
    engine: Literal["torch", "onnx"] = "torch",
    lm: str | None = None,
    lm_weight: float | None = None,
    length_bonus: float | None = None,
    ctc_window: int | None = None,
    nbest: int | None = None,
    rescore: bool = False,
    lexicon: str | None = None,
    lexicon_weight: float | None = None,
    oov_penalty: float | None = None,
) -> int:
    """Transcribe audio files, folders or a manifest with a model package.

    Args:
        model: model package folder (from `seq2seq export`).
        inputs: audio files or folders (searched for .wav/.flac/.ogg/.mp3).
        manifest: JSON Lines manifest of audio files instead of (or besides) inputs.
        beam_size: beam width (default: the package's decoding settings); 1 with ctc_weight 0 is greedy.
        ctc_weight: weight of the CTC prefix score in joint decoding (default: the package's).
        batch_size: files decoded together.
        output_format: `text` (path<TAB>transcript) or `jsonl`.
        output: write results here instead of standard output.
        window_seconds: recordings longer than this are split into windows and stitched.
        device: where the plain decoding loop runs (cpu, cuda, cuda:1, ...).
        lightning: decode through Lightning's predict loop instead (it picks the accelerator).
        engine: torch, or onnx: the package's ONNX graphs on onnxruntime (CPU; `export --onnx`).
        lm: language-model package (same tokenizer as the ASR model) fused into the beam search.
        lm_weight: weight of the LM's log-probability (default 0.6 with --lm).
        length_bonus: added to the score per output token (a positive bonus switches early stop to espnet).
        ctc_window: the CTC prefix score reads this many encoder frames each side of the alignment (0: all).
        nbest: with --output-format jsonl, write the N best hypotheses with per-scorer scores.
        rescore: re-rank the n-best list of a search without the LM by adding lm_weight x LM score.
        lexicon: word list (`word [weight]` lines; `seq2seq prepare lexicon`) the search spells words from.
        lexicon_weight: weight of the word list's unigram log-probability (default 0.3 with --lexicon).
        oov_penalty: nats a word outside the word list costs (default 30).
    """
    from seq2seq.commands import transcribe_files

    if nbest is not None and output_format != "jsonl":
        raise ValueError("--nbest writes n-best lists as JSON Lines: add --output-format jsonl")
    transcriber = _transcriber(model, device, beam_size, ctc_weight, engine, lightning)
    transcriber = _search(transcriber, device, lm, lm_weight, length_bonus, ctc_window, nbest, rescore)
    transcriber = _lexicon(transcriber, lexicon, lexicon_weight, oov_penalty)
    transcriber.keep_nbest = nbest is not None
    return transcribe_files(
        transcriber, list(inputs), manifest, batch_size, output_format, output, window_seconds, lightning
    )


def evaluate(
    model: str,
    manifest: str,
    out: str | None = None,
    beam_size: int | None = None,
    ctc_weight: float | None = None,
    batch_size: int = 8,
    asr_model: str | None = None,
    limit: int | None = None,
    device: str = "cpu",
    lightning: bool = False,
    engine: Literal["torch", "onnx"] = "torch",
    lm: str | None = None,
    lm_weight: float | None = None,
    length_bonus: float | None = None,
    ctc_window: int | None = None,
    rescore: bool = False,
    lexicon: str | None = None,
    lexicon_weight: float | None = None,
    oov_penalty: float | None = None,
) -> int:
    """Score a package on a manifest: ASR prints WER/CER; TTS mel L1, MCD, round-trip CER; LM perplexity.

    Args:
        model: ASR, TTS or LM model package folder.
        manifest: JSON Lines manifest with reference texts (and audio); for an LM also a text file.
        out: per-utterance results file (default: <model>/eval-<manifest name>.jsonl).
        beam_size: ASR beam width (default: the package's decoding settings).
        ctc_weight: ASR weight of the CTC prefix score (default: the package's).
        batch_size: utterances decoded or synthesized together.
        asr_model: TTS only: ASR package that transcribes the synthesized audio (round-trip CER).
        limit: TTS only: evaluate the first N sentences.
        device: where the plain loop runs (cpu, cuda, ...).
        lightning: ASR only: decode through Lightning's predict loop.
        engine: torch, or onnx: the package's ONNX graphs on onnxruntime (CPU; `export --onnx`).
        lm: ASR only: language-model package (same tokenizer) fused into the beam search.
        lm_weight: ASR only: weight of the LM's log-probability (default 0.6 with --lm).
        length_bonus: ASR only: added to the score per output token (positive: espnet early stop).
        ctc_window: ASR only: CTC prefix-score frames each side of the alignment (0: all).
        rescore: ASR only: re-rank the beam's n-best list with the LM instead of fusing it.
        lexicon: ASR only: word list (`seq2seq prepare lexicon`) the search spells words from.
        lexicon_weight: ASR only: weight of the word list's log-probability (default 0.3 with --lexicon).
        oov_penalty: ASR only: nats a word outside the word list costs (default 30).
    """
    from seq2seq import commands
    from seq2seq.inference.generate import Generator
    from seq2seq.inference.lm import LanguageModelScorer
    from seq2seq.inference.synthesize import Synthesizer
    from seq2seq.inference.transcribe import Transcriber
    from seq2seq.tasks import load_package

    loaded = load_package(model, device)
    out = out or str(Path(model) / f"eval-{Path(manifest).stem}.jsonl")
    if isinstance(loaded, LanguageModelScorer):
        return commands.evaluate_language_model(loaded, manifest, out, batch_size)
    if isinstance(loaded, Generator):  # text2text: PER/WER against every reference
        generator = loaded.with_decoding(beam_size=beam_size, ctc_weight=ctc_weight)
        return commands.evaluate_generator(generator, manifest, out, batch_size)
    if isinstance(loaded, Synthesizer):
        asr = _transcriber(asr_model, device, None, None, engine) if asr_model else None
        loaded = Synthesizer(loaded.package, _engine(model, engine, device, False, "tts"))
        return commands.evaluate_synthesizer(loaded, manifest, asr, limit, batch_size, out)
    # the loaded Transcriber has spelled the package's word list already: reuse it, do not read it again
    runner = _engine(model, engine, device, lightning)
    transcriber = Transcriber(loaded.package, engine=runner, lexicon=loaded.lexicon)
    transcriber = transcriber.with_decoding(beam_size=beam_size, ctc_weight=ctc_weight)
    transcriber = _search(transcriber, device, lm, lm_weight, length_bonus, ctc_window, None, rescore)
    transcriber = _lexicon(transcriber, lexicon, lexicon_weight, oov_penalty)
    return commands.evaluate_transcriber(transcriber, manifest, out, batch_size, lightning)


def synthesize(
    model: str,
    *texts: str,
    out: str = "synthesized",
    text_file: str | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    engine: Literal["torch", "onnx"] = "torch",
) -> int:
    """Synthesize mel spectrograms (.npy, .pt, .png) and Griffin-Lim audio (.wav) from text.

    Args:
        model: TTS model package folder.
        texts: sentences to speak.
        out: output folder.
        text_file: a file with one sentence per line, instead of (or besides) texts.
        batch_size: sentences synthesized together.
        device: where synthesis runs (cpu, cuda, ...).
        engine: torch, or onnx: the package's ONNX graphs on onnxruntime (CPU; `export --onnx`).
    """
    from seq2seq.inference.synthesize import Synthesizer, read_texts
    from seq2seq.tasks import load_model_package

    sentences, problems = read_texts(list(texts), text_file)
    for problem in problems:  # a line that cannot be read is left out; the others are spoken
        print(f"error: {problem}", file=sys.stderr)
    synthesizer = Synthesizer(load_model_package(model, device), _engine(model, engine, device, False, "tts"))
    return max(synthesizer.write(sentences, out, batch_size=batch_size), 1 if problems else 0)


def generate(
    model: str,
    *words: str,
    input: str | None = None,
    output_format: Literal["text", "jsonl"] = "text",
    output: str | None = None,
    nbest: int = 1,
    beam_size: int | None = None,
    ctc_weight: float | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> int:
    """Generate outputs for words with a text-to-text package (pronunciations with a G2P package).

    Args:
        model: text2text model package folder (from `seq2seq export`).
        words: words to pronounce.
        input: a file with one word per line, instead of (or besides) words.
        output_format: `text` (word<TAB>output, one line per n-best entry) or `jsonl`.
        output: write results here instead of standard output.
        nbest: outputs per word, best first (the beam is widened to at least N).
        beam_size: beam width (default: the package's decoding settings); 1 is greedy.
        ctc_weight: weight of the CTC prefix score (only for packages trained with CTC).
        batch_size: words decoded together.
        device: where decoding runs (cpu, cuda, ...).
    """
    from seq2seq.commands import generate_words
    from seq2seq.inference.generate import Generator
    from seq2seq.tasks import load_model_package

    generator = Generator(load_model_package(model, device))
    beam = max(beam_size or generator.config.beam_size, nbest)
    generator = generator.with_decoding(beam_size=beam, nbest=nbest, ctc_weight=ctc_weight)
    return generate_words(generator, list(words), input, output_format, output, batch_size)


def demo(out: str = "runs/demo", minutes: float = 8.7, tts_minutes: float = 2.5) -> int:
    """The main job: make the synthetic corpus, train ASR (and TTS), evaluate, transcribe, synthesize.

    Args:
        out: working folder for the corpus, runs and outputs.
        minutes: ASR training budget in minutes.
        tts_minutes: TTS training budget in minutes (0 skips TTS).
    """
    from seq2seq.demo import run_demo

    return run_demo(Path(out), minutes, tts_minutes)


def _transcriber(
    model: str,
    device: str,
    beam_size: int | None,
    ctc_weight: float | None,
    engine: str = "torch",
    lightning: bool = False,
):
    """An ASR package with the flags that were given overriding its saved decoding settings; with
    ``engine="onnx"`` its ONNX graphs run the search."""
    from seq2seq.inference.transcribe import Transcriber
    from seq2seq.tasks import load_model_package

    runner = _engine(model, engine, device, lightning)
    transcriber = Transcriber(load_model_package(model, device), engine=runner)
    return transcriber.with_decoding(beam_size=beam_size, ctc_weight=ctc_weight)


def _engine(model: str, engine: str, device: str, lightning: bool, task: str = "asr"):
    """None for the PyTorch model, or the package's ONNX graphs on onnxruntime."""
    if engine == "torch":
        return None
    if lightning or device != "cpu":
        raise ValueError("--engine onnx runs onnxruntime on the CPU: drop --lightning and --device")
    from seq2seq.inference.onnx_engine import OnnxASR, OnnxTTS
    from seq2seq.inference.onnx_files import ONNX_DIR

    return (OnnxASR if task == "asr" else OnnxTTS)(Path(model) / ONNX_DIR)


DEFAULT_LM_WEIGHT = 0.6  # --lm without --lm-weight: the best weight of the synthetic recipe's dev sweep


def _search(transcriber, device, lm, lm_weight, length_bonus, ctc_window, nbest, rescore: bool):
    """The search flags on top of the package's settings; the LM package is loaded (and its tokenizer
    compared with the ASR model's) before any audio is read."""
    from seq2seq.tasks import load_model_package

    if (rescore or lm_weight is not None) and lm is None:
        raise ValueError("--rescore and --lm-weight need a language model: add --lm PKG")
    if lm is not None:
        weight = DEFAULT_LM_WEIGHT if lm_weight is None else lm_weight
        transcriber = transcriber.with_lm(load_model_package(lm, device), weight, rescore)
    if rescore and nbest is None:  # rescoring needs a list to re-rank: the whole beam
        nbest = transcriber.config.beam_size
    if nbest is not None and nbest > transcriber.config.beam_size:
        raise ValueError(f"--nbest={nbest} is more than the beam ({transcriber.config.beam_size})")
    return transcriber.with_decoding(length_penalty=length_bonus, ctc_window=ctc_window, nbest=nbest)


DEFAULT_LEXICON_WEIGHT = 0.3  # --lexicon without --lexicon-weight: the synthetic recipe's dev sweep


def _lexicon(transcriber, lexicon: str | None, weight: float | None, oov_penalty: float | None):
    """The word list on top of the search flags, read and spelled before any audio is read: ``--lexicon``
    replaces the package's own list (``export --lexicon``); the weights alone retune the package's."""
    from seq2seq.inference.lexicon import WordList

    if lexicon is not None:
        words = WordList.read(lexicon)
        if weight is None and transcriber.lexicon_trie is None:
            weight = DEFAULT_LEXICON_WEIGHT
        return transcriber.with_lexicon(words, weight, oov_penalty)
    if weight is None and oov_penalty is None:
        return transcriber
    if transcriber.package.lexicon is None:
        raise ValueError("--lexicon-weight and --oov-penalty need a word list: add --lexicon FILE")
    return transcriber.with_decoding(lexicon_weight=weight, oov_penalty=oov_penalty)


def _prepare_commands() -> dict[str, Callable]:
    from seq2seq.data import prepare

    return {
        "synthetic": prepare.synthetic,
        "spoken": prepare.spoken,
        "librispeech": prepare.librispeech,
        "ljspeech": prepare.ljspeech,
        "commonvoice": prepare.commonvoice,
        "fsdd": prepare.fsdd,
        "lm-text": prepare.lm_text,
        "lexicon": prepare.lexicon,
        "cmudict": prepare.cmudict,
    }


def _tokenizer_command() -> dict[str, Callable]:
    from seq2seq.data.prepare import tokenizer

    return {"tokenizer": tokenizer}


# A name maps to a command, or to (help, group of commands) for commands with their own subcommands.
COMMANDS: dict[str, Callable | tuple[str, Callable[[], dict[str, Callable]]]] = {
    "prepare": (
        "corpus manifests: synthetic, spoken (eSpeak NG), librispeech, ljspeech, commonvoice, fsdd, cmudict;"
        " lm-text",
        _prepare_commands,
    ),
    "tokenizer": ("", _tokenizer_command),
    "train": train,
    "export": export,
    "transcribe": transcribe,
    "evaluate": evaluate,
    "synthesize": synthesize,
    "generate": generate,
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


def _value_options(hint) -> dict | None:
    """argparse keywords for values of type ``hint``; None for structured (dataclass) values."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:  # Optional[X]
        hint = next(a for a in args if a is not type(None))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return None  # structured options are for the Python API and YAML configs; the default applies
    if origin is list:
        return {"nargs": "*", "type": args[0]}
    if origin is Literal:
        return {"choices": args}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    parse = getattr(hint, "__supertype__", hint)
    return {"type": _none_or(parse) if optional else parse}


def _none_or(parse: Callable) -> Callable:
    """``none`` given for an optional value is Python's None (``--dev-speaker none``)."""

    def convert(text: str):
        return None if text.lower() == "none" else parse(text)

    convert.__name__ = parse.__name__  # argparse names the type in its errors: "invalid int value"
    convert.__wrapped__ = parse  # inspect.unwrap gives the value's type back
    return convert


def _add_parameter(parser: argparse.ArgumentParser, param: inspect.Parameter, hint, help_text: str) -> None:
    kwargs = _value_options(hint)
    if kwargs is None or hint is Override:
        return
    kwargs["help"] = help_text.replace("%", "%%")
    if param.kind is param.VAR_POSITIONAL:
        parser.add_argument(param.name, nargs="*", **kwargs)
    elif not is_option(param):
        parser.add_argument(param.name, **kwargs)
    else:
        flags = [f"--{param.name.replace('_', '-')}"] + (
            [SHORT_FLAGS[param.name]] if param.name in SHORT_FLAGS else []
        )
        required = param.default is param.empty
        default = None if required else param.default
        parser.add_argument(*flags, dest=param.name, default=default, required=required, **kwargs)


def _add_command(subparsers, name: str, function: Callable) -> None:
    doc = inspect.getdoc(function) or ""
    sub = subparsers.add_parser(name, help=doc.splitlines()[0], description=doc.split("\n\n")[0])
    sub.set_defaults(function=function)
    helps, hints = _arg_help(doc), typing.get_type_hints(function)
    for param in inspect.signature(function).parameters.values():
        _add_parameter(sub, param, hints[param.name], helps.get(param.name, ""))


def takes_overrides(function: Callable) -> bool:
    hints = typing.get_type_hints(function)
    return any(
        p.kind is p.VAR_POSITIONAL and hints.get(p.name) is Override
        for p in inspect.signature(function).parameters.values()
    )


class Parser(argparse.ArgumentParser):
    """Usage errors are one line too: ``error: ...`` and exit status 2 (subcommand parsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seq2seq", description="Transformer ASR and TTS toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, entry in COMMANDS.items():
        if callable(entry):
            _add_command(subparsers, name, entry)
            continue
        help_text, group = entry
        commands = group()
        if list(commands) == [name]:  # a single command imported late
            _add_command(subparsers, name, commands[name])
            continue
        nested = subparsers.add_parser(name, help=help_text).add_subparsers(dest="subcommand", required=True)
        for sub_name, function in commands.items():
            _add_command(nested, sub_name, function)
    return parser


def call(function: Callable, values: dict, rest: list[str]):
    """Call a command with parsed values: those before a ``*name`` and ``*name`` itself by position, the
    rest by keyword (parameters the parser does not offer, such as dataclasses, keep their defaults)."""
    params = list(inspect.signature(function).parameters.values())
    star = next((i for i, p in enumerate(params) if p.kind is p.VAR_POSITIONAL), None)
    if star is None:
        return function(**{p.name: values[p.name] for p in params if p.name in values})
    spread = rest if takes_overrides(function) else list(values.get(params[star].name) or [])
    before = [values[p.name] for p in params[:star]]
    after = {p.name: values[p.name] for p in params[star + 1 :] if p.name in values}
    return function(*before, *spread, **after)


class LineFormatter(logging.Formatter):
    """Log records as the CLI's own lines: ``error: ...`` and ``warning: ...``; information plain."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {line}"
        return f"warning: {line}" if record.levelno >= logging.WARNING else line


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not takes_overrides(args.function):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    values = {
        k: v for k, v in vars(args).items() if k not in ("command", "verbose", "subcommand", "function")
    }
    try:
        check_options(args.function, values)
        result = call(args.function, values, rest)
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
