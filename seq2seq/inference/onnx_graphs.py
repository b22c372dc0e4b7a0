"""The ASR and TTS models as ONNX graphs: an encoder and a decoder step with an explicit KV cache.

Each graph is a small ``nn.Module`` over the model's own weights with a fixed tensor signature, so
``torch.onnx.export`` traces one straight-line program:

* ``encoder.onnx`` — features (B, T, F), lengths (B,) -> memory (B, S, D), memory lengths (B,), CTC
  log-probs (B, S, V) and the decoder's cross-attention keys/values ``cross_kv`` (L, 2, B, H, S, Dh).
* ``decoder_step.onnx`` — the newest token (N, 1), memory lengths (G,), ``cross_kv`` (L, 2, G, H, S, Dh)
  and the self-attention cache ``self_kv`` (L, 2, N, H, P, Dh) -> log-probs (N, V) and ``self_kv`` with
  P + 1 positions. N = G × R: the R consecutive rows of an utterance (its beams) share its memory row,
  as :class:`seq2seq.decoding.scorer.AttentionState` does; R = 1 is the plain batch.

The TTS graphs are the same with ``TTSModel.encode`` and ``decode_step`` (see :class:`TTSDecoderStepGraph`),
plus ``postnet.onnx`` (``TTSModel.finish``).
Batch, time, memory length, cache length and beam are dynamic axes. The exporter runs with the padded
layout (``seq2seq.nn.masking.packs_padding`` is False during export).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.nn.attention import MultiHeadAttention
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.positional import sinusoid_table
from seq2seq.nn.transformer import Decoder, _feed_forward

MAX_POSITIONS = 4096  # decoder positions the step graph can encode (a package decodes far fewer)


def cross_keys_values(decoder: Decoder, memory: torch.Tensor) -> torch.Tensor:
    """memory (G, S, D) -> every layer's cross-attention keys and values, (L, 2, G, H, S, Dh)."""
    layers = []
    for layer in decoder.layers:
        attention = layer.cross_attn.sublayer
        layers.append(torch.stack(attention._project(memory, "key", "value")))
    return torch.stack(layers)


def _self_attend(attention: MultiHeadAttention, h, past_key, past_value):
    """One new position over the cached ones: h (N, 1, D), past (N, H, P, Dh) -> y, key, value."""
    q, key, value = attention._project(h, "query", "key", "value")
    key, value = torch.cat([past_key, key], dim=2), torch.cat([past_value, value], dim=2)
    y = F.scaled_dot_product_attention(q, key, value)
    return attention.out(y.transpose(1, 2).reshape(h.shape)), key, value


def _cross_attend(attention: MultiHeadAttention, h, key, value, mask):
    """h (N, 1, D) over key/value (G, H, S, Dh) with mask (G, 1, 1, S), N = G × R: the R rows of each
    memory row are folded into its query axis, as :meth:`MultiHeadAttention._attend` does."""
    n, _, d = h.shape
    groups, heads, _, dh = key.shape
    q = attention.query(h).reshape(groups, -1, heads, dh).transpose(1, 2)  # (G, H, R, Dh)
    y = F.scaled_dot_product_attention(q, key, value, attn_mask=mask)
    return attention.out(y.transpose(1, 2).reshape(n, 1, d))


def decoder_step(decoder: Decoder, x, memory_mask, cross_kv, self_kv):
    """The decoder stack for one new position: x (N, 1, D) embedded -> (N, 1, D), new ``self_kv``."""
    mask = memory_mask[:, None, None, :]
    present = []
    for i, layer in enumerate(decoder.layers):
        kv: list[torch.Tensor] = []

        def self_branch(h, i=i, kv=kv, layer=layer):
            y, key, value = _self_attend(layer.self_attn.sublayer, h, self_kv[i, 0], self_kv[i, 1])
            kv.extend([key, value])
            return y

        x = layer.self_attn(x, None, self_branch)
        cross = layer.cross_attn.sublayer
        x = layer.cross_attn(x, None, lambda h, i=i, c=cross: _cross_attend(c, h, *cross_kv[i], mask))
        x = _feed_forward(layer.feed_forward, x, None)
        present.append(torch.stack(kv))
    return decoder.final_norm(x, None), torch.stack(present)


