"""seq2seq: Transformer sequence-to-sequence models for speech and text, with normalization as config.

The inference API needs no Lightning::

    import seq2seq
    model = seq2seq.load_package("runs/asr_small/package")      # or device="cuda"
    texts = model.transcribe(["one.wav", "recordings/"])
    speech = seq2seq.load_package("runs/tts_small/package").synthesize(["hello there"])
    ppl, tokens, problems = seq2seq.load_package("runs/lm_small/package").perplexity(["hello there"])

Names are imported on first use, so ``import seq2seq`` (and ``seq2seq --help``) stays instant.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# oneDNN keeps every convolution it compiled, one per input shape, up to 1024 of them (~0.25 MB each):
# the front-end convolves each utterance over its own length, so decoding a corpus of varied lengths grew
# the resident set by ~0.5 MB per new length, up to ~500 MB. Lengths rarely repeat, so a smaller cache
# costs no speed; it must be set before oneDNN compiles its first primitive (set it yourself to override).
ONEDNN_PRIMITIVE_CACHE_CAPACITY = "128"
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_PRIMITIVE_CACHE_CAPACITY)

# public name -> module that defines it
_EXPORTS = {
    "load_package": "seq2seq.tasks",
    "load_model_package": "seq2seq.tasks",
    "train": "seq2seq.tasks",
    "export": "seq2seq.tasks",
    "TASKS": "seq2seq.tasks",
    "Transcriber": "seq2seq.inference.transcribe",
    "Synthesizer": "seq2seq.inference.synthesize",
    "Synthesized": "seq2seq.inference.synthesize",
    "LanguageModelScorer": "seq2seq.inference.lm",
    "Generator": "seq2seq.inference.generate",
    "ModelPackage": "seq2seq.core.package",
    "PackageError": "seq2seq.core.package",
    "ConfigError": "seq2seq.core.config",
    "DecodingConfig": "seq2seq.decoding.config",
    "load_experiment": "seq2seq.experiments",
    "ASRExperimentConfig": "seq2seq.experiments",
    "TTSExperimentConfig": "seq2seq.experiments",
    "LMExperimentConfig": "seq2seq.experiments",
    "ASRModel": "seq2seq.models.asr",
    "TTSModel": "seq2seq.models.tts",
    "LanguageModel": "seq2seq.models.lm",
    "Text2TextExperimentConfig": "seq2seq.experiments",
    "Text2TextModel": "seq2seq.models.text2text",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
