"""Autoregressive TTS synthesis: a batch of sentences, each stopping on its own.

Rows leave the running batch (and the KV cache) as soon as their sentence ends, so a batch of mixed
lengths costs little more than its longest sentence.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from seq2seq.models.tts import TTSModel


class Synthesis(NamedTuple):
    """Result of :func:`synthesize`.

    Attributes:
        mels: (B, T, n_mels) log-mels, zero beyond ``mel_lengths``.
        mel_lengths: (B,) frames of each sentence.
        alignments: (B, U, S) cross-attention averaged over the alignment layers and heads, per decoder
            step U (zero after a sentence stopped) and text position S.
    """

    mels: torch.Tensor
    mel_lengths: torch.Tensor
    alignments: torch.Tensor


@torch.no_grad()
def synthesize(
    model: TTSModel,
    tokens: torch.Tensor,
    token_lengths: torch.Tensor,
    max_length_ratio: float = 10.0,
    min_length_ratio: float = 0.0,
    stop_threshold: float = 0.5,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Synthesis:
    """Synthesize a batch autoregressively; each sentence stops on its own and leaves the batch.

    Args:
        model: a TTS model (in eval mode for inference).
        tokens: (B, S) text ids; token_lengths: (B,).
        max_length_ratio: at most ``ceil(ratio * token_length)`` frames per sentence.
        min_length_ratio: stop tokens are ignored before ``floor(ratio * token_length)`` frames.
        stop_threshold: a sentence ends at the first frame whose stop probability exceeds this.
        use_cache: decode incrementally with the KV cache (True) or recompute every step from the
            whole prefix (False; slower, for testing).
        generator: random source of the prenet dropout (when it is active at inference).
    """
    memory, memory_mask = model.encode(tokens, token_lengths)
    min_frames, max_frames = frame_limits(token_lengths, max_length_ratio, min_length_ratio)
    state = BatchedSynthesis(model, memory, memory_mask, min_frames, max_frames, use_cache, generator)
    step = 0
    while state.active.numel():
        state.step(step, stop_threshold)
        step += 1
    mels, lengths, alignments = state.result()
    return Synthesis(model.finish(mels, lengths), lengths, alignments)


def frame_limits(
    token_lengths: torch.Tensor, max_length_ratio: float, min_length_ratio: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) fewest and most frames of each sentence: ``floor(min_ratio * S)`` and ``ceil(max_ratio * S)``
    (at least 1). A sentence that ends at its most frames had no stop token: its end may be cut off."""
    max_frames = torch.ceil(token_lengths * max_length_ratio).long().clamp(min=1)
    return torch.floor(token_lengths * min_length_ratio).long(), max_frames


class BatchedSynthesis:
    """State of one batched synthesis; rows leave the batch (and the KV cache) as their sentences end."""

    def __init__(
        self,
        model: TTSModel,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        min_frames: torch.Tensor,
        max_frames: torch.Tensor,
        use_cache: bool,
        generator: torch.Generator | None,
    ):
        self.model, self.r, self.generator = model, model.config.reduction_factor, generator
        b, s, d = memory.shape
        steps = -(-int(max_frames.max()) // self.r)
        self.mels = memory.new_zeros(b, steps * self.r, model.config.n_mels)
        self.alignments = memory.new_zeros(b, steps, s)
        self.lengths = max_frames.clone()
        # Per active row: what the next step needs.
        self.active = torch.arange(b, device=memory.device)
        self.memory, self.memory_mask = memory, memory_mask
        self.min_frames, self.max_frames = min_frames, max_frames
        self.previous = memory.new_zeros(b, model.config.n_mels)  # the "go" frame
        self.cache = model.new_cache() if use_cache else None
        self.prefix = memory.new_zeros(b, 0, d)  # prenet outputs so far (uncached mode recomputes them)

    def step(self, k: int, stop_threshold: float) -> None:
        """Decode step ``k`` for the active rows, record it, and drop the rows that ended."""
        frames, stop_logits, attention = self._run(k)
        rows = self.active
        self.mels[rows, k * self.r : (k + 1) * self.r] = frames
        self.alignments[rows, k] = attention
        ends = self._ends(k, stop_logits, stop_threshold)
        finished = ends > 0
        self.lengths[rows[finished]] = ends[finished]
        self.previous = frames[:, -1]
        if finished.any():
            self._keep((~finished).nonzero().squeeze(1))

    def _run(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.model.prenet(self.previous[:, None], self.generator)
        if self.cache is None:
            self.prefix = x = torch.cat([self.prefix, x], dim=1)
        return self.model.decode_step(x, self.memory, self.memory_mask, self.cache)

    def _ends(self, k: int, stop_logits: torch.Tensor, threshold: float) -> torch.Tensor:
        """(B_active,) length of each sentence that ends in this step's r frames, else 0."""
        length_if_stop = k * self.r + torch.arange(1, self.r + 1, device=stop_logits.device)
        stop = (stop_logits.sigmoid() > threshold) & (length_if_stop >= self.min_frames[:, None])
        stop |= length_if_stop >= self.max_frames[:, None]
        return torch.where(stop.any(1), k * self.r + stop.int().argmax(1) + 1, 0)

    def _keep(self, keep: torch.Tensor) -> None:
        self.active = self.active[keep]
        for name in ("memory", "memory_mask", "min_frames", "max_frames", "previous", "prefix"):
            setattr(self, name, getattr(self, name).index_select(0, keep))
        if self.cache is not None:
            self.cache.select(keep)

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised mels (B, T, n_mels), lengths (B,), alignments (B, U, S), trimmed to the longest."""
        frames = int(self.lengths.max())
        return self.mels[:, :frames], self.lengths, self.alignments[:, : -(-frames // self.r)]