class ASREncoderGraph(nn.Module):
    """features (B, T, F), lengths (B,) -> memory, memory lengths, CTC log-probs, cross_kv."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features, lengths):
        memory, memory_lengths = self.model.encode(features, lengths)
        log_probs = self.model.ctc_head(memory).float().log_softmax(-1)
        return memory, memory_lengths, log_probs, cross_keys_values(self.model.decoder, memory)


class ASRDecoderStepGraph(nn.Module):
    """tokens (N, 1), memory lengths (G,), cross_kv, self_kv -> log-probs (N, V), self_kv (P + 1)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("positions", sinusoid_table(MAX_POSITIONS, model.config.decoder.d_model))

    def forward(self, tokens, memory_lengths, cross_kv, self_kv):
        offset = self_kv.shape[4]
        position = self.model.decoder_position
        x = self.model.embedding(tokens) * position.input_scale + self.positions[offset : offset + 1]
        memory_mask = lengths_to_mask(memory_lengths, cross_kv.shape[4])
        y, present = decoder_step(self.model.decoder, x, memory_mask, cross_kv, self_kv)
        return self.model.output(y[:, 0]).float().log_softmax(-1), present


def _cross_attend_weights(attention: MultiHeadAttention, h, key, value, mask):
    """h (B, 1, D) over key/value (B, H, S, Dh): the output and the probabilities (B, H, S)."""
    b, _, d = h.shape
    q = attention._split(attention.query(h))  # (B, H, 1, Dh)
    scores = (q @ key.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return attention.out((weights @ value).transpose(1, 2).reshape(b, 1, d)), weights[:, :, 0]


class TTSEncoderGraph(nn.Module):
    """tokens (B, S), token lengths (B,) -> memory (B, S, D), cross_kv (L, 2, B, H, S, Dh)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, token_lengths):
        memory, _ = self.model.encode(tokens, token_lengths)
        return memory, cross_keys_values(self.model.decoder, memory)


class TTSDecoderStepGraph(nn.Module):
    """previous frame (B, n_mels), prenet dropout scales (P, B, hidden), token lengths (B,), cross_kv,
    self_kv -> frames (B, r, n_mels), stop logits (B, r), attention (B, S), self_kv (one more position).

    The prenet's inference dropout comes in as scales (0 or 1 / (1 - p)) drawn by the caller, so that
    synthesis with a seeded generator draws what PyTorch draws."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("positions", sinusoid_table(MAX_POSITIONS, model.config.decoder.d_model))

    def forward(self, previous, prenet_scale, token_lengths, cross_kv, self_kv):
        model, offset = self.model, self_kv.shape[4]
        x = previous[:, None]
        for i, layer in enumerate(model.decoder_prenet.layers):
            x = torch.relu(layer(x)) * prenet_scale[i][:, None]
        x = model.decoder_prenet.proj(x)
        x = x + model.decoder_position.alpha * self.positions[offset : offset + 1]
        mask = lengths_to_mask(token_lengths, cross_kv.shape[4])[:, None, None, :]
        present, weights = [], []
        for i, layer in enumerate(model.decoder.layers):
            kv: list[torch.Tensor] = []

            def self_branch(h, i=i, kv=kv, layer=layer):
                y, key, value = _self_attend(layer.self_attn.sublayer, h, self_kv[i, 0], self_kv[i, 1])
                kv.extend([key, value])
                return y

            def cross_branch(h, i=i, layer=layer):
                y, w = _cross_attend_weights(layer.cross_attn.sublayer, h, *cross_kv[i], mask)
                weights.append(w)
                return y

            x = layer.self_attn(x, None, self_branch)
            x = layer.cross_attn(x, None, cross_branch)
            x = _feed_forward(layer.feed_forward, x, None)
            present.append(torch.stack(kv))
        hidden = model.decoder.final_norm(x, None)[:, 0]
        heads = list(model.config.alignment_heads)
        attention = torch.cat([weights[i][:, heads] for i in model.alignment_layers], 1).mean(1)
        b, r = hidden.shape[0], model.config.reduction_factor
        return (
            model.mel_head(hidden).view(b, r, -1),
            model.stop_head(hidden).view(b, r),
            attention,
            torch.stack(present),
        )


class TTSPostnetGraph(nn.Module):
    """Normalised decoder frames (B, T, n_mels), lengths (B,) -> log-mels after the postnet."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, mels, lengths):
        return self.model.finish(mels, lengths)
