"""Text in and out (docs/reliability.md): text readers decode line by line, long text is spoken piece
by piece and never cut off silently, plot titles draw in any script, and ``--output`` is all or nothing."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from support import cli_command, error_lines, run_cli, tiny_asr_package, tiny_tts_package, write_tone

from seq2seq import cli, commands
from seq2seq.core.text import CharTokenizer, PhonemeTokenizer
from seq2seq.data.corpora.commonvoice import prepare_commonvoice
from seq2seq.data.corpora.librispeech import prepare_librispeech
from seq2seq.data.corpora.ljspeech import prepare_ljspeech
from seq2seq.data.manifest import read_manifest
from seq2seq.decoding.tts import frame_limits
from seq2seq.inference.synthesize import (
    MAX_PIECE_WORDS,
    Synthesized,
    Synthesizer,
    plot,
    read_texts,
    split_text,
    synthesize_texts,
)
from seq2seq.tasks import load_model_package


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _record(path, text: str = "a") -> bytes:
    return json.dumps({"audio_filepath": str(path), "duration": 0.3, "text": text}).encode() + b"\n"


# ---------------------------------------------------------------------------------------------
# Text readers: every reader decodes line by line; a bad line is `FILE:LINE: reason`, the others go on

LATIN1 = b"caf\xe9"  # "café" in Latin-1: not UTF-8


class Reader(NamedTuple):
    """A file format and the code that reads it. ``make(tmp)`` writes what the lines refer to and returns
    ``(line, key)`` per line (``key`` None for a line that is not data); ``run(tmp, file, capsys)``
    returns the keys of what was read and the problem lines. ``bad`` is a line that is UTF-8 but
    malformed, with the start of its reason (None for plain text, where every such line is good)."""

    make: Callable
    run: Callable
    bad: tuple[bytes, str] | None


def _manifest_lines(tmp):
    waves = [write_tone(tmp / f"w{i}.wav") for i in range(3)]
    latin1 = _record(waves[1], "cab").replace(b'"cab"', b'"' + LATIN1 + b'"')
    lines = [b"\xef\xbb\xbf" + _record(waves[0]), latin1, _record(waves[2])]
    return list(zip((line.rstrip(b"\n") for line in lines), ["w0", None, "w2"]))


def _problems(err: str) -> list[str]:
    return [line.removeprefix("error: ") for line in err.splitlines() if line.startswith("error: ")]


def _read_manifest(tmp, file, capsys):
    utterances, problems = read_manifest(file)
    return [Path(u.audio_filepath).stem for u in utterances], problems


def _read_text_file(tmp, file, capsys):
    return read_texts([], file)


def _transcribe(tmp, file, capsys):
    code, out, err = _main(["transcribe", tiny_asr_package(tmp / "asr"), "--manifest", file], capsys)
    assert code == 1, err  # reported lines: exit status 1, the rest transcribed
    return [Path(line.split("\t")[0]).stem for line in out.splitlines()], _problems(err)


def _evaluate(tmp, file, capsys, package=None):
    package = package or tiny_asr_package(tmp / "asr")
    code, _, err = _main(["evaluate", package, file, "--out", tmp / "eval.jsonl"], capsys)
    assert code == 1, err
    rows = [json.loads(line) for line in (tmp / "eval.jsonl").read_text().splitlines()]
    return [row["id"] for row in rows], _problems(err)


def _evaluate_tts(tmp, file, capsys):
    return _evaluate(tmp, file, capsys, tiny_tts_package(tmp / "tts", CharTokenizer.build(["a cab"])))


def _corpus_reader(prepare):
    def run(tmp, file, capsys):
        with _warnings() as records:
            paths = prepare(tmp / "corpus", tmp / "manifests")
        ids = sorted(u.id for path in paths.values() for u in read_manifest(path)[0])
        return ids, [r for r in records if str(file) in r]

    return run


def _ljspeech_lines(tmp):
    for name in ("LJ1", "LJ3"):
        write_tone(tmp / "corpus" / "wavs" / f"{name}.wav")
    return [(b"LJ1|One|one", "LJ1"), (b"LJ2|" + LATIN1 + b"|x", None), (b"LJ3|Three|three", "LJ3")]


def _librispeech_lines(tmp):
    for name in ("1-2-0001", "1-2-0003"):
        write_tone(tmp / "corpus" / "train" / "1" / "2" / f"{name}.flac")
    return [(b"1-2-0001 ONE", "1-2-0001"), (b"1-2-0002 " + LATIN1, None), (b"1-2-0003 THREE", "1-2-0003")]


def _commonvoice_lines(tmp):
    for name in ("a", "c"):
        write_tone(tmp / "corpus" / "clips" / f"{name}.wav")
    return [
        (b"client_id\tpath\tsentence", None),
        (b"x\ta.wav\tone", "a"),
        (b"x\tb.wav\t" + LATIN1, None),
        (b"x\tc.wav\tthree", "c"),
    ]


READERS = {
    "manifest": Reader(_manifest_lines, _read_manifest, (b"{oops", "malformed JSON (")),
    "text-file": Reader(
        lambda tmp: [(b"one", "one"), (LATIN1, None), (b"three", "three")], _read_text_file, None
    ),
    "transcribe --manifest": Reader(_manifest_lines, _transcribe, (b"[1, 2]", "expected a JSON object")),
    "evaluate --manifest": Reader(_manifest_lines, _evaluate, (b'{"text": "a"}', "missing field")),
    "evaluate (TTS) --manifest": Reader(_manifest_lines, _evaluate_tts, (b"{oops", "malformed JSON (")),
    "ljspeech metadata.csv": Reader(_ljspeech_lines, _corpus_reader(prepare_ljspeech), (b"LJ9", "expected")),
    "librispeech trans.txt": Reader(
        _librispeech_lines, _corpus_reader(prepare_librispeech), (b"1-2-0009", "expected '<utterance-id>")
    ),
    "commonvoice tsv": Reader(
        _commonvoice_lines, _corpus_reader(prepare_commonvoice), (b"x\t\tempty", "empty path or sentence")
    ),
}
READER_FILES = {
    "ljspeech metadata.csv": "corpus/metadata.csv",
    "librispeech trans.txt": "corpus/train/1/2/1-2.trans.txt",
    "commonvoice tsv": "corpus/train.tsv",
}


@pytest.mark.parametrize("name", list(READERS))
def test_every_text_reader_reports_a_bad_line_by_file_and_line_and_reads_the_others(name, tmp_path, capsys):
    reader = READERS[name]
    lines = reader.make(tmp_path)
    if reader.bad:  # a malformed line after the one that is not UTF-8
        lines.insert(-1, (reader.bad[0], None))
    file = tmp_path / READER_FILES.get(name, "input.txt")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"\n".join(line for line, _ in lines) + b"\n\n")
    latin1 = next(i for i, (line, _) in enumerate(lines, 1) if LATIN1 in line)
    column = lines[latin1 - 1][0].index(b"\xe9") + 1
    keys, problems = reader.run(tmp_path, file, capsys)
    assert keys == [key for _, key in lines if key], problems
    assert problems[0] == f"{file}:{latin1}: not UTF-8 (byte 0xe9 at column {column})"
    if reader.bad:
        assert problems[1].startswith(f"{file}:{latin1 + 1}: {reader.bad[1]}"), problems
    assert len(problems) == 1 + bool(reader.bad), problems
    assert not any("codec" in p or "Traceback" in p for p in problems)


@contextmanager
def _warnings():
    """Messages of the WARNING records logged inside the block."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger().addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger().removeHandler(handler)


