"""Write a model's ONNX graphs (``onnx_graphs``) and their manifest into a folder.

The TorchScript-based exporter (``dynamo=False``) is used: it keeps axes of size 0 and 1 dynamic (the
first decoder step has an empty cache; batch 1 is the latency case), which ``torch.export`` specializes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from seq2seq.inference.onnx_files import OnnxManifest
from seq2seq.inference.onnx_graphs import (
    ASRDecoderStepGraph,
    ASREncoderGraph,
    TTSDecoderStepGraph,
    TTSEncoderGraph,
    TTSPostnetGraph,
)

OPSET = 17


def _export(
    graph: nn.Module, inputs: tuple, path: Path, names: dict[str, dict[int, str]], outputs: int
) -> None:
    """Trace ``graph`` on ``inputs`` into ``path``; ``names`` lists inputs then outputs, with dynamic axes."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            graph,
            inputs,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(names)[: len(names) - outputs],
            output_names=list(names)[len(names) - outputs :],
            dynamic_axes={name: axes for name, axes in names.items() if axes},
        )


def _decoder_shape(decoder) -> tuple[int, int, int]:
    layers = decoder.layers
    heads = layers[0].self_attn.sublayer.num_heads
    return len(layers), heads, layers[0].self_attn.sublayer.query.weight.shape[0] // heads


def export_asr(model, directory: str | Path) -> OnnxManifest:
    """An ``ASRModel`` (eval mode, fp32, CPU) -> ``encoder.onnx``, ``decoder_step.onnx``, manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    layers, heads, head_dim = _decoder_shape(model.decoder)
    features = torch.randn(2, 160, model.config.input_dim)
    lengths = torch.tensor([160, 120])
    encoder = ASREncoderGraph(model).eval()
    names = {
        "features": {0: "batch", 1: "frames"},
        "lengths": {0: "batch"},
        "memory": {0: "batch", 1: "steps"},
        "memory_lengths": {0: "batch"},
        "ctc_log_probs": {0: "batch", 1: "steps"},
        "cross_kv": {2: "batch", 4: "steps"},
    }
    _export(encoder, (features, lengths), directory / "encoder.onnx", names, outputs=4)
    with torch.no_grad():
        _, memory_lengths, _, cross_kv = encoder(features, lengths)
    self_kv = torch.zeros(layers, 2, 4, heads, 3, head_dim)
    tokens = torch.full((4, 1), 5, dtype=torch.long)
    names = {
        "tokens": {0: "rows"},
        "memory_lengths": {0: "groups"},
        "cross_kv": {2: "groups", 4: "steps"},
        "self_kv": {2: "rows", 4: "past"},
        "log_probs": {0: "rows"},
        "new_self_kv": {2: "rows", 4: "positions"},
    }
    step = ASRDecoderStepGraph(model).eval()
    _export(step, (tokens, memory_lengths, cross_kv, self_kv), directory / "decoder_step.onnx", names, 2)
    graphs = {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}
    manifest = OnnxManifest(
        "asr", "fp32", graphs, layers, heads, head_dim, model.config.vocab_size, directory=directory
    )
    manifest.write(directory)
    return manifest


def export_tts(model, directory: str | Path) -> OnnxManifest:
    """A ``TTSModel`` (eval, fp32, CPU) -> ``encoder.onnx``, ``decoder_step.onnx``, ``postnet.onnx``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    layers, heads, head_dim = _decoder_shape(model.decoder)
    config = model.config
    tokens, token_lengths = torch.full((2, 7), 5, dtype=torch.long), torch.tensor([7, 5])
    encoder = TTSEncoderGraph(model).eval()
    names = {
        "tokens": {0: "batch", 1: "text"},
        "token_lengths": {0: "batch"},
        "memory": {0: "batch", 1: "text"},
        "cross_kv": {2: "batch", 4: "text"},
    }
    _export(encoder, (tokens, token_lengths), directory / "encoder.onnx", names, outputs=2)
    with torch.no_grad():
        _, cross_kv = encoder(tokens, token_lengths)
    prenet = len(model.decoder_prenet.layers)
    inputs = (
        torch.zeros(2, config.n_mels),
        torch.ones(prenet, 2, config.decoder_prenet_dim),
        token_lengths,
        cross_kv,
        torch.zeros(layers, 2, 2, heads, 3, head_dim),
    )
    names = {
        "previous": {0: "batch"},
        "prenet_scale": {1: "batch"},
        "token_lengths": {0: "batch"},
        "cross_kv": {2: "batch", 4: "text"},
        "self_kv": {2: "batch", 4: "past"},
        "frames": {0: "batch"},
        "stop_logits": {0: "batch"},
        "attention": {0: "batch", 1: "text"},
        "new_self_kv": {2: "batch", 4: "positions"},
    }
    _export(TTSDecoderStepGraph(model).eval(), inputs, directory / "decoder_step.onnx", names, outputs=4)
    names = {
        "mels": {0: "batch", 1: "frames"},
        "lengths": {0: "batch"},
        "log_mels": {0: "batch", 1: "frames"},
    }
    mels = torch.randn(2, 12, config.n_mels)
    _export(
        TTSPostnetGraph(model).eval(), (mels, torch.tensor([12, 9])), directory / "postnet.onnx", names, 1
    )
    graphs = {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx", "postnet": "postnet.onnx"}
    dropout = model.decoder_prenet.dropout if model.decoder_prenet.dropout_at_inference else 0.0
    extra = {
        "n_mels": config.n_mels,
        "reduction_factor": config.reduction_factor,
        "prenet_layers": prenet,
        "prenet_dim": config.decoder_prenet_dim,
        "prenet_dropout": float(dropout),
    }
    manifest = OnnxManifest("tts", "fp32", graphs, layers, heads, head_dim, 0, extra, directory)
    manifest.write(directory)
    return manifest


def export_model(package, directory: str | Path) -> OnnxManifest:
    """A loaded package's graphs into ``directory`` (its ``task`` picks them)."""
    match package.task:
        case "asr":
            return export_asr(package.model, directory)
        case "tts":
            return export_tts(package.model, directory)
    raise ValueError(f"{package.path}: no ONNX export for {package.task} packages")
