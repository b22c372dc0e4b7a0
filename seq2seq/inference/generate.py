"""Text -> text with a loaded text-to-text package (words -> pronunciations): a plain PyTorch loop.

The same decoders as speech recognition run on it (:func:`seq2seq.decoding.decode_batch`, greedy or joint
CTC/attention beam search): the model's ``encode`` reads source ids where the ASR model reads features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seq2seq.core.package import ModelPackage, PackageError
from seq2seq.core.text import UNK_ID
from seq2seq.decoding import DecodingConfig
from seq2seq.decoding.beam_search import beam_search, decode_batch


@dataclass(frozen=True)
class Generation:
    """One input's outputs (best first) and their scores, or why it was refused."""

    text: str
    outputs: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    error: str | None = None


class Generator:
    """Generates with a text-to-text package; ``seq2seq.load_package`` returns one for such packages.

    Args:
        package: a loaded text2text package.
        decoding: search settings; None uses the ones saved in the package.
    """

    def __init__(self, package: ModelPackage, decoding: DecodingConfig | None = None):
        if package.task != "text2text":
            raise PackageError(f"{package.path}: a {package.task} package cannot generate text from text")
        config = decoding or package.config.decoding
        if config.ctc_weight > 0 and package.config.ctc_weight == 0:
            raise ValueError(f"{package.path}: trained without CTC (ctc_weight 0); use --ctc-weight 0")
        self.package, self.config = package, config

    def with_decoding(self, **changes) -> Generator:
        """The same model with some search settings changed (``None`` values keep the package's)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "beam_size" in changes and "nbest" not in changes:
            changes["nbest"] = min(self.config.nbest, changes["beam_size"])
        return Generator(self.package, dataclasses.replace(self.config, **changes))

    @property
    def model(self) -> torch.nn.Module:
        return self.package.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def unknown(self, text: str) -> str | None:
        """Why ``text`` cannot be read (characters outside the source vocabulary, or nothing), or None."""
        source = self.package.tokenizer.source
        if not source.normalizer(text):
            return f"{text!r}: nothing to read after normalization"
        unknown = list(source.unknown_characters(text))
        if UNK_ID in source.encode(text) and not unknown:  # tokenizers never count the space as unknown
            unknown = [" "]
        if not unknown:
            return None
        shown = ", ".join(repr(c) for c in unknown)
        return f"{text}: characters outside the source vocabulary: {shown}"

    def generate(self, texts: Sequence[str], batch_size: int = 64) -> list[Generation]:
        """Outputs for every text, in order; a text the vocabulary cannot represent gets an error instead.

        Texts are decoded in batches of similar length (sorted), so padding stays small.
        """
        results: list[Generation | None] = [None] * len(texts)
        readable = []
        for i, text in enumerate(texts):
            problem = self.unknown(text)
            if problem:
                results[i] = Generation(text, error=problem)
            else:
                readable.append(i)
        encode = self.package.tokenizer.source.encode
        ids = {i: encode(texts[i]) for i in readable}
        readable.sort(key=lambda i: len(ids[i]))
        for start in range(0, len(readable), batch_size):
            chunk = readable[start : start + batch_size]
            for i, (outputs, scores) in zip(chunk, self._decode([ids[i] for i in chunk])):
                results[i] = Generation(texts[i], outputs, scores)
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _decode(self, sources: list[list[int]]) -> list[tuple[tuple[str, ...], tuple[float, ...]]]:
        lengths = torch.tensor([len(s) for s in sources], device=self.device)
        padded = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(s, dtype=torch.long) for s in sources], batch_first=True, padding_value=1
        ).to(self.device)
        decode = self.package.tokenizer.target.decode
        config = self.config
        if config.beam_size == 1 and config.ctc_weight == 0.0:  # greedy: no scores to report
            return [((decode(t),), ()) for t in decode_batch(self.model, padded, lengths, config)]
        hypotheses = beam_search(self.model, padded, lengths, config)
        return [(tuple(decode(h.tokens) for h in hyps), tuple(h.score for h in hyps)) for hyps in hypotheses]