def _text_file(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"hello\n\xff\xfe bad\nworld\r\n\n   \nca\xc3\xa9 ok\nlast")
    return path


def test_synthesize_command_reports_the_bad_line_and_speaks_the_rest(tmp_path, monkeypatch, capsys):
    package = tiny_tts_package(tmp_path / "tts", CharTokenizer.build(["a cab"]))
    spoken = []
    monkeypatch.setattr(Synthesizer, "write", lambda self, sentences, *a, **k: spoken.extend(sentences) or 0)
    path = _text_file(tmp_path)
    code, _, err = _main(
        ["synthesize", package, "first", "--text-file", path, "--out", tmp_path / "o"], capsys
    )
    assert code == 1  # something was left out
    assert err.splitlines() == [f"error: {path}:2: not UTF-8 (byte 0xff at column 1)"]
    assert spoken == ["first", "hello", "world", "caé ok", "last"]


# ---------------------------------------------------------------------------------------------
# Long text


WORDS = ["cab", "bad", "a", "ab", "baba", "dab"]
WORD_COUNTS = [1, 2, 3, 5, 8, 13, 20, 21, 34, 55, 89, 144, 233, 400]


def words_text(n: int) -> str:
    """``n`` words with a comma after every 7th and a full stop after every 16th (and at the end)."""
    words = [WORDS[i % len(WORDS)] + ("." if i % 16 == 15 else "," if i % 7 == 6 else "") for i in range(n)]
    return " ".join(words) + "."


