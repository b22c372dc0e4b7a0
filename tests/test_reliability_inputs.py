"""Bad input: every broken audio file, manifest line or config value is one line naming it; work goes on.

The table in docs/reliability.md lists each case with the test here that proves it.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
import traceback
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import (
    ALPHABET,
    CONFIGS,
    SAMPLE_RATE,
    assert_one_line_error,
    run_cli,
    tiny_asr_package,
    write_jsonl,
    write_tone,
)

from seq2seq.core.audio import AudioError, FeatureConfig, LogMel, audio_info, read_audio
from seq2seq.core.config import ConfigError
from seq2seq.core.safety import output_path, safe_name
from seq2seq.core.text import BLANK_ID, EOS_ID, PAD_ID, SOS_ID, CharTokenizer
from seq2seq.data.config import DataConfig
from seq2seq.data.manifest import read_manifest
from seq2seq.experiments import load_experiment

# ---------------------------------------------------------------------------------------------
# Audio files


def _truncated(path: Path, source: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _with_sample(path: Path, value: float) -> Path:
    wave = np.full(SAMPLE_RATE // 10, 0.1, dtype=np.float32)
    wave[7] = value
    soundfile.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    return path


def make_bad_audio(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Broken files and the words their one-line error must contain."""
    good_wav = write_tone(tmp / "good.wav", 1.0)
    cases = {
        "truncated wav": (_truncated(tmp / "cut.wav", good_wav), "truncated"),
        "wav cut inside its header": (
            _truncated(tmp / "head.wav", good_wav, 30 / good_wav.stat().st_size),
            "cannot decode",
        ),
        "truncated flac": (_truncated(tmp / "cut.flac", write_tone(tmp / "good.flac", 1.0)), "cannot decode"),
        "truncated ogg": (_truncated(tmp / "cut.ogg", write_tone(tmp / "good.ogg", 1.0)), "cannot decode"),
        "zero-length file": (tmp / "empty.wav", "file is empty"),
        "header but no samples": (tmp / "nosamples.wav", "no audio samples"),
        "NaN sample": (_with_sample(tmp / "nan.wav", np.nan), "NaN or infinite"),
        "infinite sample": (_with_sample(tmp / "inf.wav", np.inf), "NaN or infinite"),
        "absurd sample value": (_with_sample(tmp / "huge.wav", 3e38), "not audio"),
        "missing file": (tmp / "missing.wav", "no such file"),
        "folder named like audio": (tmp / "folder.wav", "no such file"),
    }
    (tmp / "empty.wav").write_bytes(b"")
    soundfile.write(tmp / "nosamples.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    (tmp / "folder.wav").mkdir()
    try:
        mp3 = write_tone(tmp / "good.mp3", 1.0)
        cases["truncated mp3"] = (_truncated(tmp / "cut.mp3", mp3), "truncated")
    except (soundfile.LibsndfileError, TypeError, ValueError):  # libsndfile built without MP3
        pass
    for suffix in (".wav", ".flac", ".ogg", ".mp3", ".opus"):
        path = tmp / f"text{suffix}"
        path.write_text("this is a text file, not audio\n" * 40)
        cases[f"text file named {suffix}"] = (path, "not an audio file")
    return cases


def test_every_broken_audio_file_is_one_line_audio_error_naming_it(tmp_path):
    cases = make_bad_audio(tmp_path)
    for name, (path, words) in cases.items():
        with pytest.raises(AudioError) as caught:
            read_audio(path)
        message = str(caught.value)
        assert message.startswith(str(path)) and "\n" not in message, name
        assert words in message, f"{name}: {message}"
    assert len(cases) >= 16


def test_header_probe_rejects_truncated_files_without_decoding(tmp_path):
    good = write_tone(tmp_path / "good.wav", 1.0)
    with pytest.raises(AudioError, match="truncated file"):
        audio_info(_truncated(tmp_path / "cut.wav", good))
    assert audio_info(good).frames == SAMPLE_RATE


def test_streamed_wav_with_placeholder_size_is_still_read(tmp_path):
    """Writers on a pipe leave 0xFFFFFFFF as the data size; that is not truncation."""
    path = write_tone(tmp_path / "stream.wav", 0.5)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    assert read_audio(path).shape[0] == SAMPLE_RATE // 2


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000])
def test_extreme_sample_rates_are_resampled(tmp_path, rate):
    path = write_tone(tmp_path / f"r{rate}.wav", 0.5, rate=rate)
    wave = read_audio(path, SAMPLE_RATE)
    assert abs(wave.shape[0] - SAMPLE_RATE // 2) <= 1 and torch.isfinite(wave).all()


def test_many_channels_are_averaged_and_silence_is_valid(tmp_path):
    wave = read_audio(write_tone(tmp_path / "32ch.wav", 0.25, channels=32))
    assert wave.shape == (SAMPLE_RATE // 4,)
    soundfile.write(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    silent = read_audio(tmp_path / "silent.wav")
    features = LogMel(FeatureConfig()).single(silent)
    assert torch.isfinite(features).all()  # log floor keeps silence finite


def test_paths_with_spaces_and_non_ascii_names(tmp_path):
    path = write_tone(tmp_path / "dir with space" / "ñandú – 日本語 voix.wav", 0.2)
    assert read_audio(path).shape[0] == int(0.2 * SAMPLE_RATE)
    with pytest.raises(AudioError, match="日本語"):
        read_audio(path.with_name("日本語 missing.wav"))


NOBODY = 65534  # uid and gid of `nobody`, who owns no file here


def read_as_user(uid: int, paths: list[Path]) -> list[str]:
    """Per path, the samples ``read_audio`` returns or its AudioError message, read by a forked child
    that runs as ``uid`` (no exec: the interpreter may live in a home that user cannot enter)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        status = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            lines = []
            for path in paths:
                try:
                    lines.append(str(read_audio(path).shape[0]))
                except AudioError as error:
                    lines.append(str(error))
            os.write(write_end, "\n".join(lines).encode())
            status = 0
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    return output.splitlines()


def test_unreadable_file_is_named(tmp_path):
    """A mode-000 file is one AudioError naming it. Root reads any file, so as root a child that drops to
    ``nobody`` reads it, in a world-readable folder (``tmp_path`` lies under a 0700 one)."""
    if os.geteuid() != 0:
        locked = write_tone(tmp_path / "locked.wav", 0.2)
        locked.chmod(0)
        if os.access(locked, os.R_OK):
            pytest.skip("this user reads files whatever their mode (CAP_DAC_OVERRIDE) and is not root")
        with pytest.raises(AudioError) as caught:
            read_audio(locked)
        message = str(caught.value)
    else:
        folder = Path(tempfile.mkdtemp(prefix="seq2seq-locked-"))
        try:
            folder.chmod(0o755)
            good = write_tone(folder / "good.wav", 0.2)
            locked = write_tone(folder / "locked.wav", 0.2)
            locked.chmod(0)
            # The readable neighbour shows that only the file's mode refuses, not the folders above it.
            samples, message = read_as_user(NOBODY, [good, locked])
        finally:
            shutil.rmtree(folder)
        assert samples == str(int(0.2 * SAMPLE_RATE))
    assert message == f"{locked}: permission denied"


def _sparse_wav(path: Path, seconds: int) -> Path:
    """A 16-bit mono WAV of ``seconds`` silence whose data is a hole in the file (no disk used)."""
    data_bytes = seconds * SAMPLE_RATE * 2
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + data_bytes)
    return path


def test_two_hour_file_is_read_window_by_window_in_bounded_memory(tmp_path):
    path = _sparse_wav(tmp_path / "two hours.wav", 2 * 3600)
    assert audio_info(path).duration == 2 * 3600
    tracemalloc.start()
    try:
        for offset in (0.0, 3600.0, 7190.0):  # start, middle, last 10 s
            wave = read_audio(path, SAMPLE_RATE, offset=offset, duration=10.0)
            assert wave.shape[0] == 10 * SAMPLE_RATE
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole_file = 2 * 3600 * SAMPLE_RATE * 4  # float32: 460 MB
    assert peak < 8 * 1024 * 1024 < whole_file  # one 10 s window is 640 kB
    with pytest.raises(AudioError, match="outside the file"):
        read_audio(path, offset=7300.0, duration=1.0)


def test_long_file_is_split_into_windows_before_reading(tmp_path):
    from seq2seq.inference.audio_inputs import split_into_windows

    windows = split_into_windows(0, str(_sparse_wav(tmp_path / "long.wav", 2 * 3600)), 30.0)
    assert len(windows) == 240 and all(w.duration <= 30.0 and w.error is None for w in windows)


# ---------------------------------------------------------------------------------------------
# Text and manifests


def test_bad_manifest_lines_are_reported_one_line_each_and_good_lines_load(tmp_path):
    write_tone(tmp_path / "a.wav", 0.3)
    good = {"audio_filepath": "a.wav", "duration": 0.3, "text": "hello", "id": "a"}
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            good,
            '{"audio_filepath": "a.wav", "duration": 0.3, "text": ',  # malformed JSON
            {"audio_filepath": "a.wav", "duration": 0.3},  # missing text
            {"duration": 0.3, "text": "x"},  # missing audio
            {"audio_filepath": "a.wav", "duration": -1, "text": "x"},  # impossible duration
            {"audio_filepath": "a.wav", "duration": "long", "text": "x"},  # wrong type
            {"audio_filepath": "a.wav", "duration": 0.3, "text": 5},  # text not a string
            [1, 2, 3],  # not an object
            {**good, "text": "again"},  # duplicate id
            {"audio_filepath": "missing.wav", "duration": 0.3, "text": "kept until read", "id": "m"},
            {"audio_filepath": "a.wav", "duration": 0.3, "text": "", "id": "empty"},
            {"audio_filepath": "a.wav", "duration": 0.3, "text": "x" * 100_000, "id": "long"},
        ],
    )
    utterances, problems = read_manifest(manifest)
    assert [u.id for u in utterances] == ["a", "m", "empty", "long"]
    assert len(problems) == 8 and all("\n" not in p and p.startswith(f"{manifest}:") for p in problems)
    for line, words in [
        (2, "malformed JSON"),
        (3, "missing field 'text'"),
        (4, "missing field 'audio_filepath'"),
        (5, "duration must be > 0"),
        (6, "duration must be a number"),
        (7, "text must be a string"),
        (8, "expected a JSON object"),
        (9, "duplicate id 'a'"),
    ]:
        assert any(p.startswith(f"{manifest}:{line}:") and words in p for p in problems), (line, problems)


def test_training_data_leaves_out_missing_empty_too_long_and_unreadable_utterances(tmp_path, caplog):
    from seq2seq.data.datasets import collate_asr
    from seq2seq.training.datamodules import ASRDataModule

    for name in ("a", "b", "c"):
        write_tone(tmp_path / f"{name}.wav", 0.3)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt nonsense")
    manifest = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"audio_filepath": "a.wav", "duration": 0.3, "text": "abc", "id": "a"},
            {
                "audio_filepath": "b.wav",
                "duration": 0.3,
                "text": "b ü 日本",
                "id": "oov",
            },  # outside the vocabulary
            {"audio_filepath": "gone.wav", "duration": 0.3, "text": "abc", "id": "gone"},
            {"audio_filepath": "c.wav", "duration": 0.3, "text": "   ", "id": "empty"},
            {"audio_filepath": "c.wav", "duration": 0.3, "text": "abc " * 500, "id": "long"},
            {"audio_filepath": "broken.wav", "duration": 0.3, "text": "abc", "id": "broken"},
        ],
    )
    module = ASRDataModule(
        DataConfig(str(manifest), str(manifest), None, num_workers=0, cache_features=False),
        CharTokenizer.build(["abc abc"]),
    )
    with caplog.at_level(logging.WARNING):
        dataset = module._dataset("train")
        items = [dataset[i] for i in range(len(dataset))]
    assert [u.id for u in dataset.utterances] == ["a", "oov", "broken"]
    assert items[2] is None  # decoding failed: reported, then dropped by collate
    batch = collate_asr(items)
    assert batch.ids == ["a", "oov"] and collate_asr([None]) is None
    assert dataset.tokens[1].tolist().count(4) == 3  # ü, 日, 本 -> UNK, counted for the report
    for words in (
        "gone.wav: no such file",
        "'empty' has empty text",
        "'long' has 2000 characters",
        "broken.wav: cannot decode",
    ):
        assert any(words in r.getMessage() for r in caplog.records), words


def test_characters_outside_the_vocabulary_are_counted_not_dropped():
    tokenizer = CharTokenizer.build(["hello world"])
    assert tokenizer.unknown_characters("héllo wörld") == {"é": 1, "ö": 1}
    assert len(tokenizer.encode("x" * 200_000)) == 200_000  # very long text: linear, no limit


# ---------------------------------------------------------------------------------------------
# Configs and the command line

BAD_CONFIGS = [
    ("asr", "--model.encoder.bogus=1", ["model.encoder.bogus", "unknown field", "num_heads"]),
    ("asr", "--trainer.max_stepz=3", ["trainer.max_stepz", "max_steps"]),
    ("asr", "--trainer.max_steps=abc", ["trainer.max_steps", "expected int"]),
    ("asr", "--trainer.max_steps=1.5", ["trainer.max_steps", "expected int"]),
    ("asr", "--trainer.max_steps=-3", ["max_steps=-3", ">= 1"]),
    ("asr", "--data.max_frames=-1", ["max_frames", "> 0"]),
    ("asr", "--model.conv_channels=-4", ["conv_channels"]),
    ("asr", "--model.encoder.num_heads=5", ["d_model=144", "num_heads=5"]),
    ("asr", "--model.encoder.ffn_dim=0", ["model.encoder", "ffn_dim=0"]),
    ("asr", "--model.encoder.dropout=1.5", ["dropout=1.5", "[0, 1)"]),
    ("asr", "--model.subsampling=5", ["subsampling=5", "4, 6, 8"]),
    ("asr", "--model.encoder.norm.kind=bn", ["model.encoder.norm.kind", "batch_renorm"]),
    ("asr", "--model.encoder.activation=tanh", ["activation", "relu, gelu, swish"]),
    ("asr", "--tokenizer.kind=word", ["tokenizer.kind", "char, phoneme, g2p, unigram, bpe"]),
    ("asr", "--optim.schedule=linear", ["optim.schedule", "noam, constant, cosine"]),
    ("asr", "--optim.schedule=cosine", ["decay_steps > warmup_steps"]),
    ("asr", "--trainer.precision=64", ["trainer.precision", "bf16-mixed"]),
    ("asr", "--trainer.accelerator=gpux", ["trainer.accelerator", "cpu, gpu"]),
    ("asr", "--trainer.devices=0", ["trainer.devices", "'auto'"]),
    ("asr", "--trainer.devices=[1]", ["trainer.devices", "int or str"]),
    ("asr", "--trainer.max_bad_batches=0", ["max_bad_batches"]),
    ("asr", "--data.features.sample_rate=-16000", ["sample_rate", "> 0"]),
    ("asr", "--data.features.n_mels=40", ["input_dim=80", "n_mels=40"]),
    ("asr", "--ctc_weight=2", ["ctc_weight", "[0, 1]"]),
    ("asr", "--decoding.beam_size=0", ["beam_size=0"]),
    ("asr", "--data=3", ["data", "expected a mapping"]),
    ("asr", "--task=mt", ["task='mt'", "asr, tts"]),
    ("tts", "--model.reduction_factor=0", ["reduction_factor=0", ">= 1"]),
    ("tts", "--model.encoder.num_heads=5", ["num_heads=5", "divisible"]),
    ("tts", "--model.postnet_kernel=4", ["postnet_kernel=4", "odd"]),
    ("tts", "--model.n_mels=-80", ["n_mels=-80"]),
    ("tts", "--model.bogus=1", ["model.bogus", "reduction_factor"]),
]


@pytest.mark.parametrize(("task", "override", "words"), BAD_CONFIGS, ids=[c[1] for c in BAD_CONFIGS])
def test_bad_config_values_are_rejected_naming_field_and_choices(task, override, words):
    with pytest.raises(ConfigError) as caught:
        load_experiment(CONFIGS / task / "small.yaml", [override])
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


@pytest.mark.slow
def test_cli_rejects_bad_config_and_missing_manifest_before_writing_anything(tmp_path):
    run = tmp_path / "run"
    for override, words in [
        ("--model.reduction_factor=0", "reduction_factor=0"),
        (f"--data.train_manifest={tmp_path / 'nope.jsonl'}", "nope.jsonl: no such manifest"),
    ]:
        result = run_cli("train", "-c", CONFIGS / "tts" / "small.yaml", f"--out_dir={run}", override)
        assert_one_line_error(result, words)
        assert not run.exists()


# ---------------------------------------------------------------------------------------------
# Output names from untrusted ids


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/x",
        "/etc/passwd",
        "a/../../b",
        "..",
        ".hidden",
        "",
        "a\x00b",
        "C:\\Windows\\x",
        "x" * 1000,
        "日本語/../../ü",
    ],
)
def test_output_names_from_ids_stay_inside_the_output_folder(tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    path = output_path(out, name, ".wav")
    assert path.resolve().parent == out.resolve()
    assert "/" not in safe_name(name) and not safe_name(name).startswith(".")
    path.write_bytes(b"")  # writable: a real single file name
    assert safe_name("utt-001_a.b") == "utt-001_a.b"


def test_synthesis_writes_only_inside_its_folder(tmp_path):
    from seq2seq.inference.synthesize import Synthesized, write_outputs

    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    package = type("P", (), {})()
    package.config = load_experiment(CONFIGS / "tts" / "small.yaml", ["--inference.griffin_lim_iterations=1"])
    item = Synthesized("../../escaped", "hi", torch.zeros(5, 80) - 5, torch.zeros(5, 2))
    entry = write_outputs(item, out, package)
    name = safe_name("../../escaped")
    assert sorted(p.name for p in out.iterdir()) == [f"{name}{s}" for s in (".npy", ".png", ".pt", ".wav")]
    assert entry["name"] == name and not list(tmp_path.rglob("escaped*"))


# ---------------------------------------------------------------------------------------------
# Property-based: random bytes and random waveforms never crash or hang

HEADERS = [b"", b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"FORM"]


@settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.sampled_from(HEADERS),
    body=st.binary(max_size=2048),
    suffix=st.sampled_from([".wav", ".flac", ".ogg", ".mp3"]),
)
def test_random_bytes_give_an_audio_error_or_audio(tmp_path, header, body, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(header + body)
    try:
        wave = read_audio(path)
    except AudioError as error:
        assert str(error).startswith(str(path)) and "\n" not in str(error)
    else:
        assert wave.ndim == 1 and wave.shape[0] > 0 and torch.isfinite(wave).all()


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory):
    from seq2seq.inference.transcribe import Transcriber
    from seq2seq.tasks import load_model_package as load_package

    transcriber = Transcriber(load_package(tiny_asr_package(tmp_path_factory.mktemp("fuzz") / "pkg")))
    assert (transcriber.config.beam_size, transcriber.config.ctc_weight) == (1, 0.0)  # greedy search
    return transcriber


def uncached_greedy(model, features: torch.Tensor, max_length_ratio: float) -> list[int]:
    """Greedy decoding of one (T, F) utterance the slow way: the whole prefix again at every step, no
    cache, no batch; at most ``max(1, int(ratio * S))`` tokens for S encoder frames."""
    memory, memory_lengths = model.encode(features[None], torch.tensor([features.shape[0]]))
    limit = max(1, int(max_length_ratio * int(memory_lengths[0])))
    tokens: list[int] = []
    while len(tokens) < limit:
        logits = model.decode(torch.tensor([[SOS_ID, *tokens]]), memory, memory_lengths)[0, -1].float()
        logits[[BLANK_ID, PAD_ID, SOS_ID]] = float("-inf")  # never emitted
        best = int(logits.argmax())
        if best == EOS_ID:
            break
        tokens.append(best)
    return tokens


FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=25, deadline=10000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    samples=st.lists(FLOATS, min_size=0, max_size=4000)
    | st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=4000)
)
def test_random_waveforms_give_a_transcript_or_a_clean_error(transcriber, samples):
    wave = torch.tensor(samples, dtype=torch.float32)
    features = LogMel(FeatureConfig()).single(wave)
    try:
        (text,) = transcriber(features[None], torch.tensor([features.shape[0]]))
    except ValueError as error:
        assert "non-finite" in str(error) or "NaN or infinite" in str(error)
        assert not torch.isfinite(features).all()  # refused only what cannot be analysed
    else:
        with torch.no_grad():
            tokens = uncached_greedy(transcriber.model, features, transcriber.config.max_length_ratio)
        assert text == transcriber.package.tokenizer.decode(tokens)
        assert set(text) <= set(ALPHABET)  # the package's characters only
