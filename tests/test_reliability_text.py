"""Text in and out (docs/reliability.md): text readers decode line by line, long text is spoken piece
by piece and never cut off silently, plot titles draw in any script, and ``--output`` is all or nothing."""

from __future__ import annotations

import builtins
import errno
import json
import logging
import math
import warnings

import pytest
import torch
from support import tiny_asr_package, tiny_tts_package, write_tone

from seq2seq import cli, commands
from seq2seq.core.text import CharTokenizer
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


@pytest.fixture
def latin1_manifest(tmp_path):
    """Two good lines around one in Latin-1 (line 2), one malformed (line 4), the first behind a BOM."""
    waves = [write_tone(tmp_path / f"{name}.wav") for name in ("a", "b", "c")]
    latin1 = _record(waves[1]).replace(b'"text": "a"', b'"text": "caf\xe9"')
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\xef\xbb\xbf" + _record(waves[0]) + latin1 + _record(waves[2]) + b"{oops\n")
    return manifest, waves, latin1.index(b"\xe9") + 1


# ---------------------------------------------------------------------------------------------
# Text readers: manifests and --text-file


def test_manifest_line_that_is_not_utf8_is_one_problem_and_the_others_load(latin1_manifest):
    manifest, waves, column = latin1_manifest
    utterances, problems = read_manifest(manifest)
    assert [u.audio_filepath for u in utterances] == [str(waves[0]), str(waves[2])]
    assert problems[0] == f"{manifest}:2: not UTF-8 (byte 0xe9 at column {column})"
    assert problems[1].startswith(f"{manifest}:4: malformed JSON (") and len(problems) == 2


def test_transcribe_reports_the_bad_manifest_line_and_transcribes_the_rest(latin1_manifest, tmp_path, capsys):
    manifest, waves, column = latin1_manifest
    package = tiny_asr_package(tmp_path / "asr")
    code, out, err = _main(["transcribe", package, "--manifest", manifest], capsys)
    assert code != 2, err  # it used to stop here: error: 'utf-8' codec can't decode byte 0xe9 ...
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(waves[0]), str(waves[2])]
    assert f"error: {manifest}:2: not UTF-8 (byte 0xe9 at column {column})" in err.splitlines()
    assert "Traceback" not in err and "codec" not in err


def _text_file(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"hello\n\xff\xfe bad\nworld\r\n\n   \nca\xc3\xa9 ok\nlast")
    return path


def test_text_file_line_that_is_not_utf8_is_one_problem_and_the_others_are_read(tmp_path):
    path = _text_file(tmp_path)
    sentences, problems = read_texts(["first", "  "], path)
    assert sentences == ["first", "hello", "world", "caé ok", "last"]
    assert problems == [f"{path}:2: not UTF-8 (byte 0xff at column 1)"]


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
    """A text file whose ``writelines`` writes (and flushes) ``n`` lines, then fails as a full disk does."""

    def __init__(self, file, n: int):
        self.file, self.n = file, n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def __getattr__(self, name):
        return getattr(self.file, name)

    def writelines(self, lines):
        for i, line in enumerate(lines):
            if i == self.n:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.file.write(line)
            self.file.flush()


def test_transcribe_output_is_all_or_nothing(tmp_path, monkeypatch, capsys):
    waves = [write_tone(tmp_path / f"{i}.wav") for i in range(4)]
    package, output = tiny_asr_package(tmp_path / "asr"), tmp_path / "out" / "t.tsv"
    output.parent.mkdir()
    output.write_text("previous\tresult\n")

    def failing(*args, **kwargs):
        return DiskFullAfter(builtins.open(*args, **kwargs), 2)  # noqa: SIM115 (closed by DiskFullAfter)

    monkeypatch.setattr(commands, "open", failing, raising=False)  # shadows the builtin in commands only
    code, _, err = _main(["transcribe", package, *waves, "--output", output], capsys)
    assert code == 2 and err == "error: [Errno 28] No space left on device\n"
    assert output.read_text() == "previous\tresult\n"
    assert [p.name for p in output.parent.iterdir()] == ["t.tsv"]
    monkeypatch.undo()
    code, _, err = _main(["transcribe", package, *waves, "--output", output], capsys)
    assert code == 0, err
    text = output.read_text()
    assert text.endswith("\n") and [line.split("\t")[0] for line in text.splitlines()] == list(
        map(str, waves)
    )
