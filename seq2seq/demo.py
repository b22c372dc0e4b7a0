"""The README's first command: the whole toolkit on the embedded eSpeak NG corpus, measured."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from seq2seq.experiments import PACKAGED_CONFIGS as CONFIGS
from seq2seq.experiments import load_experiment

log = logging.getLogger(__name__)
# The Conformer: at the demo's budget it beats configs/asr/small.yaml's Transformer on all three test
# sets (recipes/synthetic/README.md), and recipes/fsdd fine-tunes this model with the same architecture.
ASR_CONFIG = "asr/conformer_small.yaml"
TEST_SETS = (
    ("test", "(a) unseen voices, training sentence patterns"),
    ("test_patterns", "(b) unseen voices, the same domains phrased by held-out patterns"),
    ("test_open", "(c) unseen voices, open-vocabulary sentences with held-out patterns and words"),
)


def _experiment(name: str, data_dir: Path, run_dir: Path, minutes: float, manifests: tuple[str, str, str]):
    train, dev, test = (str(data_dir / m) for m in manifests)
    return load_experiment(
        CONFIGS / name,
        [
            f"--out_dir={run_dir}",
            f"--data.train_manifest={train}",
            f"--data.dev_manifest={dev}",
            f"--data.test_manifest={test}",
            f"--data.cache_dir={data_dir / 'cache'}",
            f"--trainer.max_minutes={minutes}",
        ],
    )


def _train_and_export(experiment, package_dir: Path, average: int, lexicon: Path | None = None) -> float:
    from seq2seq.tasks import export, train

    start = time.perf_counter()
    train(experiment)
    minutes = (time.perf_counter() - start) / 60
    export(experiment.out_dir, package_dir, average=average, lexicon=lexicon)
    return minutes


def _report_tts(out: Path, test_manifest: Path, sentences: int = 25) -> None:
    """What the short TTS run reached: MCD and the round-trip CER through the demo's own ASR model."""
    from seq2seq.evaluation.tts import evaluate_tts
    from seq2seq.tasks import load_package

    result = evaluate_tts(
        load_package(out / "tts_model"),
        test_manifest,
        load_package(out / "asr_model"),
        limit=sentences,
        out=out / "tts_model/eval.jsonl",
    )
    print(
        f"[demo] TTS on {result.sentences} held-out sentences: MCD {result.mcd_dtw:.2f} dB, round-trip CER "
        f"{100 * result.cer_synthesized:.1f}% (ASR on the Griffin-Lim audio; "
        f"{100 * result.cer_reference:.1f}% on the recordings)"
    )


def run_demo(out: Path, minutes: float, tts_minutes: float) -> int:
    """Prepare the corpus, train and evaluate ASR, transcribe a file, then train TTS and synthesize."""
    from seq2seq.commands import evaluate_transcriber, transcribe_files
    from seq2seq.data.synthetic.corpus import prepare_synthetic
    from seq2seq.data.word_list import write_word_list
    from seq2seq.tasks import load_package

    data_dir = out / "data"
    start = time.perf_counter()
    manifests = prepare_synthetic(data_dir)
    print(f"[demo] synthetic corpus ready in {time.perf_counter() - start:.0f} s -> {data_dir}")
    asr = _experiment(ASR_CONFIG, data_dir, out / "asr", minutes, ("train.jsonl", "dev.jsonl", "test.jsonl"))
    lexicon, words = write_word_list(data_dir / "lexicon.txt")
    trained = _train_and_export(asr, out / "asr_model", average=3, lexicon=lexicon)
    print(f"[demo] ASR trained in {trained:.1f} min -> {out / 'asr_model'} (with {words} English words)")
    transcriber = load_package(out / "asr_model")  # decodes with the recipe's saved settings
    for split, what in TEST_SETS:
        print(f"[demo] {what} ({split}):")
        evaluate_transcriber(
            transcriber,
            str(manifests[split]),
            out=str(out / "asr_model" / f"eval-{split}.jsonl"),
            batch_size=16,
        )
    print("[demo] (`seq2seq evaluate ... --lexicon-weight 0` scores the same search without the word list)")
    sample = sorted((data_dir / "wavs" / "test").glob("*.wav"))[0]
    print(f"[demo] transcribing {sample}:")
    transcribe_files(
        transcriber,
        [str(sample)],
        manifest=None,
        batch_size=1,
        output_format="text",
        output=None,
        window_seconds=30.0,
    )
    if tts_minutes > 0 and (CONFIGS / "tts" / "small.yaml").is_file():
        _tts(out, data_dir, tts_minutes)
    return 0


def _tts(out: Path, data_dir: Path, minutes: float) -> None:
    from seq2seq.tasks import load_package

    tts = _experiment(
        "tts/small.yaml",
        data_dir,
        out / "tts",
        minutes,
        ("tts_train.jsonl", "tts_dev.jsonl", "tts_test.jsonl"),
    )
    trained = _train_and_export(tts, out / "tts_model", average=1)
    print(f"[demo] TTS trained in {trained:.1f} min (a short schedule; the recipe trains longer)")
    _report_tts(out, data_dir / "tts_test.jsonl")
    load_package(out / "tts_model").write(["turn on the kitchen lights"], out / "synthesized")
    print(
        f"[demo] synthesized speech features, alignment plot and Griffin-Lim audio -> {out / 'synthesized'}"
    )
