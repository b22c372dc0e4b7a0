"""Objective TTS evaluation on held-out sentences: mel L1, mel-cepstral distortion, ASR round-trip CER.

Metrics, all against the reference recording of each sentence:

* ``mel_l1_teacher_forced``: mean |log-mel error| of the postnet output with teacher forcing, over the
  reference's frames (no alignment needed; measures the acoustic model alone).
* ``mel_l1_dtw``: mean |log-mel error| of free-running synthesis along the DTW path found for MCD.
* ``mcd_dtw``: mel-cepstral distortion in dB, ``(10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2)`` averaged
  over the frames of the DTW path between synthesis and reference (lengths differ, so frames are
  aligned by dynamic time warping on that same distance). The cepstra are the real cepstrum of the
  log *amplitude* mel spectrum (half the natural-log power) taken as a spectrum on the mel axis:
  ``c_n = (1/M) sum_m L_m cos(pi n (m + 1/2) / M)`` over the M bands, coefficients 1..``n_cepstra``
  (c0, the energy, excluded). This scaling is that of a true cepstrum (as SPTK's), not the
  orthonormal DCT of MFCC code, which would inflate MCD by ``sqrt(2M)``; it is still not SPTK's
  all-pass warped mel-cepstrum of the linear spectrum, so compare numbers across runs of this
  toolkit rather than with papers.
* ``cer_synthesized``: an ASR model package transcribes the Griffin-Lim audio of the synthesis;
  ``cer_vocoded_reference`` does the same for Griffin-Lim of the reference mels (the vocoder's own
  damage) and ``cer_reference`` for the recordings themselves (the recognizer's floor).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.text import char_error_rate

from seq2seq.core.audio import AudioError, LogMel, mel_to_audio, read_audio
from seq2seq.core.package import ModelPackage
from seq2seq.data.manifest import Utterance, read_manifest
from seq2seq.inference.synthesize import Synthesizer
from seq2seq.inference.transcribe import Transcriber

MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)


def mel_cepstra(log_mel: np.ndarray, n_cepstra: int = 24) -> np.ndarray:
    """(T, n_mels) natural-log power mel -> (T, n_cepstra) cepstra c1..c_n (c0 dropped)."""
    n_mels = log_mel.shape[1]
    k = np.arange(n_mels)
    basis = np.cos(np.pi / n_mels * (k[None, :] + 0.5) * np.arange(n_mels)[:, None]) / n_mels
    return (0.5 * log_mel) @ basis[1 : n_cepstra + 1].T


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost monotonic path through a (T1, T2) cost matrix with steps (1,0), (0,1), (1,1).

    Each row is solved at once: ``D[i, j] = C[j] + cummin_k<=j (a[k] - C[k])`` with ``C`` the row's
    cumulative cost and ``a`` the best entry from the row above, so only rows loop in Python.
    """
    rows, cols = cost.shape
    total = np.empty_like(cost)
    total[0] = np.cumsum(cost[0])
    for i in range(1, rows):
        above = np.minimum(total[i - 1], np.concatenate([[np.inf], total[i - 1, :-1]]))
        entry = cost[i] + above
        running = np.cumsum(cost[i])
        total[i] = running + np.minimum.accumulate(entry - running)
    i, j, path = rows - 1, cols - 1, [(rows - 1, cols - 1)]
    while i > 0 or j > 0:
        moves = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((m for m in moves if m[0] >= 0 and m[1] >= 0), key=lambda m: total[m])
        path.append((i, j))
    path.reverse()
    return np.array([p[0] for p in path]), np.array([p[1] for p in path])


def mcd_and_l1(synthesized: np.ndarray, reference: np.ndarray, n_cepstra: int = 24) -> tuple[float, float]:
    """MCD (dB) and log-mel L1 along the DTW path between two (T, n_mels) log-mels."""
    a, b = mel_cepstra(synthesized, n_cepstra), mel_cepstra(reference, n_cepstra)
    distance = MCD_SCALE * np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    i, j = dtw_path(distance)
    return float(distance[i, j].mean()), float(np.abs(synthesized[i] - reference[j]).mean())


@dataclass
class TTSEvaluation:
    """Averages over the evaluated sentences (see the module docstring for definitions)."""

    sentences: int
    mel_l1_teacher_forced: float
    mel_l1_dtw: float
    mcd_dtw: float
    cer_synthesized: float | None
    cer_vocoded_reference: float | None
    cer_reference: float | None
    rtf_acoustic: float
    length_ratio: float
    reported: int = 0  # lines on standard error: manifest lines, unreadable audio, foreign text, no stop


@torch.no_grad()
def teacher_forced_l1(package: ModelPackage, tokens: list[torch.Tensor], mels: list[torch.Tensor]) -> float:
    """Mean |log-mel error| of the postnet output under teacher forcing, over reference frames."""
    model, total, count = package.model, 0.0, 0
    for ids, mel in zip(tokens, mels):
        out = model(ids[None], torch.tensor([len(ids)]), mel[None], torch.tensor([len(mel)]))
        predicted = model.denormalize(out.mel_after[:, : len(mel)], torch.tensor([len(mel)]))[0]
        total += float((predicted - mel).abs().sum())
        count += mel.numel()
    return total / count


