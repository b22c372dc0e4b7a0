"""A synthetic speech corpus spoken by eSpeak NG: ASR splits with many voices, TTS splits with one voice.

Layout written under ``out_dir``::

    train.jsonl                                   ASR training: training patterns and words, most voices
    dev.jsonl                                     held-out patterns, some held-out words, unseen voices
    test.jsonl                                    (a) training patterns and words, unseen voices
    test_patterns.jsonl                           (b) the domains phrased by held-out patterns, unseen voices
    test_open.jsonl                               (c) held-out open-vocabulary sentences, unseen voices
    tts_train.jsonl tts_dev.jsonl tts_test.jsonl  TTS: one voice (en-us default, fixed rate/pitch)
    corpus.json                                   settings, voices, vocabulary and OOV rate of every split
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
from seq2seq.data.synthetic.lexicon import stable_hash
from seq2seq.data.synthetic.sentences import generate_sentences, oov_rate, vocabulary

# Every voice variant (timbre) eSpeak NG ships; a fixed sixth of them, by a hash of the name, never speaks
# in training, and those are split between dev and the test sets, so every test measures unseen voices.
# Accents (languages) are shared by all splits.
HELD_OUT_VARIANTS = ("m6", "m8", "f4", "m4", "f3")  # the first round's held-out voices stay held out
RATE_RANGE = (120, 230)  # words per minute
PITCH_RANGE = (20, 80)
DOMAIN_TESTS = ("digits", "times", "alarms", "dates", "devices", "amounts")
# What each ASR split's text is: (training patterns?, domains or None for all, share of held-out words).
TEXT_SOURCES = {
    "train": (True, None, 0.0),
    "dev": (False, None, 0.3),
    "test": (True, None, 0.0),
    "test_patterns": (False, DOMAIN_TESTS, 0.0),
    "test_open": (False, ("open",), 0.3),
    "tts_test": (False, ("open",), 0.3),  # the TTS round trip is measured on open-vocabulary sentences
}
TTS_VOICE = Voice(language="en-us", variant="", rate=165, pitch=50, pitch_range=50)

BLOCK_SIZE = 50  # utterances synthesised per fresh process (see synthesize_jobs)
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


def voice_variants() -> tuple[str, ...]:
    """Every voice variant of the installed eSpeak NG data ("" is the language's default voice)."""
    import espeakng_loader

    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return ("", *sorted(p.name for p in folder.iterdir() if p.is_file()))


def split_variants() -> dict[str, tuple[str, ...]]:
    """Voice variants per ASR split: training voices, and held-out ones alternating between dev and tests."""
    variants = voice_variants()
    held_out = sorted(
        {v for v in variants if v in HELD_OUT_VARIANTS or (v and stable_hash(v) % 6 == 0)}, key=stable_hash
    )
    train = tuple(v for v in variants if v not in held_out)
    return {"train": train, "dev": tuple(held_out[0::2]), "test": tuple(held_out[1::2])}


def asr_voices(variants: tuple[str, ...], count: int, rng: random.Random) -> list[Voice]:
    """``count`` voices of the given variants, each with a random English accent, rate and pitch."""
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


def _split_texts(seed: int, counts: dict[str, int]) -> dict[str, list[str]]:
    """Distinct sentences per split; no sentence occurs in two splits."""
    taken: set[str] = set()
    texts = {}
    for index, (split, count) in enumerate(counts.items()):
        patterns, domains, share = TEXT_SOURCES.get(split, (True, None, 0.0))  # TTS: training text
        chosen: list[str] = []
        batch = 0
        while len(chosen) < count:
            for sentence in generate_sentences(2 * count + 10, seed * 1000 + 100 * index + batch, patterns,
                                               domains, share):  # fmt: skip
                if sentence not in taken and len(chosen) < count:
                    taken.add(sentence)
                    chosen.append(sentence)
            batch += 1
        texts[split] = chosen
    return texts


def _plan(seed: int, counts: dict[str, int]) -> dict[str, list[tuple[str, Voice]]]:
    """Sentence and voice of every utterance of every split, from the seed alone."""
    rng = random.Random(seed)
    texts = _split_texts(seed, counts)
    variants = split_variants()
    plan = {}
    for split, count in counts.items():
        if split.startswith("tts"):
            voices = [TTS_VOICE] * count
        else:
            side = split if split in ("train", "dev") else "test"
            voices = asr_voices(variants[side], count, rng)
        plan[split] = list(zip(texts[split], voices))
    return plan


TEXT_VERSION = 2  # bump when the sentence generator changes, so an older corpus is not reused


def _settings(seed: int, counts: dict[str, int], sample_rate: int) -> dict:
    return {
        "seed": seed,
        "counts": counts,
        "sample_rate": sample_rate,
        "tts_voice": asdict(TTS_VOICE),
        "text_version": TEXT_VERSION,
    }


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
    num_train: int = 8000,
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
        num_test: utterances of each ASR test split (``test``, ``test_patterns``, ``test_open``; voice
            variants unseen in training and in dev).
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
        "test_patterns": num_test,
        "test_open": num_test,
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
    samples = synthesize_jobs(jobs, num_workers)
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


def synthesize_jobs(jobs: list[tuple[str, Voice, str, int]], num_workers: int) -> list[int]:
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
    """Per split: size, voices, distinct words and the OOV rate against the training text."""
    known = vocabulary([text for text, _ in plan.get("train", [])])
    splits = {}
    for split, utterances in manifests.items():
        texts = [text for text, _ in plan[split]]
        splits[split] = {
            "utterances": len(utterances),
            "hours": round(sum(u.duration for u in utterances) / 3600, 4),
            "words": len(vocabulary(texts)),
            "oov_rate": round(oov_rate(texts, known), 4),
            "voices": sorted({voice.name for _, voice in plan[split]}),
        }
    return {"settings": settings, "splits": splits, "build_seconds": round(seconds, 1)}
