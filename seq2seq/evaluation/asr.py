"""WER/CER of an ASR package on a manifest, with the real-time factor and per-utterance results."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from torchmetrics.functional.text import char_error_rate, word_error_rate

from seq2seq.data.manifest import read_manifest
from seq2seq.inference.transcribe import SegmentDecoder, Transcriber


@dataclass
class ASREvaluation:
    """Corpus scores (fractions, not percent) and one row per utterance.

    Attributes:
        utterances: utterances in the manifest; ``decoded`` of them could be read and decoded.
        wer, cer: corpus word and character error rates over the decoded utterances (NaN if none).
        rtf: decoding seconds per second of audio.
        rows: ``{"id", "reference", "hypothesis", "error", "cer"}`` per utterance.
        left_out: manifest lines left out (each reported on standard error).
    """

    utterances: int
    decoded: int
    wer: float
    cer: float
    rtf: float
    rows: list[dict] = field(default_factory=list)
    left_out: int = 0


def evaluate_asr(
    transcriber: Transcriber, manifest: str, batch_size: int = 8, decode: SegmentDecoder | None = None
) -> ASREvaluation:
    """Decode every utterance of ``manifest`` (whole, not windowed) and score it against its text.

    Malformed manifest lines and audio that cannot be read are reported on standard error, one line
    each, and skipped.
    """
    utterances, problems = read_manifest(manifest)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    sources = [(u.audio_filepath, u.offset, u.duration) for u in utterances]
    start = time.perf_counter()
    results = transcriber.transcribe_sources(sources, batch_size, window_seconds=3600.0, decode=decode)
    elapsed = time.perf_counter() - start
    normalize = transcriber.package.tokenizer.normalizer
    rows, hyps, refs = [], [], []
    for utterance, (text, error) in zip(utterances, results):
        ref = normalize(utterance.text)
        row = {"id": utterance.id, "reference": ref, "hypothesis": text, "error": error}
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
        else:
            hyps.append(text)
            refs.append(ref)
            row["cer"] = float(char_error_rate(text, ref))
        rows.append(row)
    audio_seconds = sum(u.duration for u in utterances)
    wer = float(word_error_rate(hyps, refs)) if refs else float("nan")
    cer = float(char_error_rate(hyps, refs)) if refs else float("nan")
    rtf = elapsed / max(audio_seconds, 1e-9)
    return ASREvaluation(len(utterances), len(refs), wer, cer, rtf, rows, left_out=len(problems))