def transcribe(asr: ModelPackage, waves: list[torch.Tensor]) -> list[str]:
    """Greedy transcripts of waveforms at the ASR model's sample rate (no word list: the round trip
    measures what the audio says, not what a lexicon makes of it)."""
    logmel = LogMel(asr.config.data.features)
    greedy = dataclasses.replace(
        asr.config.decoding, beam_size=1, ctc_weight=0.0, lexicon_weight=0.0, nbest=1
    )
    transcriber = Transcriber(asr, greedy)
    texts = []
    for wave in waves:
        features = logmel.single(wave)[None]
        texts += transcriber(features, torch.tensor([features.shape[1]]))
    return texts


def evaluate_tts(
    synthesizer: Synthesizer,
    manifest: str | Path,
    asr: Transcriber | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    out: str | Path | None = None,
) -> TTSEvaluation:
    """Evaluate a TTS package on a manifest's sentences against their recordings.

    Args:
        synthesizer: a loaded TTS package.
        manifest: held-out manifest (text and reference audio).
        asr: an ASR package for the round-trip CER (None: skipped); it decodes greedily.
        limit: evaluate only the first ``limit`` sentences.
        batch_size: sentences synthesized together.
        out: JSON Lines file of per-sentence results (MCD, lengths, what the ASR heard and its CER).
    """
    package = synthesizer.package
    features = package.config.data.features
    utterances, problems = read_manifest(manifest)
    utterances, waves, reported = _usable(synthesizer, utterances[:limit], problems)
    texts = [u.text for u in utterances]
    references = [LogMel(features).single(w) for w in waves]
    tokens = [torch.tensor(package.tokenizer.encode(t), dtype=torch.long) for t in texts]
    start = time.perf_counter()
    items = synthesizer.synthesize(texts, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    pairs = [mcd_and_l1(s.mel.numpy(), r.numpy()) for s, r in zip(items, references)]
    synthesized_frames = sum(s.mel.shape[0] for s in items)
    cers, heard, truth = (None, None, None), [None] * len(items), texts
    if asr is not None:
        truth = [asr.package.tokenizer.normalizer(text) for text in texts]  # what a perfect transcript reads
        cers, heard = round_trip_cer(asr.package, package, items, references, waves, truth)
    if out is not None:
        rows = [
            {
                "id": u.id,
                "text": u.text,
                "heard": h,
                "cer": None if h is None else float(char_error_rate(h, t)),
                "mcd_dtw": mcd,
                "mel_l1_dtw": l1,
                "frames": s.mel.shape[0],
                "reference_frames": r.shape[0],
            }
            for u, t, h, (mcd, l1), s, r in zip(utterances, truth, heard, pairs, items, references)
        ]
        Path(out).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return TTSEvaluation(
        len(items),
        teacher_forced_l1(package, tokens, references),
        float(np.mean([p[1] for p in pairs])),
        float(np.mean([p[0] for p in pairs])),
        *cers,
        rtf_acoustic=elapsed / (synthesized_frames / features.frame_rate),
        length_ratio=synthesized_frames / sum(r.shape[0] for r in references),
        reported=reported + sum(item.unstopped for item in items),  # "no stop token" lines
    )


def _usable(
    synthesizer: Synthesizer, utterances: list[Utterance], problems: list[str]
) -> tuple[list[Utterance], list[torch.Tensor], int]:
    """The utterances that can be scored, their reference audio, and the number of lines reported.

    Manifest lines left out and unreadable reference audio are ``error:`` lines (that utterance is
    skipped), text outside the model's language a ``warning:`` line (it is spoken without those
    characters), as ``synthesize`` reports them.
    """
    rate = synthesizer.package.config.data.features.sample_rate
    lines = [f"error: {problem}" for problem in problems]
    kept, waves = [], []
    for utterance in utterances:
        try:
            waves.append(read_audio(utterance.audio_filepath, rate))
        except AudioError as error:
            lines.append(f"error: {error} (utterance '{utterance.id}' skipped)")
            continue
        kept.append(utterance)
    tokenizer = synthesizer.package.tokenizer
    for utterance in kept:
        if outside := tokenizer.outside_language(utterance.text):
            lines.append(f"warning: utterance '{utterance.id}' {utterance.text[:40]!r}: {outside.describe()}")
    unspeakable = synthesizer.unspeakable([u.text for u in kept])
    lines += [f"error: utterance '{kept[i].id}': nothing to speak (skipped)" for i in sorted(unspeakable)]
    for line in lines:
        print(line, file=sys.stderr)
    keep = [i for i in range(len(kept)) if i not in unspeakable]
    if not keep:
        raise ValueError(f"{len(utterances)} utterances, none can be evaluated")
    return [kept[i] for i in keep], [waves[i] for i in keep], len(lines)


def round_trip_cer(
    asr: ModelPackage, tts: ModelPackage, items, references, waves, truth: list[str]
) -> tuple[tuple[float, float, float], list[str]]:
    """CER against ``truth`` of the ASR on Griffin-Lim synthesis, on Griffin-Lim of the references, and
    on the recordings; and the transcripts of the synthesis.
    """
    features, iterations = tts.config.data.features, tts.config.inference.griffin_lim_iterations
    rate = asr.config.data.features.sample_rate

    def heard(audio: list[torch.Tensor]) -> list[str]:
        if rate != features.sample_rate:
            import torchaudio

            audio = [torchaudio.functional.resample(a, features.sample_rate, rate) for a in audio]
        return transcribe(asr, audio)

    synthesized = heard([mel_to_audio(item.mel, features, iterations) for item in items])
    vocoded = heard([mel_to_audio(mel, features, iterations) for mel in references])
    cers = tuple(float(char_error_rate(h, truth)) for h in (synthesized, vocoded, heard(waves)))
    return cers, synthesized
