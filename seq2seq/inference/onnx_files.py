"""The ``onnx/`` folder of a model package: its graphs and ``manifest.json`` (format, task, shapes).

::

    onnx/manifest.json     {"format": 1, "task": "asr", "precision": "fp32" | "int8", "graphs": {...},
                            "layers": L, "heads": H, "head_dim": Dh, "vocab_size": V}
    onnx/encoder.onnx      see seq2seq.inference.onnx_graphs
    onnx/decoder_step.onnx

Only JSON is read here; the graphs are opened by onnxruntime. Every problem is one line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from seq2seq.core.package import PackageError

ONNX_FORMAT_VERSION = 1
ONNX_DIR, MANIFEST = "onnx", "manifest.json"
GRAPHS = {"asr": ("encoder", "decoder_step"), "tts": ("encoder", "decoder_step", "postnet")}


class OnnxPackageError(PackageError):
    """An ONNX folder that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class OnnxManifest:
    """What ``manifest.json`` says; ``directory`` is where it was read from (not saved).

    Attributes:
        task: ``asr`` or ``tts``.
        precision: ``fp32``, or ``int8`` (linear layers dynamically quantized).
        graphs: graph name -> file name inside the folder.
        layers, heads, head_dim: the decoder's cache shape, (L, 2, N, H, P, Dh).
        vocab_size: ASR output symbols (0 for TTS).
        extra: task-specific settings (TTS: mel bins, reduction factor, prenet layers, width, dropout).
    """

    task: str
    precision: str
    graphs: dict[str, str]
    layers: int
    heads: int
    head_dim: int
    vocab_size: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    directory: Path = Path(".")

    def graph(self, name: str) -> Path:
        return self.directory / self.graphs[name]

    def write(self, directory: str | Path) -> Path:
        data = {"format": ONNX_FORMAT_VERSION, **asdict(self)}
        del data["directory"]
        path = Path(directory) / MANIFEST
        path.write_text(json.dumps(data, indent=2))
        return path


def read_manifest(directory: str | Path, task: str) -> OnnxManifest:
    """The manifest of an ONNX folder made for ``task``; a one-line OnnxPackageError otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise OnnxPackageError(
            f"{directory}: no ONNX graphs ({MANIFEST} missing); make them with `seq2seq export ... --onnx`"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OnnxPackageError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise OnnxPackageError(f"{path}: not an ONNX manifest (a JSON object was expected)")
    if data.get("format") != ONNX_FORMAT_VERSION:
        raise OnnxPackageError(
            f"{path}: ONNX format {data.get('format')!r}, this seq2seq reads format {ONNX_FORMAT_VERSION}; "
            "export the ONNX graphs again with this version"
        )
    if data.get("task") != task:
        raise OnnxPackageError(f"{path}: ONNX graphs of a {data.get('task')!r} model, not of a {task} model")
    data.pop("format")
    try:
        manifest = OnnxManifest(**data, directory=directory)
    except TypeError as error:
        raise OnnxPackageError(f"{path}: not an ONNX manifest of this seq2seq ({error})") from None
    for name in GRAPHS[task]:
        if name not in manifest.graphs or not manifest.graph(name).is_file():
            raise OnnxPackageError(f"{path}: graph {name!r} is missing from {directory}")
    return manifest
