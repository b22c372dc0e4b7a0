"""Text -> mel spectrograms and Griffin-Lim audio with a TTS model package (no Lightning, no pickle).

For every sentence ``<name>`` it writes ``<name>.npy`` (log-mel, (T, n_mels) float32), ``<name>.pt``
(the same, a plain tensor), ``<name>.png`` (spectrogram and attention alignment) and ``<name>.wav``
(Griffin-Lim), plus ``synthesized.jsonl`` listing name, text, frames and seconds per sentence.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from seq2seq.core.audio import mel_to_audio
from seq2seq.core.package import ModelPackage, PackageError
from seq2seq.core.safety import output_path, safe_name
from seq2seq.core.text import PAD_ID
from seq2seq.decoding.tts import synthesize

log = logging.getLogger(__name__)


@dataclass
class Synthesized:
    """One synthesized sentence.

    Attributes:
        name: file stem of its outputs.
        text: the input sentence.
        mel: (T, n_mels) log-mel.
        alignment: (U, S) cross-attention of decoder steps over text positions.
    """

    name: str
    text: str
    mel: torch.Tensor
    alignment: torch.Tensor


def read_texts(texts: list[str], text_file: str | Path | None = None) -> list[str]:
    """Sentences from the arguments, then one per non-empty line of ``text_file``."""
    sentences = [t for t in texts if t.strip()]
    if text_file is not None:
        lines = Path(text_file).read_text(encoding="utf-8").splitlines()
        sentences += [line.strip() for line in lines if line.strip()]
    return sentences


def unrepresentable(package: ModelPackage, texts: list[str]) -> dict[int, str]:
    """Sentence index -> one line naming the characters the tokenizer cannot represent (would become UNK)."""
    problems = {}
    for index, text in enumerate(texts):
        unknown = package.tokenizer.unknown_characters(text)
        if unknown:
            shown = ", ".join(repr(c) for c in sorted(unknown))
            problems[index] = (
                f"sentence {index + 1} {text[:40]!r}: characters outside the vocabulary: {shown}"
            )
    return problems


@torch.no_grad()
def synthesize_texts(
    package: ModelPackage,
    texts: list[str],
    names: list[str] | None = None,
    batch_size: int = 16,
    seed: int | None = 0,
) -> list[Synthesized]:
    """Synthesize ``texts`` in batches with the package's inference settings.

    Args:
        package: a loaded TTS package.
        texts: sentences; none may be empty after tokenization.
        names: output names (default ``0001``, ``0002``, ...).
        batch_size: sentences synthesized together.
        seed: seed of the decoder prenet dropout (None: unseeded, a different rendition each call).
    """
    model, settings = package.model, package.config.inference
    names = names or [f"{i + 1:04d}" for i in range(len(texts))]
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    results = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        ids = [torch.tensor(package.tokenizer.encode(t), dtype=torch.long) for t in chunk]
        if any(len(i) == 0 for i in ids):
            raise ValueError("a sentence has no characters the model can speak")
        lengths = torch.tensor([len(i) for i in ids], device=device)
        tokens = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=PAD_ID).to(device)
        out = synthesize(
            model,
            tokens,
            lengths,
            settings.max_length_ratio,
            settings.min_length_ratio,
            settings.stop_threshold,
            generator=generator,
        )
        r = model.config.reduction_factor
        for b, text in enumerate(chunk):
            frames, steps = int(out.mel_lengths[b]), -(-int(out.mel_lengths[b]) // r)
            alignment = out.alignments[b, :steps, : int(lengths[b])].cpu()
            results.append(Synthesized(names[start + b], text, out.mels[b, :frames].cpu(), alignment))
    return results


def plot(item: Synthesized, path: Path) -> None:
    """Spectrogram over the attention alignment, written with matplotlib's Agg canvas (no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), constrained_layout=True)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1)
    image = top.imshow(item.mel.T.numpy(), origin="lower", aspect="auto", interpolation="none")
    top.set(title=item.text[:80], xlabel="frame", ylabel="mel band")
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
    """

    def __init__(self, package: ModelPackage):
        if package.task != "tts":
            raise PackageError(f"{package.path}: a {package.task} package, not a TTS one")
        self.package = package

    def synthesize(
        self, texts: list[str], names: list[str] | None = None, batch_size: int = 16, seed: int | None = 0
    ) -> list[Synthesized]:
        """Log-mels and alignments of ``texts`` (see :func:`synthesize_texts`)."""
        return synthesize_texts(self.package, texts, names, batch_size, seed)

    def write(
        self, sentences: list[str], out_dir: str | Path, batch_size: int = 16, seed: int | None = 0
    ) -> int:
        """Speak every sentence the model can represent into ``out_dir`` (four files each, and an index).

        Sentences with characters outside the vocabulary are reported (one line each, naming the
        characters) and skipped rather than spoken with those characters dropped.

        Returns:
            0 when every sentence was synthesized, 1 when some were skipped or none were given.
        """
        problems = unrepresentable(self.package, sentences)
        for line in problems.values():
            log.error("%s", line)
        keep = [i for i in range(len(sentences)) if i not in problems]
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
        return 1 if problems else 0