def test_split_text_keeps_every_word_in_order_in_short_pieces():
    for n in WORD_COUNTS:
        pieces = split_text(words_text(n))
        assert " ".join(p for p, _ in pieces).split() == words_text(n).split()
        assert all(len(p.split()) <= MAX_PIECE_WORDS for p, _ in pieces)
        assert pieces[-1][1] == 0.0 and all(pause > 0 for _, pause in pieces[:-1])
    run_on = " ".join(["cab"] * 45)  # no punctuation at all: split evenly between words
    assert [len(p.split()) for p, _ in split_text(run_on)] == [15, 15, 15]
    assert split_text("One. Two! Three? 你好。再见") == [
        ("One.", 0.3),
        ("Two!", 0.3),
        ("Three?", 0.3),
        ("你好。", 0.3),
        ("再见", 0.0),
    ]
    assert split_text("3.5 is 3,000 and more") == [("3.5 is 3,000 and more", 0.0)]


@pytest.fixture(scope="module")
def tts_package(tmp_path_factory):
    """A random TTS package (r = 2, 3 frames per token at most) whose stop token never fires."""
    tokenizer = CharTokenizer.build(["a cab, bad dab. baba"])
    return load_model_package(tiny_tts_package(tmp_path_factory.mktemp("long") / "tts", tokenizer))


def _expected_frames(package, text: str) -> tuple[int, int]:
    """Frames of ``text`` when every piece runs to its maximum length, and its number of pieces."""
    features, r = package.config.data.features, package.model.config.reduction_factor
    pieces = split_text(text)
    tokens = torch.tensor([len(package.tokenizer.encode(p)) for p, _ in pieces])
    _, most = frame_limits(tokens, package.config.inference.max_length_ratio)
    pauses = sum(r * round(pause * features.frame_rate / r) for _, pause in pieces)
    return int(most.sum()) + pauses, len(pieces)


def test_output_grows_with_the_text_from_1_to_400_words(tts_package, caplog):
    texts = [words_text(n) for n in WORD_COUNTS]
    with caplog.at_level(logging.ERROR, logger="seq2seq.inference.synthesize"):
        items = synthesize_texts(tts_package, texts, batch_size=16)
    frames = [item.mel.shape[0] for item in items]
    expected = [_expected_frames(tts_package, text) for text in texts]
    assert frames == [e[0] for e in expected]  # every piece spoken in full, pauses between them
    assert frames == sorted(frames)
    per_word = [f / n for f, n in zip(frames, WORD_COUNTS)]
    assert all(0.7 < rate / per_word[-1] < 1.4 for rate in per_word[4:]), per_word  # roughly proportional
    silence = math.log(tts_package.config.data.features.log_floor)
    assert (items[-1].mel == silence).all(dim=1).sum() > 0  # pauses are log-floor frames
    # No piece stopped: each is reported once, with its sentence and piece index; none silently.
    assert len(caplog.records) == sum(e[1] for e in expected)
    assert f"sentence 0014 {texts[-1][:40]!r}, piece 1 of {expected[-1][1]}" in caplog.text
    assert "sentence 0001 'cab.': no stop token within" in caplog.text
    assert all(item.alignment.shape[1] > 0 for item in items)


