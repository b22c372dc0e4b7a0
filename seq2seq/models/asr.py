"""Speech-to-text Transformer: conv subsampling, encoder (Transformer or Conformer) with a CTC head,
attention decoder.

Entry points: :meth:`ASRModel.encode`, :meth:`ASRModel.decode` (incremental with an explicit cache),
:meth:`ASRModel.ctc_log_probs` and the teacher-forced :meth:`ASRModel.forward`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from seq2seq.core.audio import GlobalCMVN
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.nn.conformer import (
    ConformerConfig,
    EncoderKind,
    adds_absolute_positions,
    build_encoder,
    check_encoder,
)
from seq2seq.nn.frontends import SUBSAMPLING_LAYERS, Conv2dSubsampling
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NormConfig
from seq2seq.nn.positional import PositionalEncoding
from seq2seq.nn.transformer import Decoder, TransformerConfig


@dataclass(frozen=True)
class ASRModelConfig:
    """Shape of a speech recognizer; saved inside every checkpoint and model package.

    Attributes:
        vocab_size: output symbols, reserved ids included (set from the tokenizer).
        input_dim: feature bins per frame.
        subsampling: time reduction of the conv front-end (4, 6 or 8).
        conv_channels: channels of the subsampling convs.
        frontend_norm: norm after each subsampling conv (``none`` as in ESPnet by default).
        encoder: the encoder stack (for a Conformer: layers, D, heads, FFN, dropout, module norms).
        decoder: the decoder stack (same ``d_model`` as the encoder).
        scale_encoder_input: multiply the front-end output by ``sqrt(d_model)`` before adding positions
            (ESPnet does); off, the unit-scale front-end output is not allowed to drown the residual
            stream, which makes small models learn much faster.
        encoder_kind: ``transformer`` (self-attention and feed-forward layers) or ``conformer``
            (Gulati et al. 2020: a convolution module and macaron feed-forward halves in every layer).
        conformer: the Conformer's convolution module and positions (used by ``conformer`` only).
        feature_norm: normalise the input features by the training set's global per-band mean and
            variance (GlobalCMVN); off, the raw log-Mel features go to the front-end (padding zeroed).
        feature_scale_band: a badly scaled input for the normalization study: multiply this feature
            band by ``feature_scale_factor`` before everything else (None: off). Part of the model, so
            inference sees it too; with ``feature_norm`` on, the statistics are scaled alike and undo it.
        feature_scale_factor: the factor applied to ``feature_scale_band``.
        utterance_mean_norm: subtract each utterance's own per-band mean over its valid frames (Kaldi's
            per-utterance CMN) before ``feature_norm``: a fixed microphone or channel response, a constant
            per band in the log-Mel domain, cancels. The global mean is added back first, so the global
            normalisation still centres the bands and a model pretrained without it sees inputs alike.
    """

    vocab_size: int = 64
    input_dim: int = 80
    subsampling: int = 4
    conv_channels: int = 256
    frontend_norm: NormConfig = field(default_factory=lambda: NormConfig(kind="none"))
    encoder: TransformerConfig = field(default_factory=lambda: TransformerConfig(num_layers=12))
    decoder: TransformerConfig = field(default_factory=TransformerConfig)
    scale_encoder_input: bool = True
    encoder_kind: EncoderKind = "transformer"
    conformer: ConformerConfig = field(default_factory=ConformerConfig)
    feature_norm: bool = True
    feature_scale_band: int | None = None
    feature_scale_factor: float = 100.0
    utterance_mean_norm: bool = False

    def __post_init__(self) -> None:
        band = self.feature_scale_band
        if band is not None and not 0 <= band < self.input_dim:
            raise ValueError(f"feature_scale_band={band} must be in [0, input_dim={self.input_dim})")
        if self.feature_scale_factor <= 0:
            raise ValueError(f"feature_scale_factor={self.feature_scale_factor} must be > 0")
        if self.subsampling not in SUBSAMPLING_LAYERS:
            raise ValueError(f"subsampling={self.subsampling} is not valid; choose one of 4, 6, 8")
        if self.vocab_size < 6 or self.input_dim < 1 or self.conv_channels < 1:
            raise ValueError("vocab_size must be >= 6, input_dim and conv_channels >= 1")
        if self.encoder.d_model != self.decoder.d_model:
            raise ValueError(
                f"encoder.d_model={self.encoder.d_model} must equal decoder.d_model={self.decoder.d_model}"
            )
        check_encoder(self.encoder_kind, self.encoder, self.conformer)


class ASRModel(EncoderDecoder):
    """Hybrid CTC/attention encoder-decoder over log-Mel features."""

    def __init__(self, config: ASRModelConfig):
        super().__init__()
        self.config = config
        d_model = config.encoder.d_model
        # Global mean/variance of the training features travel with the weights.
        self.feature_norm = GlobalCMVN(config.input_dim)
        self.frontend = Conv2dSubsampling(
            config.input_dim, d_model, config.subsampling, config.conv_channels, config.frontend_norm
        )
        self.encoder_position = PositionalEncoding(
            d_model,
            config.encoder.dropout,
            scale_input=config.scale_encoder_input,
            absolute=adds_absolute_positions(config.encoder_kind, config.conformer),
        )
        self.encoder = build_encoder(config.encoder_kind, config.encoder, config.conformer)
        self.ctc_head = nn.Linear(d_model, config.vocab_size)
        self.embedding = nn.Embedding(config.vocab_size, d_model)
        # std D^-1/2, so that the sqrt(D) scale of the positional encoding gives unit-scale inputs
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        self.decoder_position = PositionalEncoding(d_model, config.decoder.dropout)
        self.decoder = Decoder(config.decoder)
        self.output = nn.Linear(d_model, config.vocab_size)

    def set_feature_stats(self, stats: GlobalCMVN) -> None:
        """Statistics of the raw training features (those of a scaled band are scaled with it)."""
        self.feature_norm.load_state_dict(stats.state_dict())
        band = self.config.feature_scale_band
        if band is not None:
            with torch.no_grad():
                self.feature_norm.mean[band] *= self.config.feature_scale_factor
                self.feature_norm.std[band] *= self.config.feature_scale_factor

    def scale_input(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` with ``feature_scale_band`` multiplied by ``feature_scale_factor`` (if set)."""
        band = self.config.feature_scale_band
        if band is None:
            return features
        gain = torch.ones(features.shape[-1], dtype=features.dtype, device=features.device)
        gain[band] = self.config.feature_scale_factor
        return features * gain

    def normalize_input(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scaled (if asked), utterance-centred (if asked) and globally normalised (unless ``feature_norm``
        is off) features, padding 0."""
        mask = lengths_to_mask(lengths, features.shape[1])
        x = self.scale_input(features)
        if self.config.utterance_mean_norm:
            valid = mask.unsqueeze(-1).to(x.dtype)
            mean = (x * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1.0)
            x = x - mean + (self.feature_norm.mean if self.config.feature_norm else 0.0)
        if self.config.feature_norm:
            return self.feature_norm(x, mask)
        return x * mask.unsqueeze(-1).to(x.dtype)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: (B, T, F) log-Mel, lengths: (B,) -> memory (B, S, D), memory lengths (B,)."""
        x = self.normalize_input(features, lengths)
        x, lengths = self.frontend(x, lengths)
        mask = lengths_to_mask(lengths, x.shape[1])
        return self.encoder(self.encoder_position(x), mask), lengths
