"""What int8 costs: the CER of each engine in fp32 and in int8 on a calibration manifest."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from seq2seq.core.package import ModelPackage
from seq2seq.evaluation.asr import evaluate_asr
from seq2seq.inference.quantization import quantize_torch
from seq2seq.inference.transcribe import Engine, Transcriber


class QuantizationError(ValueError):
    """int8 that loses more accuracy than the tolerance allows; the message says by how much."""


@dataclass(frozen=True)
class QuantizationCost:
    """One engine's corpus CER (fractions) in fp32 and int8 on ``manifest``."""

    engine: str
    manifest: str
    fp32_cer: float
    int8_cer: float

    @property
    def points(self) -> float:
        """CER points (percent, absolute) that int8 loses; negative when it gains."""
        return 100 * (self.int8_cer - self.fp32_cer)

    def line(self) -> str:
        return (
            f"{self.engine} int8: CER {100 * self.int8_cer:.2f}% vs fp32 {100 * self.fp32_cer:.2f}% "
            f"({self.points:+.2f} points) on {self.manifest}"
        )


def torch_cost(package: ModelPackage, manifest: str, batch_size: int = 8) -> QuantizationCost:
    """CER of the package's PyTorch model before and after ``quantize_torch`` (the package is not changed)."""
    fp32 = evaluate_asr(Transcriber(package), manifest, batch_size).cer
    quantized = dataclasses.replace(package, model=quantize_torch(package.model))
    return QuantizationCost(
        "torch", manifest, fp32, evaluate_asr(Transcriber(quantized), manifest, batch_size).cer
    )


def engine_cost(
    name: str, package: ModelPackage, fp32: Engine, int8: Engine, manifest: str, batch_size: int = 8
) -> QuantizationCost:
    """CER of two engines (e.g. the fp32 and the int8 ONNX graphs) of one package."""
    cers = [evaluate_asr(Transcriber(package, engine=e), manifest, batch_size).cer for e in (fp32, int8)]
    return QuantizationCost(name, manifest, *cers)


def check_cost(cost: QuantizationCost, tolerance: float) -> None:
    """Raise QuantizationError when int8 loses more than ``tolerance`` CER points, or when no CER could
    be measured (every calibration file unreadable: a NaN cost compares as within any tolerance)."""
    if not math.isfinite(cost.points):
        raise QuantizationError(
            f"refusing int8: no CER could be measured on {cost.manifest} (no utterance was transcribed); "
            "the fp32 package is kept"
        )
    if cost.points > tolerance:
        raise QuantizationError(
            f"refusing int8: {cost.line()}, more than the tolerance of {tolerance:g} points "
            "(--quantize-tolerance); the fp32 package is kept"
        )