# ---------------------------------------------------------------------------------------------
# Text the model cannot speak as written: CJK and emoji into an English model


FOREIGN = ["a cab", "你好 a cab 😀", "你好", "bad"]
OUTSIDE = "characters outside the model's language"
SKIPPED = "nothing left to speak (skipped)"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["char", "phoneme"])
def test_foreign_text_is_counted_per_sentence_and_the_rest_is_spoken(kind, tmp_path):
    if kind == "char":  # no symbol for 你, 好, 😀: dropped; a sentence of nothing else is skipped
        tokenizer = CharTokenizer.build(["a cab bad dab"])
        warned = {
            2: f"warning: sentence 2 '你好 a cab 😀': 3 {OUTSIDE}: 3 dropped ('你', '好', '😀')",
            3: f"error: sentence 3 '你好': 2 {OUTSIDE}: 2 dropped ('你', '好'); {SKIPPED}",
        }
    else:  # eSpeak NG (en-us) reads them out by name: "Chinese letter", "grinning face"
        tokenizer = PhonemeTokenizer.build(["a cab bad dab", "你好 😀"])
        warned = {
            2: f"warning: sentence 2 '你好 a cab 😀': 3 {OUTSIDE}: 3 spelled out ('你', '好', '😀')",
            3: f"warning: sentence 3 '你好': 2 {OUTSIDE}: 2 spelled out ('你', '好')",
        }
    package, out = tiny_tts_package(tmp_path / "tts", tokenizer), tmp_path / "out"
    result = run_cli("synthesize", package, *FOREIGN, "--out", out)
    assert result.returncode == 1, result.stderr  # reported, the rest done
    lines = [line for line in result.stderr.splitlines() if "no stop token" not in line]  # random weights
    assert lines[:-1] == list(warned.values()), result.stderr  # and no matplotlib glyph warnings:
    assert "Glyph" not in result.stderr and "Warning" not in result.stderr  # titles hold CJK and emoji
    assert lines[-1].startswith(f"{4 - ('skipped' in warned[3])} sentences, ")  # the summary; nothing else
    entries = [json.loads(line) for line in (out / "synthesized.jsonl").read_text().splitlines()]
    spoken = [i for i in range(1, 5) if i not in warned or "skipped" not in warned[i]]
    assert [e["name"] for e in entries] == [f"{i:04d}" for i in spoken]
    assert all(
        (out / f"{e['name']}{suffix}").stat().st_size > 0 for e in entries for suffix in (".png", ".wav")
    )
    unstopped = run_cli("synthesize", package, "a cab", "bad", "--out", tmp_path / "unstopped")
    assert unstopped.returncode == 1 and len(error_lines(unstopped.stderr)) == 2  # "no stop token": reported
    config = json.loads((package / "config.json").read_text())
    config["experiment"]["inference"]["stop_threshold"] = 1e-6  # stops at once: nothing to report
    (package / "config.json").write_text(json.dumps(config))
    clean = run_cli("synthesize", package, "a cab", "bad", "--out", tmp_path / "clean")
    assert clean.returncode == 0 and clean.stderr.splitlines()[0].startswith("2 sentences, "), clean.stderr


def test_a_char_model_speaks_the_sentence_without_the_dropped_characters(tts_package):
    (with_foreign,), (plain,) = (synthesize_texts(tts_package, [text]) for text in ("你好 a cab 😀", "a cab"))
    assert torch.equal(with_foreign.mel, plain.mel)  # the same tokens, the same seed: the same frames


# ---------------------------------------------------------------------------------------------
# Plots


