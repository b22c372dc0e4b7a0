"""Audio files to decode, split into windows read one at a time (bounded memory for long recordings)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from seq2seq.core.audio import AudioError, FeatureConfig, LogMel, audio_info, read_audio

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")


class Segment(NamedTuple):
    """A span of one input: ``source`` indexes the inputs; ``window`` orders spans within it.

    A named tuple, not a dataclass: it rides inside batches through Lightning's collection utilities.
    """

    source: int
    window: int
    path: str
    offset: float
    duration: float | None
    error: str | None = None


def find_audio(inputs: list[str]) -> list[str]:
    """Files as given, folders searched recursively for audio files (sorted, for a stable order)."""
    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            found.append(item)
    return found


def split_into_windows(
    source: int, path: str, window_seconds: float, offset: float = 0.0, duration: float | None = None
) -> list[Segment]:
    """Segments of at most ``window_seconds``; an unreadable file becomes one segment with its error."""
    try:
        total = audio_info(path).duration - offset if duration is None else duration
    except AudioError as error:
        return [Segment(source, 0, path, offset, duration, str(error))]
    count = max(1, math.ceil(total / window_seconds - 1e-9))
    return [
        Segment(source, i, path, offset + i * window_seconds, min(window_seconds, total - i * window_seconds))
        for i in range(count)
    ]


class SegmentDataset(Dataset):
    """Reads each segment and computes its log-Mel features; errors travel as data, not exceptions."""

    def __init__(self, segments: list[Segment], features: FeatureConfig):
        self.segments = segments
        self.sample_rate = features.sample_rate
        self.log_mel = LogMel(features)

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, index: int) -> tuple[Segment, torch.Tensor | None]:
        segment = self.segments[index]
        if segment.error is not None:
            return segment, None
        try:
            wave = read_audio(segment.path, self.sample_rate, segment.offset, segment.duration)
        except AudioError as error:
            return segment._replace(error=str(error)), None
        with torch.no_grad():
            return segment, self.log_mel.single(wave)


def collate_segments(items: list[tuple[Segment, torch.Tensor | None]]):
    """(segments, features (B, T, F) or None, lengths (B,)); failed segments keep their place."""
    segments = [segment for segment, _ in items]
    good = [features for _, features in items if features is not None]
    if not good:
        return segments, None, None
    lengths = torch.tensor([f.shape[0] for f in good])
    padded = torch.nn.utils.rnn.pad_sequence(good, batch_first=True)
    return segments, padded, lengths
