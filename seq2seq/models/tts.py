"""Text-to-mel Transformer TTS (Li et al. 2019): conv prenet encoder, autoregressive mel decoder, postnet.

Entry points: :meth:`TTSModel.forward` (teacher forcing, for training) and :meth:`TTSModel.infer`
(autoregressive synthesis of a batch with an explicit KV cache, each sentence stopping on its own).

With a reduction factor ``r`` every decoder step emits ``r`` frames and reads the last frame of the
previous group (a zero "go" frame at step 0), so a T-frame utterance takes ``ceil(T / r)`` steps.
The model works on globally normalised log-mels (mean/std buffers travel with the weights):
``forward`` returns normalised predictions and targets; ``infer`` returns log-mels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from seq2seq.core.audio import GlobalCMVN
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NormConfig
from seq2seq.nn.positional import ScaledPositionalEncoding
from seq2seq.nn.transformer import Decoder, DecoderCache, Encoder, TransformerConfig
from seq2seq.nn.tts_blocks import DecoderPrenet, EncoderPrenet, Postnet


def _tts_transformer() -> TransformerConfig:
    return TransformerConfig(num_layers=6, d_model=384, num_heads=4, ffn_dim=1536)


_POSITIVE = ("n_mels", "embedding_dim", "encoder_prenet_channels", "decoder_prenet_dim", "postnet_channels")
_FRACTIONS = ("encoder_prenet_dropout", "decoder_prenet_dropout", "postnet_dropout", "positional_dropout")


@dataclass(frozen=True)
class TTSModelConfig:
    """Shape of a text-to-mel model; saved inside every checkpoint and model package.

    Attributes:
        vocab_size: input symbols, reserved ids included (set from the tokenizer).
        n_mels: mel bins per frame.
        reduction_factor: frames emitted per decoder step (r >= 1); larger r shortens the decoder
            sequence and eases alignment at some cost in detail.
        embedding_dim: character embedding size.
        encoder_prenet_layers: conv layers of the encoder prenet (0 = embedding + linear only).
        encoder_prenet_channels: their channels.
        encoder_prenet_kernel: their (odd) kernel.
        encoder_prenet_dropout: dropout after each encoder prenet conv.
        decoder_prenet_layers: bottleneck layers of the decoder prenet.
        decoder_prenet_dim: their width; a narrow bottleneck (256) helps attention learn.
        decoder_prenet_dropout: dropout of the decoder prenet (also active at inference by default).
        prenet_dropout_at_inference: keep decoder prenet dropout when synthesizing (Tacotron 2);
            False makes synthesis deterministic.
        postnet_layers: conv layers of the postnet.
        postnet_channels: their channels.
        postnet_kernel: their (odd) kernel.
        postnet_dropout: dropout after each postnet conv.
        prenet_norm: norm after each encoder prenet conv.
        postnet_norm: norm after each postnet conv.
        positional_dropout: dropout after adding the scaled positional encodings.
        encoder: the encoder stack.
        decoder: the decoder stack (same ``d_model`` as the encoder).
        alignment_layers: decoder layers whose cross-attention weights are returned (guided attention
            loss, alignment plots); negative indices count from the last layer.
        alignment_heads: heads of those layers that are returned.
    """

    vocab_size: int = 64
    n_mels: int = 80
    reduction_factor: int = 1
    embedding_dim: int = 512
    encoder_prenet_layers: int = 3
    encoder_prenet_channels: int = 512
    encoder_prenet_kernel: int = 5
    encoder_prenet_dropout: float = 0.5
    decoder_prenet_layers: int = 2
    decoder_prenet_dim: int = 256
    decoder_prenet_dropout: float = 0.5
    prenet_dropout_at_inference: bool = True
    postnet_layers: int = 5
    postnet_channels: int = 512
    postnet_kernel: int = 5
    postnet_dropout: float = 0.5
    prenet_norm: NormConfig = field(default_factory=lambda: NormConfig(kind="batch"))
    postnet_norm: NormConfig = field(default_factory=lambda: NormConfig(kind="batch"))
    positional_dropout: float = 0.1
    encoder: TransformerConfig = field(default_factory=_tts_transformer)
    decoder: TransformerConfig = field(default_factory=_tts_transformer)
    alignment_layers: tuple[int, ...] = (-1,)
    alignment_heads: tuple[int, ...] = (0, 1)

    def __post_init__(self) -> None:
        for name in ("alignment_layers", "alignment_heads"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.reduction_factor < 1:
            raise ValueError(
                f"reduction_factor={self.reduction_factor} must be >= 1 (frames per decoder step)"
            )
        if self.vocab_size < 6:
            raise ValueError(f"vocab_size={self.vocab_size} must be >= 6 (reserved ids included)")
        self._check_sizes()
        if self.encoder.d_model != self.decoder.d_model:
            raise ValueError(
                f"encoder.d_model={self.encoder.d_model} must equal decoder.d_model={self.decoder.d_model}"
            )
        self._check_alignment()

    def _check_sizes(self) -> None:
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("encoder_prenet_layers", "decoder_prenet_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.postnet_layers < 2:
            raise ValueError(f"postnet_layers={self.postnet_layers} must be >= 2")
        for name in ("encoder_prenet_kernel", "postnet_kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name}={getattr(self, name)} must be odd and positive")
        for name in _FRACTIONS:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")

    def _check_alignment(self) -> None:
        layers, heads = self.decoder.num_layers, self.decoder.num_heads
        if not self.alignment_layers or any(not -layers <= i < layers for i in self.alignment_layers):
            raise ValueError(
                f"alignment_layers={self.alignment_layers} must be non-empty, in [-{layers}, {layers})"
            )
        if not self.alignment_heads or any(not 0 <= h < heads for h in self.alignment_heads):
            raise ValueError(f"alignment_heads={self.alignment_heads} must be non-empty, in [0, {heads})")


@dataclass
class TTSOutput:
    """Teacher-forced predictions, all in the normalised feature domain.

    Attributes:
        mel_before: (B, T_r, n_mels) decoder output, ``T_r`` = longest length rounded up to a multiple of r.
        mel_after: (B, T_r, n_mels) after the postnet residual; zero beyond ``mel_lengths``.
        stop_logits: (B, T_r) per-frame logits of "this is the last frame or later".
        target: (B, T_r, n_mels) normalised target mels, zero beyond the real lengths.
        mel_lengths: (B,) real target lengths (the loss counts these frames).
        mel_lengths_padded_to_r: (B,) ``ceil(mel_lengths / r) * r``: frames the decoder produced.
        attention: (B, L*H', U, S) cross-attention weights of ``alignment_layers`` x ``alignment_heads``
            over decoder steps U = T_r / r and text positions S.
        token_lengths: (B,) text lengths (the guided attention loss needs them).
    """

    mel_before: torch.Tensor
    mel_after: torch.Tensor
    stop_logits: torch.Tensor
    target: torch.Tensor
    mel_lengths: torch.Tensor
    mel_lengths_padded_to_r: torch.Tensor
    attention: torch.Tensor
    token_lengths: torch.Tensor


class TTSModel(nn.Module):
    """Transformer TTS: text ids -> log-mel frames."""

    def __init__(self, config: TTSModelConfig):
        super().__init__()
        self.config = config
        d_model, r = config.encoder.d_model, config.reduction_factor
        # Global mean/std of the training log-mels travel with the weights.
        self.feature_norm = GlobalCMVN(config.n_mels)
        self.encoder_prenet = EncoderPrenet(
            config.vocab_size,
            config.embedding_dim,
            config.encoder_prenet_channels,
            d_model,
            config.encoder_prenet_layers,
            config.encoder_prenet_kernel,
            config.prenet_norm,
            config.encoder_prenet_dropout,
        )
        self.encoder_position = ScaledPositionalEncoding(d_model, config.positional_dropout)
        self.encoder = Encoder(config.encoder)
        self.decoder_prenet = DecoderPrenet(
            config.n_mels,
            config.decoder_prenet_dim,
            d_model,
            config.decoder_prenet_layers,
            config.decoder_prenet_dropout,
            config.prenet_dropout_at_inference,
        )
        self.decoder_position = ScaledPositionalEncoding(d_model, config.positional_dropout)
        self.decoder = Decoder(config.decoder)
        self.mel_head = nn.Linear(d_model, config.n_mels * r)
        self.stop_head = nn.Linear(d_model, r)
        self.postnet = Postnet(
            config.n_mels,
            config.postnet_channels,
            config.postnet_layers,
            config.postnet_kernel,
            config.postnet_norm,
            config.postnet_dropout,
        )
        self.alignment_layers = sorted({i % config.decoder.num_layers for i in config.alignment_layers})

    def set_feature_stats(self, stats: GlobalCMVN) -> None:
        self.feature_norm.load_state_dict(stats.state_dict())

    def normalize(self, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) log-mels -> normalised, zero beyond ``lengths``."""
        return self.feature_norm(mels, lengths_to_mask(lengths, mels.shape[1]))

    def denormalize(self, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) normalised -> log-mels, zero beyond ``lengths``."""
        mask = lengths_to_mask(lengths, mels.shape[1]).unsqueeze(-1)
        return (mels * self.feature_norm.std + self.feature_norm.mean) * mask

    def encode(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: (B, S), token_lengths: (B,) -> memory (B, S, D), memory mask (B, S)."""
        mask = lengths_to_mask(token_lengths, tokens.shape[1])
        x = self.encoder_position(self.encoder_prenet(tokens, token_lengths))
        return self.encoder(x, mask), mask

    def _decode(self, x, mask, memory, memory_mask, cache=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder states (B, U, D) and the alignment heads' cross-attention (B, L*H', U, S)."""
        hidden, weights = self.decoder.attend(
            x, mask, memory, memory_mask, cache, attention_layers=self.alignment_layers
        )
        heads = list(self.config.alignment_heads)
        return hidden, torch.cat([w[:, heads] for w in weights], dim=1)

    def forward(
        self, tokens: torch.Tensor, token_lengths: torch.Tensor, mels: torch.Tensor, mel_lengths: torch.Tensor
    ) -> TTSOutput:
        """Teacher-forced pass.

        Args:
            tokens: (B, S) text ids; token_lengths: (B,).
            mels: (B, T, n_mels) target log-mels (not normalised); mel_lengths: (B,), any length
                (not necessarily a multiple of r).

        Returns:
            :class:`TTSOutput` in the normalised domain.
        """
        r, n_mels = self.config.reduction_factor, self.config.n_mels
        memory, memory_mask = self.encode(tokens, token_lengths)
        steps = (mel_lengths + r - 1) // r
        target = self.normalize(mels, mel_lengths)
        target = nn.functional.pad(target, (0, 0, 0, -target.shape[1] % r))[:, : int(steps.max()) * r]
        b, u = target.shape[0], target.shape[1] // r
        previous = torch.cat([target.new_zeros(b, 1, n_mels), target[:, r - 1 :: r][:, : u - 1]], dim=1)
        x = self.decoder_position(self.decoder_prenet(previous))
        hidden, attention = self._decode(x, lengths_to_mask(steps, u), memory, memory_mask)
        mel_before = self.mel_head(hidden).view(b, u * r, n_mels)
        stop_logits = self.stop_head(hidden).view(b, u * r)
        mel_after = self.postnet(mel_before, mel_lengths)
        return TTSOutput(
            mel_before,
            mel_after,
            stop_logits,
            target,
            mel_lengths,
            steps * r,
            attention,
            token_lengths,
        )

    def new_cache(self) -> DecoderCache:
        return DecoderCache.empty(len(self.decoder.layers))

    def prenet(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """frames: (B, U, n_mels) normalised previous frames (zeros: the "go" frame) -> (B, U, D)."""
        return self.decoder_prenet(frames, generator)

    def decode_step(
        self,
        inputs: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: DecoderCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next r frames after the positions in ``cache`` (the counterpart of ``ASRModel.decode``).

        Args:
            inputs: (B, U, D) prenet outputs (:meth:`prenet`) of the new positions: the newest one with
                a cache, the whole prefix without. The caller keeps them, so recomputing from scratch
                sees the same prenet dropout as cached decoding.
            memory: (B, S, D) encoder output; memory_mask: (B, S).
            cache: decoding state, updated in place; None recomputes every position.

        Returns:
            frames (B, r, n_mels) normalised, stop logits (B, r), attention (B, S) of the last position
            averaged over the alignment layers and heads.
        """
        offset = cache.length if cache is not None else 0
        hidden, attention = self._decode(
            self.decoder_position(inputs, offset), None, memory, memory_mask, cache
        )
        b, r = hidden.shape[0], self.config.reduction_factor
        last = hidden[:, -1:]
        return (
            self.mel_head(last).view(b, r, -1),
            self.stop_head(last).view(b, r),
            attention[:, :, -1].mean(1),
        )

    def finish(self, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Decoder frames (B, T, n_mels), normalised -> log-mels after the postnet, zero beyond lengths."""
        return self.denormalize(self.postnet(mels, lengths), lengths)