def test_plot_titles_in_any_script_draw_without_warnings(tmp_path):
    title = "你好，世界 🙂 costs $5 and $6 \x00 naïve"
    item = Synthesized("x", title, torch.randn(12, 20), torch.rand(6, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot(item, tmp_path / "x.png")
    assert [str(w.message) for w in caught] == []
    assert (tmp_path / "x.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# Interrupted output


def test_write_lines_stopped_midway_leaves_the_previous_file_or_none(tmp_path):
    def lines():
        for i in range(10):
            if i == 5:
                raise KeyboardInterrupt
            yield f"line {i}"

    kept, absent = tmp_path / "kept.txt", tmp_path / "absent.txt"
    kept.write_text("previous run\n")
    for path in (kept, absent):
        with pytest.raises(KeyboardInterrupt):
            commands.write_lines(lines(), str(path))
    assert kept.read_text() == "previous run\n" and not absent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]  # no temporary file left
    commands.write_lines((f"line {i}" for i in range(3)), str(absent))
    assert absent.read_text() == "line 0\nline 1\nline 2\n"


class DiskFullAfter:
    """``LineFile._write`` that writes ``n`` whole lines, then half of the next one and fails as a full
    disk does."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, file: commands.LineFile, data: memoryview) -> int:
        self.calls += 1
        if self.calls <= self.n:
            return os.write(file.descriptor, data)
        os.write(file.descriptor, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


def test_transcribe_output_keeps_whole_lines_when_the_disk_fills(tmp_path, monkeypatch, capsys):
    waves = [write_tone(tmp_path / f"{i}.wav") for i in range(4)]
    package, output = tiny_asr_package(tmp_path / "asr"), tmp_path / "out" / "t.tsv"
    full = DiskFullAfter(2)
    monkeypatch.setattr(commands.LineFile, "_write", lambda file, data: full(file, data))
    code, _, err = _main(["transcribe", package, *waves, "--output", output], capsys)
    assert code == 2 and err == "error: [Errno 28] No space left on device\n"
    lines = output.read_text().split("\n")  # cut back to the last whole line: no half of the third
    assert lines[-1] == "" and [line.split("\t")[0] for line in lines[:-1]] == list(map(str, waves[:2]))
    monkeypatch.undo()
    code, _, err = _main(["transcribe", package, *waves, "--output", output], capsys)
    assert code == 0, err
    text = output.read_text()
    assert text.endswith("\n") and [line.split("\t")[0] for line in text.splitlines()] == list(
        map(str, waves)
    )
    assert [p.name for p in output.parent.iterdir()] == ["t.tsv"]  # no temporary file


SLOW_TRANSCRIBE = """
import sys, time
from seq2seq.inference import transcribe
decode = transcribe.decode_segment_batch
transcribe.decode_segment_batch = lambda *a: (time.sleep(0.05), decode(*a))[1]  # 30 files take >= 1.5 s
from seq2seq.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_transcribe_killed_halfway_leaves_only_whole_lines(tmp_path):
    folder, output = tmp_path / "audio", tmp_path / "out.jsonl"
    waves = [write_tone(folder / f"{i:02d}.wav", 0.2 + 0.02 * i) for i in range(30)]
    package = tiny_asr_package(tmp_path / "asr")
    argv = [
        "transcribe",
        package,
        folder,
        "--batch-size",
        "1",
        "--output-format",
        "jsonl",
        "--output",
        output,
    ]
    command = [sys.executable, "-c", SLOW_TRANSCRIBE, *map(str, argv)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (output.exists() and output.stat().st_size > 0) and process.poll() is None:
        assert time.monotonic() < deadline, "no result appeared"
        time.sleep(0.002)
    time.sleep(0.1)  # a few more results, then SIGKILL wherever it is (perhaps inside a write)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, process.stderr.read()
    text = output.read_text(encoding="utf-8")
    assert text.endswith("\n")  # no half-written line
    done = [json.loads(line)["audio_filepath"] for line in text.splitlines()]
    assert 0 < len(done) < len(waves)  # killed halfway
    assert done == list(map(str, waves[: len(done)]))  # whole results, in input order
    rerun = subprocess.run(cli_command(*argv), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert [json.loads(line)["audio_filepath"] for line in output.read_text().splitlines()] == list(
        map(str, waves)
    )
