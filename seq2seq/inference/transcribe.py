"""The ``transcribe`` and ``evaluate`` commands: files in, one result (or one error line) per file out."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from torch.utils.data import DataLoader

from seq2seq.data.manifest import read_manifest
from seq2seq.inference.audio_inputs import SegmentDataset, collate_segments, find_audio, split_into_windows
from seq2seq.inference.transcriber import Transcriber
from seq2seq.package import load_package


def transcribe_segments(
    transcriber: Transcriber,
    sources: list[tuple[str, float, float | None]],
    batch_size: int,
    window_seconds: float,
    num_workers: int = 0,
):
    """Transcribe ``(path, offset, duration)`` sources; returns per source ``(text, error)``.

    Long sources are cut into windows whose transcripts are joined in order.
    """
    from seq2seq.training.predict import run_predict

    segments = [
        s
        for i, (path, offset, duration) in enumerate(sources)
        for s in split_into_windows(i, path, window_seconds, offset, duration)
    ]
    dataset = SegmentDataset(segments, transcriber.package.config.data.features)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_segments, num_workers=num_workers)
    pieces: dict[int, list[tuple[int, str]]] = {}
    errors: dict[int, str] = {}
    for segment, text in run_predict(transcriber, loader):
        if segment.error:
            errors.setdefault(segment.source, segment.error)
        else:
            pieces.setdefault(segment.source, []).append((segment.window, text))
    results = []
    for index in range(len(sources)):
        if index in errors:
            results.append((None, errors[index]))
        else:
            results.append((" ".join(t for _, t in sorted(pieces.get(index, [])) if t), None))
    return results


def _write(lines: list[str], output: str | None) -> None:
    text = "".join(line + "\n" for line in lines)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def transcribe_command(
    model: str,
    inputs: list[str],
    manifest: str | None,
    beam_size: int,
    ctc_weight: float,
    batch_size: int,
    output_format: str,
    output: str | None,
    window_seconds: float,
) -> int:
    """Returns 0 when every file was transcribed, 1 when some failed (each failure is reported)."""
    transcriber = Transcriber(load_package(model), beam_size, ctc_weight)
    sources = [(path, 0.0, None) for path in find_audio(inputs)]
    if manifest:
        utterances, problems = read_manifest(manifest)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        sources += [(u.audio_filepath, u.offset, u.duration if u.offset else None) for u in utterances]
    if not sources:
        raise ValueError("nothing to transcribe: give audio files, folders or --manifest")
    results = transcribe_segments(transcriber, sources, batch_size, window_seconds)
    lines, failed = [], 0
    for (path, _, _), (text, error) in zip(sources, results):
        if error:
            failed += 1
            print(f"error: {error}", file=sys.stderr)
        elif output_format == "jsonl":
            lines.append(json.dumps({"audio_filepath": path, "text": text}, ensure_ascii=False))
        else:
            lines.append(f"{path}\t{text}")
    _write(lines, output)
    if failed:
        print(
            f"{failed} of {len(sources)} files failed; {len(sources) - failed} transcribed", file=sys.stderr
        )
    return 1 if failed else 0


def evaluate_command(
    model: str, manifest: str, out: str | None, beam_size: int, ctc_weight: float, batch_size: int
) -> int:
    """Decode a manifest, print WER/CER and the real-time factor, write per-utterance results."""
    from torchmetrics.functional.text import char_error_rate, word_error_rate

    package = load_package(model)
    transcriber = Transcriber(package, beam_size, ctc_weight)
    utterances, problems = read_manifest(manifest)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    sources = [(u.audio_filepath, u.offset, u.duration) for u in utterances]
    start = time.perf_counter()
    results = transcribe_segments(transcriber, sources, batch_size, window_seconds=3600.0)
    elapsed = time.perf_counter() - start
    normalize = package.tokenizer.normalizer
    rows, hyps, refs = [], [], []
    for utterance, (text, error) in zip(utterances, results):
        ref = normalize(utterance.text)
        row = {"id": utterance.id, "reference": ref, "hypothesis": text, "error": error}
        if error is None:
            hyps.append(text)
            refs.append(ref)
            row["cer"] = float(char_error_rate(text, ref))
        rows.append(row)
    out_path = Path(out) if out else Path(model) / f"eval-{Path(manifest).stem}.jsonl"
    _write([json.dumps(r, ensure_ascii=False) for r in rows], str(out_path))
    audio_seconds = sum(u.duration for u in utterances)
    wer = float(word_error_rate(hyps, refs)) if refs else float("nan")
    cer = float(char_error_rate(hyps, refs)) if refs else float("nan")
    print(
        f"utterances {len(refs)}/{len(utterances)}  WER {100 * wer:.2f}%  CER {100 * cer:.2f}%  "
        f"RTF {elapsed / max(audio_seconds, 1e-9):.3f}  (beam {transcriber.config.beam_size}, "
        f"ctc_weight {transcriber.config.ctc_weight})  -> {out_path}"
    )
    return 0 if len(refs) == len(utterances) else 1
