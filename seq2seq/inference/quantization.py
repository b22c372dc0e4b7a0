"""int8 dynamic quantization of linear layers, for the PyTorch and the onnxruntime engines.

Weights are stored in int8 and activations quantized on the fly per batch: no calibration data, and
the float package stays the source (a torch int8 package is the fp32 weights plus ``"precision":
"int8"``; the model is quantized when it is loaded, so nothing quantized is ever pickled).
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

from torch import nn

from seq2seq.inference.onnx_files import OnnxManifest
from seq2seq.nn.attention import MultiHeadAttention

# onnxruntime int8 covers the linear layers only, as torch's does. Its default also turns convolutions
# into ConvInteger, which has no fast CPU kernel: the reference encoder ran at 135 ms with it, 92 ms
# in float32, 57 ms with the convolutions left float (one 5 s utterance, 1 thread; benchmarks/README.md).
ONNX_INT8_OPS = ("MatMul", "Gemm")


def quantizable_linears(model: nn.Module) -> set[str]:
    """Names of the plain ``nn.Linear`` modules that dynamic quantization may replace.

    An attention's key and value (and its query, unless :meth:`MultiHeadAttention.fuse_projections` has
    run) only take part in a matmul over their concatenated weights, which a quantized module (its
    weight packed) cannot join: they stay float; the fused copies are quantized instead.
    """
    unfused = set()
    for name, module in model.named_modules():
        if isinstance(module, MultiHeadAttention):
            children = ("key", "value") if len(module.fused) else ("query", "key", "value")
            unfused.update(f"{name}.{child}" if name else child for child in children)
    return {
        name
        for name, module in model.named_modules()
        if type(module) is nn.Linear and name not in unfused and not hasattr(module, "parametrizations")
    }


def quantize_torch(model: nn.Module, fuse_attention: bool = True) -> nn.Module:
    """A copy of the model (CPU, eval) with its linear layers int8
    (``torch.ao.quantization.quantize_dynamic``), the attention projections fused first so that they are
    quantized too (the decoder step's query/key/value were its largest float matmul);
    ``fuse_attention=False`` leaves them float, as before (``benchmarks/deployment.py --before``).

    torch 2.11 still runs it but marks ``torch.ao.quantization`` deprecated in favour of torchao; the
    warning is silenced here, and the test suite checks that it still changes the outputs only slightly.
    """
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    model = copy.deepcopy(model)
    for module in model.modules():
        if fuse_attention and isinstance(module, MultiHeadAttention):
            module.fuse_projections()
    spec = dict.fromkeys(quantizable_linears(model), default_dynamic_qconfig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def quantize_onnx(
    source: OnnxManifest, directory: str | Path, ops: tuple[str, ...] = ONNX_INT8_OPS
) -> OnnxManifest:
    """int8 copies of ``source``'s graphs in ``directory`` (onnxruntime ``quantize_dynamic`` of the
    ``ops`` nodes: by default MatMul/Gemm, so convolutions and embeddings stay float; ``()`` is
    onnxruntime's own default, every op type it can quantize)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to run shape inference first is not ours
    try:
        for name in source.graphs.values():
            quantize_dynamic(
                source.directory / name,
                directory / name,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(ops),
                reduce_range=True,  # 7-bit weights: u8 x s8 products saturate on CPUs without VNNI (AVX2)
            )
    finally:
        root.setLevel(level)
    manifest = OnnxManifest(
        source.task,
        "int8",
        source.graphs,
        source.layers,
        source.heads,
        source.head_dim,
        source.vocab_size,
        source.extra,
        directory,
    )
    manifest.write(directory)
    return manifest
