"""A synthetic speech corpus spoken by eSpeak NG: ASR splits with many voices, TTS splits with one voice.

Layout written under ``out_dir``::

    train.jsonl dev.jsonl test.jsonl              ASR: many voices; dev/test voice variants unseen in train
    tts_train.jsonl tts_dev.jsonl tts_test.jsonl  TTS: one voice (en-us default, fixed rate/pitch)
    corpus.json                                   settings and the voices of every split
    wavs/<split>/<id>.wav                         16-bit PCM at ``sample_rate`` (16 kHz by default)

Both tasks use 16 kHz audio so that a single ``FeatureConfig`` (16 kHz, 80 Mel bands) serves ASR and TTS.
Everything is a function of ``seed``: the same seed gives identical manifests and audio.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile

from seq2seq.core.espeak import ENGLISH_LANGUAGES, ESPEAK_SAMPLE_RATE, Voice
from seq2seq.data.manifest import Utterance, write_manifest
from seq2seq.data.synthetic.sentences import generate_sentences

# Voice variants (timbres) per ASR split; dev and test variants never occur in train, so the test set
# measures generalisation to unseen voices. Accents (languages) are shared by all splits.
TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m5", "m7", "f1", "f2", "f5", "klatt", "klatt3")
DEV_VARIANTS = ("m4", "f3")
TEST_VARIANTS = ("m6", "m8", "f4")
RATE_RANGE = (140, 210)  # words per minute
PITCH_RANGE = (30, 70)
TTS_VOICE = Voice(language="en-us", variant="", rate=165, pitch=50, pitch_range=50)

BLOCK_SIZE = 50  # utterances synthesised per fresh process (see _run_jobs)
_SILENCE_THRESHOLD = 0.01  # relative to the peak; eSpeak pads ~0.1-0.3 s of silence around speech
_MARGIN_S = 0.1


def _trim(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut leading and trailing silence, keeping a short margin."""
    loud = np.flatnonzero(np.abs(wave) > _SILENCE_THRESHOLD * max(float(np.abs(wave).max()), 1e-9))
    if loud.size == 0:
        return wave
    margin = int(_MARGIN_S * sample_rate)
    return wave[max(0, loud[0] - margin) : loud[-1] + margin + 1]


def _resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling by truncating (or zero-padding) the spectrum.

    FFT resampling is exact for band-limited signals and treats the clip as periodic; eSpeak's clips start
    and end in silence, so the wrap-around is inaudible. It is ~10x cheaper than a sinc filter bank here and
    keeps torch out of the worker processes.
    """
    if orig_rate == new_rate:
        return wave
    new_length = round(len(wave) * new_rate / orig_rate)
    spectrum = np.fft.rfft(wave)
    kept = spectrum[: new_length // 2 + 1]
    return (np.fft.irfft(kept, new_length) * (new_length / len(wave))).astype(np.float32)


def _synthesize_job(job: tuple[str, Voice, str, int]) -> int:
    """Speak one sentence and write it as 16-bit wav; runs in a worker process. Returns samples written."""
    from seq2seq.core.espeak import synthesize

    text, voice, path, sample_rate = job
    wave = _trim(_resample(synthesize(text, voice), ESPEAK_SAMPLE_RATE, sample_rate), sample_rate)
    soundfile.write(path, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return int(wave.shape[0])


def _asr_voices(variants: tuple[str, ...], count: int, rng: random.Random) -> list[Voice]:
    return [
        Voice(
            language=rng.choice(ENGLISH_LANGUAGES),
            variant=rng.choice(variants),
            rate=rng.randint(*RATE_RANGE),
            pitch=rng.randint(*PITCH_RANGE),
            pitch_range=rng.randint(30, 70),
        )
        for _ in range(count)
    ]


def _unique_sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct sentences, so no test sentence is also a training sentence."""
    unique: dict[str, None] = {}
    batch = 0
    while len(unique) < count:
        for sentence in generate_sentences(count, seed=seed * 1000 + batch):
            unique.setdefault(sentence)
        batch += 1
    return list(unique)[:count]


def _plan(seed: int, counts: dict[str, int]) -> dict[str, list[tuple[str, Voice]]]:
    """Sentence and voice of every utterance of every split, from the seed alone."""
    rng = random.Random(seed)
    sentences = iter(_unique_sentences(sum(counts.values()), seed))
    variants = {"train": TRAIN_VARIANTS, "dev": DEV_VARIANTS, "test": TEST_VARIANTS}
    plan = {}
    for split, count in counts.items():
        texts = [next(sentences) for _ in range(count)]
        voices = [TTS_VOICE] * count if split.startswith("tts") else _asr_voices(variants[split], count, rng)
        plan[split] = list(zip(texts, voices))
    return plan


