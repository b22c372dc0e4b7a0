"""Greedy decoding: the attention decoder's argmax (batched, cached) and CTC best path."""

from __future__ import annotations

import torch

from seq2seq.core.text import BLANK_ID, EOS_ID, PAD_ID, SOS_ID
from seq2seq.nn.masking import lengths_to_mask

# Ids that are never emitted: CTC's blank, padding, and the start symbol.
NEVER_EMITTED = (BLANK_ID, PAD_ID, SOS_ID)


def max_lengths(memory_lengths: torch.Tensor, max_length_ratio: float) -> torch.Tensor:
    """(B,) most output tokens, EOS excluded: ``max(1, int(ratio * S))`` per utterance."""
    return (memory_lengths.double() * max_length_ratio).long().clamp(min=1)


def allowed_token_mask(vocab_size: int, device) -> torch.Tensor:
    """(V,) bool, True for ids a decoder may emit (content, UNK and EOS)."""
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
    allowed[list(NEVER_EMITTED)] = False
    return allowed


@torch.inference_mode()
def greedy_search(
    model, features: torch.Tensor, lengths: torch.Tensor, max_length_ratio: float = 1.0
) -> list[list[int]]:
    """Attention-decoder greedy search over a batch; finished utterances leave the running batch.

    Args:
        model: an :class:`~seq2seq.models.asr.ASRModel` in eval mode.
        features: (B, T, F) log-Mel features; lengths: (B,) valid frames.
        max_length_ratio: at most ``max(1, int(ratio * S))`` tokens for ``S`` encoder frames; EOS is
            forced when an utterance reaches it.

    Returns:
        B token-id lists without SOS/EOS.
    """
    memory, memory_lengths = model.encode(features, lengths)
    batch = memory.shape[0]
    limit = max_lengths(memory_lengths, max_length_ratio)
    results: list[list[int]] = [[] for _ in range(batch)]
    active = torch.arange(batch, device=memory.device)  # original index of each running row
    last = torch.full((batch, 1), SOS_ID, dtype=torch.long, device=memory.device)
    cache = model.new_cache()
    allowed = None
    for step in range(int(limit.max()) + 1):
        logits = model.decode(last, memory, memory_lengths, cache)[:, -1].float()
        allowed = allowed_token_mask(logits.shape[-1], logits.device) if allowed is None else allowed
        logits = logits.masked_fill(~allowed, float("-inf"))
        token = logits.argmax(-1).masked_fill(limit.index_select(0, active) <= step, EOS_ID)
        for row, tok in zip(active.tolist(), token.tolist()):
            if tok != EOS_ID:
                results[row].append(tok)
        running = (token != EOS_ID).nonzero().squeeze(1)
        if running.numel() == 0:
            break
        if running.numel() < token.numel():  # shrink the batch: finished rows cost nothing more
            cache.select(running)
            memory, memory_lengths = memory.index_select(0, running), memory_lengths.index_select(0, running)
            active = active.index_select(0, running)
        last = token.index_select(0, running)[:, None]
    return results


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """CTC best path: per-frame argmax, repeats collapsed, blanks dropped.

    Args:
        log_probs: (B, T, V) CTC log-probabilities (or logits: only the argmax matters).
        lengths: (B,) valid frames.

    Returns:
        B token-id lists.
    """
    best = log_probs.argmax(-1)
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=BLANK_ID)
    keep = (best != previous) & (best != BLANK_ID)
    keep &= lengths_to_mask(lengths, best.shape[1])
    return [row[mask].tolist() for row, mask in zip(best, keep)]
