"""Audio -> text with a loaded ASR package: a plain PyTorch loop on the device the user asks for.

Nothing here imports Lightning; corpus-scale decoding on many devices (:mod:`seq2seq.corpus_decoding`)
swaps in Lightning's predict loop through the ``decode`` argument of :meth:`Transcriber.transcribe_sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from seq2seq.core.package import ModelPackage, PackageError
from seq2seq.decoding import DecodingConfig, decode_batch
from seq2seq.inference.audio_inputs import (
    Segment,
    SegmentDataset,
    collate_segments,
    find_audio,
    split_into_windows,
)

Source = tuple[str, float, float | None]  # (path, offset, duration or None for "to the end")
Result = tuple[str | None, str | None]  # (transcript, error)
SegmentDecoder = Callable[["Transcriber", DataLoader], Iterable[tuple[Segment, str | None]]]


class Transcriber:
    """Decodes speech with an ASR package; ``seq2seq.load_package`` returns one for ASR packages.

    Args:
        package: a loaded ASR model package.
        decoding: search settings; None uses the ones saved in the package.
    """

    def __init__(self, package: ModelPackage, decoding: DecodingConfig | None = None):
        if package.task != "asr":
            raise PackageError(
                f"{package.path}: a {package.task} package cannot transcribe; use an ASR package"
            )
        self.package = package
        self.config: DecodingConfig = decoding or package.config.decoding

    def with_decoding(self, **changes) -> Transcriber:
        """The same model with some search settings changed (``None`` values keep the package's)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return Transcriber(self.package, dataclasses.replace(self.config, **changes))

    @property
    def model(self) -> torch.nn.Module:
        return self.package.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """features: (B, T, F) log-Mel; lengths: (B,) -> B transcripts."""
        if not torch.isfinite(features).all():
            raise ValueError("features contain NaN or infinite values; check the audio's sample values")
        tokens = decode_batch(self.model, features.to(self.device), lengths.to(self.device), self.config)
        return [self.package.tokenizer.decode(t) for t in tokens]

    def transcribe(
        self, files: Sequence[str | Path], batch_size: int = 8, window_seconds: float = 30.0
    ) -> list[str]:
        """Transcripts of audio files (folders are searched); raises on the first unreadable file.

        Recordings longer than ``window_seconds`` are decoded in windows whose transcripts are joined.
        """
        paths = find_audio([str(f) for f in files])
        results = self.transcribe_sources([(p, 0.0, None) for p in paths], batch_size, window_seconds)
        for _, error in results:
            if error is not None:
                raise ValueError(error)
        return [text or "" for text, _ in results]

    def transcribe_sources(
        self,
        sources: Sequence[Source],
        batch_size: int = 8,
        window_seconds: float = 30.0,
        decode: SegmentDecoder | None = None,
        num_workers: int = 0,
    ) -> list[Result]:
        """Per source ``(text, None)`` or ``(None, error)``: one bad file never stops the others.
        Also as an iterator: :meth:`stream_sources`.

        Args:
            sources: ``(path, offset, duration)``; duration None reads to the end of the file.
            batch_size: windows decoded together.
            window_seconds: longer sources are cut into windows of at most this length.
            decode: runs the loader's batches through the model (default: a plain loop here).
            num_workers: data loader processes reading audio.
        """
        return list(self.stream_sources(sources, batch_size, window_seconds, decode, num_workers))

    def stream_sources(
        self,
        sources: Sequence[Source],
        batch_size: int = 8,
        window_seconds: float = 30.0,
        decode: SegmentDecoder | None = None,
        num_workers: int = 0,
    ) -> Iterator[Result]:
        """The results of :meth:`transcribe_sources` in source order, each as soon as its last window is
        decoded, so that a caller can write them while the rest is decoded."""
        segments = [
            s
            for i, (path, offset, duration) in enumerate(sources)
            for s in split_into_windows(i, path, window_seconds, offset, duration)
        ]
        dataset = SegmentDataset(segments, self.package.config.data.features)
        loader = DataLoader(
            dataset, batch_size=batch_size, collate_fn=collate_segments, num_workers=num_workers
        )
        yield from _join_windows(len(sources), (decode or decode_segments)(self, loader))


def decode_segment_batch(transcriber: Transcriber, batch) -> list[tuple[Segment, str | None]]:
    """``(segment, text)`` for one collated batch; failed segments keep their place with None."""
    segments, features, lengths = batch
    texts = iter(transcriber(features, lengths) if features is not None else [])
    return [(segment, None if segment.error else next(texts)) for segment in segments]


def decode_segments(transcriber: Transcriber, loader: DataLoader) -> Iterable[tuple[Segment, str | None]]:
    """``(segment, text)`` for every segment of ``loader`` (the plain loop)."""
    for batch in loader:
        yield from decode_segment_batch(transcriber, batch)


def _join_windows(count: int, decoded: Iterable[tuple[Segment, str | None]]) -> Iterator[Result]:
    """One result per source, in order: segments arrive in source order, so a source is complete when a
    segment of a later one arrives."""
    done, pieces, errors = 0, [], []

    def result() -> Result:
        return (None, errors[0]) if errors else (" ".join(t for _, t in sorted(pieces) if t), None)

    for segment, text in decoded:
        while done < segment.source:
            yield result()
            done, pieces, errors = done + 1, [], []
        if segment.error:
            errors.append(segment.error)
        else:
            pieces.append((segment.window, text))
    while done < count:
        yield result()
        done, pieces, errors = done + 1, [], []