def _settings(seed: int, counts: dict[str, int], sample_rate: int) -> dict:
    return {"seed": seed, "counts": counts, "sample_rate": sample_rate, "tts_voice": asdict(TTS_VOICE)}


def _load_if_prepared(out_dir: Path, settings: dict) -> dict[str, Path] | None:
    """Paths of an existing corpus made with the same settings (preparing is then a no-op)."""
    info_path = out_dir / "corpus.json"
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text())
    paths = {split: out_dir / f"{split}.jsonl" for split in settings["counts"]}
    if info.get("settings") != settings or not all(p.is_file() for p in paths.values()):
        return None
    return {**paths, "corpus": info_path}


def prepare_synthetic(
    out_dir: str | Path,
    seed: int = 0,
    num_train: int = 3000,
    num_dev: int = 200,
    num_test: int = 200,
    num_tts: int = 1500,
    sample_rate: int = 16000,
    num_workers: int = 2,
) -> dict[str, Path]:
    """Synthesise the corpus (or reuse an identical one already in ``out_dir``).

    Args:
        out_dir: folder for audio, manifests and ``corpus.json``.
        seed: seed for sentences, voices, rates and pitches.
        num_train: ASR training utterances.
        num_dev: ASR development utterances (unseen voice variants).
        num_test: ASR test utterances (unseen voice variants, different from dev).
        num_tts: TTS utterances in total; 5% each go to tts_dev and tts_test.
        sample_rate: audio sample rate in Hz.
        num_workers: synthesis processes.

    Returns:
        Paths keyed ``train``, ``dev``, ``test``, ``tts_train``, ``tts_dev``, ``tts_test`` and ``corpus``.
    """
    out_dir = Path(out_dir)
    tts_held_out = max(1, num_tts // 20) if num_tts >= 3 else 0
    counts = {
        "train": num_train,
        "dev": num_dev,
        "test": num_test,
        "tts_train": num_tts - 2 * tts_held_out,
        "tts_dev": tts_held_out,
        "tts_test": tts_held_out,
    }
    settings = _settings(seed, counts, sample_rate)
    if (existing := _load_if_prepared(out_dir, settings)) is not None:
        return existing
    start = time.perf_counter()
    plan = _plan(seed, counts)
    jobs, keys = [], []
    for split, entries in plan.items():
        (out_dir / "wavs" / split).mkdir(parents=True, exist_ok=True)
        for index, (text, voice) in enumerate(entries):
            utt_id = f"{split}-{index:05d}"
            jobs.append((text, voice, str(out_dir / "wavs" / split / f"{utt_id}.wav"), sample_rate))
            keys.append((split, utt_id))
    samples = _run_jobs(jobs, num_workers)
    manifests: dict[str, list[Utterance]] = {split: [] for split in plan}
    for (split, utt_id), (text, voice, path, _), n in zip(keys, jobs, samples):
        manifests[split].append(Utterance(path, n / sample_rate, text, speaker=voice.name, id=utt_id))
    paths = {split: write_manifest(out_dir / f"{split}.jsonl", utts) for split, utts in manifests.items()}
    info = _describe(settings, manifests, plan, time.perf_counter() - start)
    info_path = out_dir / "corpus.json"
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return {**paths, "corpus": info_path}


def _synthesize_block(jobs: list[tuple[str, Voice, str, int]]) -> list[int]:
    return [_synthesize_job(job) for job in jobs]


def _run_jobs(jobs: list[tuple[str, Voice, str, int]], num_workers: int) -> list[int]:
    """Synthesise in fixed blocks, each in a fresh process.

    eSpeak keeps internal state between calls (pitch flutter and wave phase counters that even
    espeak_Terminate does not reset), so a clip's exact samples depend on everything its process spoke
    before. Giving every fixed block of ``BLOCK_SIZE`` jobs a fresh process (``maxtasksperchild=1``) makes
    the audio a function of the seed alone, whatever ``num_workers`` is. The fork server keeps the
    per-block process start to a few milliseconds and never inherits a used eSpeak from the caller.
    """
    blocks = [jobs[i : i + BLOCK_SIZE] for i in range(0, len(jobs), BLOCK_SIZE)]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with context.Pool(max(1, num_workers), maxtasksperchild=1) as pool:
        return [n for block in pool.map(_synthesize_block, blocks, chunksize=1) for n in block]


def _describe(settings: dict, manifests: dict, plan: dict, seconds: float) -> dict:
    splits = {}
    for split, utterances in manifests.items():
        voices = sorted({voice.name for _, voice in plan[split]})
        hours = sum(u.duration for u in utterances) / 3600
        splits[split] = {"utterances": len(utterances), "hours": round(hours, 4), "voices": voices}
    return {"settings": settings, "splits": splits, "build_seconds": round(seconds, 1)}
