"""The autoregressive loop of :meth:`TTSModel.infer`: a batch of sentences, each stopping on its own.

Rows leave the running batch (and the KV cache) as soon as their sentence ends, so a batch of mixed
lengths costs little more than its longest sentence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from seq2seq.models.tts import TTSModel


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
        model = self.model
        x = model.decoder_prenet(self.previous[:, None], self.generator)
        if self.cache is not None:
            hidden = model.decoder(
                model.decoder_position(x, k), None, self.memory, self.memory_mask, self.cache
            )
        else:
            self.prefix = torch.cat([self.prefix, x], dim=1)
            x = model.decoder_position(self.prefix)
            hidden = model.decoder(x, None, self.memory, self.memory_mask)[:, -1:]
        return model.output_heads(hidden)

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
