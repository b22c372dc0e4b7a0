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
from seq2seq.inference.onnx_graphs import ASRDecoderStepGraph, ASREncoderGraph

OPSET = 17


def _export(graph: nn.Module, inputs: tuple, path: Path, names: dict[str, dict[int, str]], outputs: int) -> None:
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


def export_model(package, directory: str | Path) -> OnnxManifest:
    """A loaded package's graphs into ``directory`` (its ``task`` picks them)."""
    match package.task:
        case "asr":
            return export_asr(package.model, directory)
        case "tts":
            return export_tts(package.model, directory)
    raise ValueError(f"{package.path}: no ONNX export for {package.task} packages")
