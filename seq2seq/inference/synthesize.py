"""Text -> mel spectrograms and Griffin-Lim audio with a TTS model package (no Lightning, no pickle).

For every sentence ``<name>`` it writes ``<name>.npy`` (log-mel, (T, n_mels) float32), ``<name>.pt``
(the same, a plain tensor), ``<name>.png`` (spectrogram and attention alignment) and ``<name>.wav``
(Griffin-Lim), plus ``synthesized.jsonl`` listing name, text, frames and seconds per sentence.

Long text is spoken piece by piece: each input is split into sentences, long sentences at their clauses,
the pieces are synthesized as one batch and joined with short pauses into one output per input.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile
import torch

from seq2seq.core.audio import mel_to_audio
from seq2seq.core.package import ModelPackage, PackageError
from seq2seq.core.safety import output_path, safe_name
from seq2seq.core.text import PAD_ID, UNK_ID
from seq2seq.data.manifest import text_lines
from seq2seq.decoding.tts import frame_limits, synthesize

log = logging.getLogger(__name__)

MAX_PIECE_WORDS = 20  # sentences longer than this are split at their clauses: attention drifts on long input
SENTENCE_PAUSE_SECONDS = 0.3  # silence between two sentences of one text
CLAUSE_PAUSE_SECONDS = 0.15  # silence where a long sentence was split at a comma or semicolon
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])")
_CLAUSE_END = re.compile(r"((?<=[,;:])\s+|(?<=[，；、]))")  # kept by split(): a capture group


@dataclass
class Synthesized:
    """One synthesized sentence.

    Attributes:
        name: file stem of its outputs.
        text: the input sentence.
        mel: (T, n_mels) log-mel.
        alignment: (U, S) cross-attention of decoder steps over text positions; for a text spoken in
            several pieces, each piece's block on the diagonal (pause steps are zero).
        unstopped: pieces that reached the maximum length without a stop token (each one logged).
    """

    name: str
    text: str
    mel: torch.Tensor
    alignment: torch.Tensor
    unstopped: int = 0


def read_texts(texts: list[str], text_file: str | Path | None = None) -> tuple[list[str], list[str]]:
    """Sentences from the arguments, then one per non-empty line of ``text_file``.

    Returns:
        sentences: the texts, then the good lines of the file, in order.
        problems: one line per line that is not UTF-8, e.g. ``"lines.txt:3: not UTF-8 (byte 0xff at
            column 7)"``; the other lines are read.
    """
    sentences, problems = [t for t in texts if t.strip()], []
    if text_file is not None:
        sentences += [line.strip() for _, line in text_lines(text_file, problems) if line.strip()]
    return sentences, problems


def split_text(text: str, max_words: int = MAX_PIECE_WORDS) -> list[tuple[str, float]]:
    """Pieces of ``text`` short enough to speak well, each with the seconds of silence that follow it.

    Sentences end at ``. ! ? …`` before a space (and at ``。！？``). A sentence of more than ``max_words``
    words is split at its clause boundaries (``, ; :`` before a space, ``，；、``), clauses grouped into
    pieces of at most ``max_words`` words; a clause longer than that is split evenly between words.
    The last piece is followed by no pause; a text with no words is one piece, itself.
    """
    pieces: list[tuple[str, float]] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        clauses = _clause_pieces(sentence, max_words)
        pieces += [(c, CLAUSE_PAUSE_SECONDS) for c in clauses[:-1]]
        pieces += [(c, SENTENCE_PAUSE_SECONDS) for c in clauses[-1:]]
    if not pieces:
        return [(text, 0.0)]
    return pieces[:-1] + [(pieces[-1][0], 0.0)]


def _clause_pieces(sentence: str, max_words: int) -> list[str]:
    if len(sentence.split()) <= max_words:
        return [sentence.strip()] if sentence.strip() else []
    parts = _CLAUSE_END.split(sentence)  # clause, separator, clause, ..., clause
    clauses = ["".join(parts[i : i + 2]) for i in range(0, len(parts), 2)]
    pieces, words = [], 0
    for chunk in (chunk for clause in clauses for chunk in _even_chunks(clause, max_words)):
        count = len(chunk.split())
        if pieces and words + count <= max_words:
            pieces[-1], words = pieces[-1] + chunk, words + count
        else:
            pieces.append(chunk)
            words = count
    return [piece.strip() for piece in pieces if piece.strip()]


def _even_chunks(clause: str, max_words: int) -> list[str]:
    """``clause`` itself, or when it has more than ``max_words`` words, near-equal runs of its words."""
    words = clause.split()
    if len(words) <= max_words:
        return [clause]
    size = math.ceil(len(words) / math.ceil(len(words) / max_words))
    return [" ".join(words[i : i + size]) + " " for i in range(0, len(words), size)]


def outside_language(package: ModelPackage, texts: list[str]) -> dict[int, str]:
    """Sentence index -> one line counting the characters outside the model's language, e.g.
    ``"sentence 2 '你好 world': 2 characters outside the model's language: 2 spelled out ('你', '好')"``.

    A character tokenizer drops what it has no symbol for; eSpeak NG spells other scripts and emoji out
    by name ("Chinese letter", "grinning face"). Either way the audio is not the text as written.
    """
    found = {i: package.tokenizer.outside_language(text) for i, text in enumerate(texts)}
    return {i: f"sentence {i + 1} {texts[i][:40]!r}: {o.describe()}" for i, o in found.items() if o}


@torch.no_grad()
def synthesize_texts(
    package: ModelPackage,
    texts: list[str],
    names: list[str] | None = None,
    batch_size: int = 16,
    seed: int | None = 0,
    engine: Any = None,
) -> list[Synthesized]:
    """Synthesize ``texts`` in batches with the package's inference settings, one result per text.

    Each text is split into pieces (:func:`split_text`); the pieces of all texts are synthesized in
    batches and joined per text with pauses of silence (the log floor the features are made with). A
    piece that reaches the maximum length (``max_length_ratio`` frames per token: no stop token) is
    logged as an error naming its sentence and piece, never cut off silently.

    Args:
        package: a loaded TTS package.
        texts: sentences; each must have a character the model can speak (others are dropped).
        names: output names (default ``0001``, ``0002``, ...).
        batch_size: pieces synthesized together.
        seed: seed of the decoder prenet dropout (None: unseeded, a different rendition each call).
        engine: runs the model instead of ``package.model`` (e.g. ``onnx_engine.OnnxTTS``, on the CPU).
    """
    names = names or [f"{i + 1:04d}" for i in range(len(texts))]
    device = next(package.model.parameters()).device
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    plans = [_plan(package, text) for text in texts]
    pieces = [piece for plan in plans for piece in plan]
    spoken = [
        result
        for start in range(0, len(pieces), batch_size)
        for result in _synthesize_batch(package, pieces[start : start + batch_size], generator, engine)
    ]
    results, offset = [], 0
    for name, text, plan in zip(names, texts, plans):
        parts, offset = spoken[offset : offset + len(plan)], offset + len(plan)
        unstopped = _report_unstopped(package, f"sentence {name} {text[:40]!r}", plan, parts)
        results.append(Synthesized(name, text, *_join(package, plan, parts), unstopped))
    return results


class Piece(NamedTuple):
    """A sentence or clause of one input text, synthesized on its own."""

    text: str
    ids: torch.Tensor  # (S,) token ids
    pause: float  # seconds of silence after it in the joined output


class Spoken(NamedTuple):
    """One synthesized piece."""

    mel: torch.Tensor  # (T, n_mels) log-mel
    alignment: torch.Tensor  # (U, S)
    stopped: bool  # False: it reached the maximum length without a stop token


def _plan(package: ModelPackage, text: str) -> list[Piece]:
    """The pieces of ``text`` that have tokens, without the characters outside the vocabulary (never
    trained, they would be noise; removed before normalisation, so no stray spaces are left either);
    the last piece is followed by no pause."""
    tokenizer, encoded = package.tokenizer, []
    for piece, pause in split_text(text):
        unknown = tokenizer.unknown_characters(piece)
        spoken = "".join(c for c in piece if tokenizer.normalizer(c) not in unknown) if unknown else piece
        ids = [i for i in tokenizer.encode(spoken) if i != UNK_ID]
        encoded.append(Piece(piece, torch.tensor(ids, dtype=torch.long), pause))
    kept = [piece for piece in encoded if len(piece.ids)]
    if not kept:
        raise ValueError(f"{text[:40]!r}: a sentence has no characters the model can speak")
    return kept[:-1] + [kept[-1]._replace(pause=0.0)]


def _synthesize_batch(
    package: ModelPackage, pieces: list[Piece], generator: torch.Generator | None, engine: Any = None
) -> list[Spoken]:
    model, settings = engine or package.model, package.config.inference
    device = torch.device("cpu") if engine is not None else next(model.parameters()).device
    lengths = torch.tensor([len(p.ids) for p in pieces], device=device)
    tokens = torch.nn.utils.rnn.pad_sequence([p.ids for p in pieces], batch_first=True, padding_value=PAD_ID)
    ratios = (settings.max_length_ratio, settings.min_length_ratio)
    out = synthesize(model, tokens.to(device), lengths, *ratios, settings.stop_threshold, generator=generator)
    _, max_frames = frame_limits(lengths, *ratios)
    r, results = model.config.reduction_factor, []
    for b in range(len(pieces)):
        frames = int(out.mel_lengths[b])
        alignment = out.alignments[b, : -(-frames // r), : int(lengths[b])].cpu()
        results.append(Spoken(out.mels[b, :frames].cpu(), alignment, frames < int(max_frames[b])))
    return results


def _report_unstopped(package: ModelPackage, sentence: str, plan: list[Piece], parts: list[Spoken]) -> int:
    """One error line per piece that reached the maximum length (its end may be missing); their count."""
    ratio, count = package.config.inference.max_length_ratio, 0
    for index, (piece, spoken) in enumerate(zip(plan, parts)):
        if spoken.stopped:
            continue
        count += 1
        where = f", piece {index + 1} of {len(plan)} {piece.text[:40]!r}" if len(plan) > 1 else ""
        log.error(
            "%s%s: no stop token within %d frames (max_length_ratio %g x %d tokens); its end may be cut off",
            sentence,
            where,
            spoken.mel.shape[0],
            ratio,
            len(piece.ids),
        )
    return count


def _join(package: ModelPackage, plan: list[Piece], parts: list[Spoken]) -> tuple[torch.Tensor, torch.Tensor]:
    """One mel (T, n_mels) of the pieces with their pauses between, and their alignments on the diagonal
    of one (U, S) matrix (pause steps attend nowhere)."""
    if len(parts) == 1:
        return parts[0].mel, parts[0].alignment
    features, r = package.config.data.features, package.model.config.reduction_factor
    silence = math.log(features.log_floor)  # what LogMel gives for digital silence
    mels, alignments = [], []
    for piece, spoken in zip(plan, parts):
        frames = r * round(piece.pause * features.frame_rate / r)
        mels += [spoken.mel, spoken.mel.new_full((frames, spoken.mel.shape[1]), silence)]
        alignments += [spoken.alignment, spoken.alignment.new_zeros(frames // r, 0)]
    return torch.cat(mels), torch.block_diag(*alignments)


def _drawable(text: str) -> str:
    """``text`` as matplotlib's default font can draw it: characters it lacks (CJK, emoji, controls)
    become U+FFFD and ``$`` is escaped (no mathtext), so a title in any script draws without warnings."""
    from matplotlib import font_manager

    charmap = font_manager.get_font(font_manager.findfont(font_manager.FontProperties())).get_charmap()
    missing = "\ufffd" if 0xFFFD in charmap else "?"
    drawn = (" " if c.isspace() else c if ord(c) in charmap else missing for c in text)
    return "".join(drawn).replace("$", r"\$")


def plot(item: Synthesized, path: Path) -> None:
    """Spectrogram over the attention alignment, written with matplotlib's Agg canvas (no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), constrained_layout=True)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1)
    image = top.imshow(item.mel.T.numpy(), origin="lower", aspect="auto", interpolation="none")
    top.set(title=_drawable(item.text[:80]), xlabel="frame", ylabel="mel band")
    figure.colorbar(image, ax=top, label="log power")
    bottom.imshow(item.alignment.T.numpy(), origin="lower", aspect="auto", interpolation="none", vmin=0)
    bottom.set(xlabel="decoder step", ylabel="text position", title="cross-attention alignment")
    figure.savefig(path, dpi=100)


