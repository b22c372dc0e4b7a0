"""What the ``transcribe``, ``generate`` and ``evaluate`` commands print and write: one result, or one
error line, per file (or word); a summary line; per-utterance JSON Lines.

Exit status of every command that reads many inputs: 0 when nothing was reported, 1 when some input
was reported (an ``error:`` or ``warning:`` line: a file that failed, a manifest line left out, text
the model cannot speak as written) and the rest was done, 2 when nothing was done (``cli.main``).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from seq2seq.data.manifest import read_manifest
from seq2seq.data.text_corpus import read_sentences
from seq2seq.inference.audio_inputs import find_audio
from seq2seq.inference.generate import Generator
from seq2seq.inference.lm import LanguageModelScorer
from seq2seq.inference.synthesize import Synthesizer, read_texts
from seq2seq.inference.transcribe import SegmentDecoder, Transcriber


def _decoder(lightning: bool) -> SegmentDecoder | None:
    if not lightning:
        return None  # the plain loop: Lightning is not even imported
    from seq2seq.corpus_decoding import lightning_decoder

    return lightning_decoder()


def write_lines(lines: Iterable[str], output: str | None) -> None:
    """Write ``lines`` to standard output, or to ``output`` all or nothing.

    The file is written as a temporary file in the same folder, flushed to disk and renamed over
    ``output`` only when every line is in it: a run stopped half-way (an error, Ctrl-C, a kill) leaves
    the previous ``output`` as it was, or none, and never a half-written line.
    """
    if not output:
        sys.stdout.writelines(line + "\n" for line in lines)
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with mode 0o666 keeps the umask's permissions (mkstemp would make the file private).
        with open(
            os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8"
        ) as out:
            out.writelines(line + "\n" for line in lines)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class LineFile:
    """A results file written one whole line at a time, as results come.

    Each line goes out in one ``os.write`` of its bytes (no buffer holds half of it), so a run that is
    killed (even by SIGKILL) leaves the lines of the files done so far (only a kill inside the write of a
    line that crosses a page could cut it: the last line, without its newline); when a write fails
    part-way (a full disk) or the run stops with an exception, the file is cut back to its last whole line.
    """

    def __init__(self, path: str):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self.whole = 0  # bytes up to the end of the last whole line

    def write(self, line: str) -> None:
        data = memoryview((line + "\n").encode("utf-8"))
        while data:
            data = data[self._write(data) :]
        self.whole = os.lseek(self.descriptor, 0, os.SEEK_CUR)

    def _write(self, data: memoryview) -> int:
        return os.write(self.descriptor, data)

    def close(self, failed: bool) -> None:
        if failed:
            os.ftruncate(self.descriptor, self.whole)
        os.close(self.descriptor)


@contextmanager
def line_writer(output: str | None) -> Iterator:
    """``write(line)`` to standard output (flushed per line) or to a :class:`LineFile`."""
    if not output:
        yield lambda line: print(line, flush=True)
        return
    file, failed = LineFile(output), True
    try:
        yield file.write
        failed = False
    finally:
        file.close(failed)


def transcribe_files(
    transcriber: Transcriber,
    inputs: list[str],
    manifest: str | None,
    batch_size: int,
    output_format: str,
    output: str | None,
    window_seconds: float,
    lightning: bool = False,
) -> int:
    """Transcribe and write each result as soon as it is decoded, in input order.

    Returns:
        0 when every input was transcribed; 1 when anything was reported (a file that failed, a
        manifest line left out), each on its own ``error:`` line.
    """
    sources = [(path, 0.0, None) for path in find_audio(inputs)]
    problems: list[str] = []
    if manifest:
        utterances, problems = read_manifest(manifest)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        sources += [(u.audio_filepath, u.offset, u.duration if u.offset else None) for u in utterances]
    if not sources:
        raise ValueError("nothing to transcribe: give audio files, folders or --manifest")
    decoded = transcriber.stream_sources(sources, batch_size, window_seconds, decode=_decoder(lightning))
    failed = 0
    with line_writer(output) as write:
        for (path, _, _), (windows, error) in zip(sources, decoded):
            text = " ".join(d.text for d in windows if d.text)
            if error:
                failed += 1
                print(f"error: {error}", file=sys.stderr)
            elif output_format == "jsonl":
                row = {"audio_filepath": path, "text": text}
                if transcriber.keep_nbest:  # one list per window: one unless the file is longer than a window
                    row["nbest"] = [d.nbest for d in windows]
                write(json.dumps(row, ensure_ascii=False))
            else:
                write(f"{path}\t{text}")
    if failed or problems:
        left_out = f"; {len(problems)} manifest lines left out" if problems else ""
        print(
            f"{failed} of {len(sources)} files failed; {len(sources) - failed} transcribed{left_out}",
            file=sys.stderr,
        )
    return 1 if failed or problems else 0


def evaluate_transcriber(
    transcriber: Transcriber, manifest: str, out: str, batch_size: int, lightning: bool = False
) -> int:
    """Decode a manifest, print WER/CER and the real-time factor, write per-utterance results.

    Returns:
        0 when every manifest line was decoded; 1 when a line was left out or its audio failed.
    """
    from seq2seq.evaluation.asr import evaluate_asr  # torchmetrics: only when scoring

    result = evaluate_asr(transcriber, manifest, batch_size, decode=_decoder(lightning))
    write_lines([json.dumps(r, ensure_ascii=False) for r in result.rows], out)
    print(
        f"utterances {result.decoded}/{result.utterances}  WER {100 * result.wer:.2f}%  "
        f"CER {100 * result.cer:.2f}%  RTF {result.rtf:.3f}  ({_search_summary(transcriber)})  -> {out}"
    )
    return 0 if result.decoded == result.utterances and not result.left_out else 1


def _search_summary(transcriber: Transcriber) -> str:
    config = transcriber.config
    summary = f"beam {config.beam_size}, ctc_weight {config.ctc_weight}"
    if transcriber.lm is not None:
        how = "rescoring" if transcriber.rescore else "fused"
        summary += f", lm_weight {config.lm_weight} ({how})"
    if transcriber.lm is not None or config.length_penalty != 0:
        summary += f", length_bonus {config.length_penalty}"
    if transcriber.lexicon_trie is not None:
        words = transcriber.lexicon.trie.words
        summary += (
            f", lexicon {words} words (weight {config.lexicon_weight}, oov_penalty {config.oov_penalty})"
        )
    return summary


def evaluate_synthesizer(
    synthesizer: Synthesizer,
    manifest: str,
    asr: Transcriber | None,
    limit: int | None,
    batch_size: int,
    out: str,
) -> int:
    """Print the TTS metrics as JSON and write per-sentence results.

    Returns:
        0 when every sentence was scored as written; 1 when anything was reported (``reported``).
    """
    from seq2seq.evaluation.tts import evaluate_tts

    result = evaluate_tts(synthesizer, manifest, asr, limit, batch_size, out)
    print(json.dumps(asdict(result), indent=2))
    return 1 if result.reported else 0


def evaluate_language_model(scorer: LanguageModelScorer, text: str, out: str, batch_size: int) -> int:
    """Print the perplexity of a text file or manifest; write per-sentence log-probabilities.

    Returns 1 when some line could not be read or some sentence was left out (each is reported; a
    sentence with characters outside the vocabulary is scored, its UNK included, and reported too).
    """
    sentences, unreadable = read_sentences(text)
    for problem in unreadable + scorer.problems(sentences):
        print(f"error: {problem}", file=sys.stderr)
    scores = scorer.token_log_probs(sentences, batch_size)
    rows = [
        {"text": s, "tokens": len(t), "log_prob": float(t.sum()), "ppl": math.exp(-float(t.sum()) / len(t))}
        for s, t in zip(sentences, scores)
        if scorer.tokenizer.encode(s)
    ]
    tokens = sum(r["tokens"] for r in rows)
    if not tokens:
        raise ValueError(f"{text}: no sentence to score")
    write_lines([json.dumps(r, ensure_ascii=False) for r in rows], out)
    perplexity = math.exp(-sum(r["log_prob"] for r in rows) / tokens)
    print(f"sentences {len(rows)}/{len(sentences)}  tokens {tokens}  perplexity {perplexity:.3f}  -> {out}")
    return 1 if unreadable or len(rows) < len(sentences) else 0


def generate_words(
    generator: Generator,
    words: list[str],
    input_file: str | None,
    output_format: str,
    output: str | None,
    batch_size: int,
) -> int:
    """Print each word's outputs (n-best: one line each); returns 1 when some word or line was refused.

    A word with characters outside the source vocabulary, or a line of ``input_file`` that is not UTF-8,
    is one ``error:`` line on standard error; the other words are generated.
    """
    texts, problems = read_texts(words, input_file)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not texts and not problems:
        raise ValueError("nothing to generate: give words or --input")
    lines, failed = [], len(problems)
    for result in generator.generate(texts, batch_size=batch_size):
        if result.error:
            failed += 1
            print(f"error: {result.error}", file=sys.stderr)
        elif output_format == "jsonl":
            record = {"text": result.text, "outputs": list(result.outputs)}
            lines.append(json.dumps({**record, **({"scores": list(result.scores)} if result.scores else {})}))
        else:
            lines += [f"{result.text}\t{text}" for text in result.outputs]
    write_lines(lines, output)
    return 1 if failed else 0


def evaluate_generator(generator: Generator, manifest: str, out: str, batch_size: int) -> int:
    """Generate a text-pair manifest, print PER/WER (any reference counts), write per-entry results."""
    from seq2seq.evaluation.text2text import evaluate_text2text

    result = evaluate_text2text(generator, manifest, batch_size)
    write_lines([json.dumps(r, ensure_ascii=False) for r in result.rows], out)
    plain, unstressed = result.without_stress, ""
    if plain:
        unstressed = f"  (stress stripped: WER {100 * plain.wer:.2f}%  PER {100 * plain.per:.2f}%)"
    print(
        f"words {result.scored}/{result.entries}  WER {100 * result.wer:.2f}%  PER {100 * result.per:.2f}%"
        f"{unstressed}  {result.words_per_second:.0f} words/s  (beam {generator.config.beam_size}, "
        f"ctc_weight {generator.config.ctc_weight})  -> {out}"
    )
    return 0 if result.scored == result.entries else 1