def write_outputs(item: Synthesized, out_dir: Path, package: ModelPackage) -> dict:
    """Write the four files of one sentence; returns its ``synthesized.jsonl`` entry."""
    features = package.config.data.features
    # Names may come from manifest ids: "../../x" or "a/b" must not write outside out_dir.
    np.save(output_path(out_dir, item.name, ".npy"), item.mel.numpy().astype(np.float32))
    torch.save(item.mel.clone(), output_path(out_dir, item.name, ".pt"))
    plot(item, output_path(out_dir, item.name, ".png"))
    audio = mel_to_audio(item.mel, features, package.config.inference.griffin_lim_iterations)
    soundfile.write(output_path(out_dir, item.name, ".wav"), audio.numpy(), features.sample_rate)
    seconds = item.mel.shape[0] / features.frame_rate
    return {
        "name": safe_name(item.name),
        "text": item.text,
        "frames": item.mel.shape[0],
        "seconds": round(seconds, 3),
    }


class Synthesizer:
    """Speaks text with a TTS package; ``seq2seq.load_package`` returns one for TTS packages.

    Args:
        package: a loaded TTS model package.
        engine: runs the model instead of the package's PyTorch one (``onnx_engine.OnnxTTS``).
    """

    def __init__(self, package: ModelPackage, engine: Any = None):
        if package.task != "tts":
            raise PackageError(f"{package.path}: a {package.task} package, not a TTS one")
        self.package, self.engine = package, engine

    def synthesize(
        self, texts: list[str], names: list[str] | None = None, batch_size: int = 16, seed: int | None = 0
    ) -> list[Synthesized]:
        """Log-mels and alignments of ``texts`` (see :func:`synthesize_texts`)."""
        return synthesize_texts(self.package, texts, names, batch_size, seed, self.engine)

    def write(
        self, sentences: list[str], out_dir: str | Path, batch_size: int = 16, seed: int | None = 0
    ) -> int:
        """Speak every sentence into ``out_dir`` (four files each, and an index).

        A sentence with characters outside the model's language is spoken without them (or with them
        spelled out, see :func:`outside_language`) and reported: one warning line naming it and counting
        them. A sentence with nothing left to speak is one error line and is skipped.

        Returns:
            0 when every sentence was spoken as written; 1 when any was reported (text outside the
            model's language, nothing left to speak, no stop token), or none were given.
        """
        warned, unspeakable = outside_language(self.package, sentences), self.unspeakable(sentences)
        for index in sorted(warned.keys() | unspeakable):
            if index in unspeakable:
                line = warned.get(index, f"sentence {index + 1} {sentences[index][:40]!r}")
                log.error("%s; nothing left to speak (skipped)", line)
            else:
                log.warning("%s", warned[index])
        keep = [i for i in range(len(sentences)) if i not in unspeakable]
        if not keep:
            log.error("nothing to synthesize")
            return 1
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        names = [f"{i + 1:04d}" for i in keep]
        items = self.synthesize([sentences[i] for i in keep], names, batch_size, seed)
        entries = [write_outputs(item, out_dir, self.package) for item in items]
        elapsed, audio_seconds = time.perf_counter() - start, sum(e["seconds"] for e in entries)
        with open(out_dir / "synthesized.jsonl", "w", encoding="utf-8") as index:
            index.writelines(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries)
        log.info(
            "%d sentences, %.1f s of audio in %.1f s (RTF %.2f incl. Griffin-Lim) -> %s",
            len(entries),
            audio_seconds,
            elapsed,
            elapsed / max(audio_seconds, 1e-9),
            out_dir,
        )
        return 1 if warned or unspeakable or any(item.unstopped for item in items) else 0

    def unspeakable(self, sentences: list[str]) -> set[int]:
        """Indices of the sentences with no character the model can speak."""
        found = set()
        for index, text in enumerate(sentences):
            try:
                _plan(self.package, text)
            except ValueError:
                found.add(index)
        return found
