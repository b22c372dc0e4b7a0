"""Audio -> text with a loaded ASR package: a plain PyTorch loop on the device the user asks for.

Nothing here imports Lightning; corpus-scale decoding on many devices (:mod:`seq2seq.corpus_decoding`)
swaps in Lightning's predict loop through the ``decode`` argument of :meth:`Transcriber.transcribe_sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from torch.utils.data import DataLoader

from seq2seq.core.package import ModelPackage, PackageError
from seq2seq.decoding import DecodingConfig, Hypothesis, beam_search, decode_batch
from seq2seq.inference.audio_inputs import (
    Segment,
    SegmentDataset,
    collate_segments,
    find_audio,
    split_into_windows,
)
from seq2seq.inference.lexicon import SpelledLexicon, WordList, spell

Source = tuple[str, float, float | None]  # (path, offset, duration or None for "to the end")
Result = tuple[str | None, str | None]  # (transcript, error)
NBest = list[dict]  # per hypothesis: text, tokens, attention, ctc, lm, lexicon, length, total (best first)
SegmentDecoder = Callable[["Transcriber", DataLoader], Iterable[tuple[Segment, "Decoded | None"]]]


class Decoded(NamedTuple):
    """One decoded segment: its best transcript and, when asked for, its n-best list (a named tuple:
    Lightning's predict loop refuses frozen dataclasses in its outputs)."""

    text: str
    nbest: NBest | None = None


def same_tokenizer(a, b) -> bool:
    """True when two tokenizers map the same ids to the same symbols (kind, symbol table, model)."""
    table = (type(a), a.vocab_size, getattr(a, "symbols", None), getattr(a, "model_proto", None))
    return table == (type(b), b.vocab_size, getattr(b, "symbols", None), getattr(b, "model_proto", None))


def check_language_model(package: ModelPackage, lm: ModelPackage) -> None:
    """Refuse, in one line, an LM that is not one or that reads other token ids than the ASR model."""
    if lm.task != "lm":
        raise PackageError(f"{lm.path}: a {lm.task} package is not a language model; use an LM package")
    if not same_tokenizer(package.tokenizer, lm.tokenizer):
        raise PackageError(
            f"{lm.path}: the language model's tokenizer differs from the ASR model's ({package.path}); "
            "train the LM with the ASR package's tokenizer"
        )


class Engine(Protocol):
    """Another backend for the search (e.g. :class:`seq2seq.inference.onnx_engine.OnnxASR`)."""

    def decode(
        self, features: torch.Tensor, lengths: torch.Tensor, config: DecodingConfig, lexicon=None
    ) -> list[list[int]]:
        """(B, T, F) features, (B,) lengths, a word list's tree or None -> best token ids per utterance."""


class Transcriber:
    """Decodes speech with an ASR package; ``seq2seq.load_package`` returns one for ASR packages.

    Args:
        package: a loaded ASR model package.
        decoding: search settings; None uses the ones saved in the package.
        lm: a loaded LM package with the same tokenizer, weighted by ``decoding.lm_weight``.
        rescore: use the LM to re-rank the n-best list of a search without it (n-best rescoring)
            instead of inside the search (shallow fusion).
        engine: runs the search instead of the package's PyTorch model (the ONNX graphs); None: torch.
            It returns best transcripts only: no LM, rescoring or n-best lists.
        lexicon: a word list spelled with the package's tokenizer, weighted by
            ``decoding.lexicon_weight`` (see :meth:`with_lexicon`); None: the package's own word list
            (``lexicon.txt``), when it has one and the weight is positive.
    """

    def __init__(
        self,
        package: ModelPackage,
        decoding: DecodingConfig | None = None,
        lm: ModelPackage | None = None,
        rescore: bool = False,
        engine: Engine | None = None,
        lexicon: SpelledLexicon | None = None,
    ):
        if package.task != "asr":
            raise PackageError(
                f"{package.path}: a {package.task} package cannot transcribe; use an ASR package"
            )
        if lm is not None:
            check_language_model(package, lm)
        if engine is not None and lm is not None:
            raise ValueError(
                "--engine onnx decodes without a language model: drop --lm or use --engine torch"
            )
        self.package, self.lm, self.rescore, self.engine = package, lm, rescore, engine
        self.config: DecodingConfig = decoding or package.config.decoding
        if lexicon is None and package.lexicon is not None and self.config.lexicon_weight > 0:
            lexicon = self._spelled(WordList.read(package.lexicon))
        self.lexicon = lexicon
        self.keep_nbest = False  # decoded segments carry their n-best lists (``--nbest``)

    def with_decoding(self, **changes) -> Transcriber:
        """The same model with some search settings changed (``None`` values keep the package's).

        A positive ``length_penalty`` (a length bonus) with the exact early stop ``bound``, which is
        only exact without length rewards, switches early stopping to ``espnet``.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        bonus = changes.get("length_penalty", self.config.length_penalty) > 0
        if bonus and changes.get("early_stop", self.config.early_stop) == "bound":
            changes["early_stop"] = "espnet"
        return self._copy(dataclasses.replace(self.config, **changes), self.lm, self.rescore, self.lexicon)

    def with_lm(self, lm: ModelPackage | None, weight: float | None = None, rescore: bool = False):
        """The same model with a language model (fused with ``weight``, or the config's lm_weight)."""
        config = self.config if weight is None else dataclasses.replace(self.config, lm_weight=weight)
        return self._copy(config, lm, rescore, self.lexicon)

    def with_lexicon(
        self, words: WordList | None, weight: float | None = None, oov_penalty: float | None = None
    ) -> Transcriber:
        """The same model searching over the words of ``words`` (the tree is built once, here), with the
        config's ``lexicon_weight`` and ``oov_penalty`` unless given; None: the search without a word
        list (weight 0, which is exactly the search without it)."""
        if words is None:
            return self._copy(
                dataclasses.replace(self.config, lexicon_weight=0.0), self.lm, self.rescore, None
            )
        changes = {"lexicon_weight": weight, "oov_penalty": oov_penalty}
        config = dataclasses.replace(self.config, **{k: v for k, v in changes.items() if v is not None})
        return self._copy(config, self.lm, self.rescore, self._spelled(words))

    def _spelled(self, words: WordList) -> SpelledLexicon:
        spelled = spell(words, self.package.tokenizer)
        return SpelledLexicon(spelled.trie.to(self.device), spelled.skipped)

    def _copy(self, config: DecodingConfig, lm, rescore: bool, lexicon: SpelledLexicon | None) -> Transcriber:
        copy = Transcriber(self.package, config, lm, rescore, self.engine, lexicon)
        copy.keep_nbest = self.keep_nbest
        return copy

    @property
    def model(self) -> torch.nn.Module:
        return self.package.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def lm_model(self) -> torch.nn.Module | None:
        return None if self.lm is None else self.lm.model

    @property
    def lexicon_trie(self):
        """The word list's tree the search uses, or None (no list, or weight 0)."""
        if self.lexicon is None or self.config.lexicon_weight == 0:
            return None
        return self.lexicon.trie

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """features: (B, T, F) log-Mel; lengths: (B,) -> B transcripts."""
        return [d.text for d in self.decode(features, lengths)]

    @torch.inference_mode()
    def decode(self, features: torch.Tensor, lengths: torch.Tensor) -> list[Decoded]:
        """features: (B, T, F) log-Mel; lengths: (B,) -> B decoded segments (with n-best lists when
        ``keep_nbest``)."""
        if not torch.isfinite(features).all():
            raise ValueError("features contain NaN or infinite values; check the audio's sample values")
        if self.engine is not None:
            if self.keep_nbest:
                raise ValueError(
                    "--engine onnx writes best transcripts only: drop --nbest or use --engine torch"
                )
            tokens = self.engine.decode(features, lengths, self.config, self.lexicon_trie)
            return [Decoded(self.package.tokenizer.decode(t)) for t in tokens]
        features, lengths = features.to(self.device), lengths.to(self.device)
        if not (self.keep_nbest or self.rescore):
            tokens = decode_batch(
                self.model, features, lengths, self.config, self.lm_model, self.lexicon_trie
            )
            return [Decoded(self.package.tokenizer.decode(t)) for t in tokens]
        if self.rescore:
            search = dataclasses.replace(self.config, lm_weight=0.0)
            found = beam_search(self.model, features, lengths, search, None, self.lexicon_trie)
            found = [self._rescored(h) for h in found]
        else:
            found = beam_search(self.model, features, lengths, self.config, self.lm_model, self.lexicon_trie)
        lists = [[self._entry(h) for h in hyps] for hyps in found]
        return [Decoded(n[0]["text"] if n else "", n if self.keep_nbest else None) for n in lists]

    def _rescored(self, hyps: list[Hypothesis]) -> list[Hypothesis]:
        """Re-rank ``hyps`` by ``score + lm_weight * log P_lm(tokens + EOS)`` (ties keep search order)."""
        if self.lm is None or not hyps:
            return hyps
        lengths = torch.tensor([len(h.tokens) for h in hyps], device=self.device)
        tokens = torch.zeros(len(hyps), max(1, int(lengths.max())), dtype=torch.long, device=self.device)
        for row, h in enumerate(hyps):
            tokens[row, : len(h.tokens)] = torch.tensor(h.tokens, dtype=torch.long)
        lm = self.lm.model.sentence_log_probs(tokens, lengths).double().sum(-1).tolist()
        weight = self.config.lm_weight
        scored = [Hypothesis(h.tokens, h.score + weight * s, {**h.scores, "lm": s}) for h, s in zip(hyps, lm)]
        return sorted(scored, key=lambda h: -h.score)

    def _entry(self, h: Hypothesis) -> dict:
        """One n-best line: the text, unweighted scorer sums, the length bonus and the ranking score."""
        scores = {name: h.scores.get(name) for name in ("attention", "ctc", "lm", "lexicon")}
        length = self.config.length_penalty * len(h.tokens)
        text = self.package.tokenizer.decode(h.tokens)
        return {"text": text, "tokens": len(h.tokens), **scores, "length": length, "total": h.score}

    def transcribe(
        self, files: Sequence[str | Path], batch_size: int = 8, window_seconds: float = 30.0
    ) -> list[str]:
        """Transcripts of audio files (folders are searched); raises on the first unreadable file.

        Recordings longer than ``window_seconds`` are decoded in windows whose transcripts are joined.
        """
        paths = find_audio([str(f) for f in files])
        results = self.transcribe_sources([(p, 0.0, None) for p in paths], batch_size, window_seconds)
        for _, error in results:
            if error is not None:
                raise ValueError(error)
        return [text or "" for text, _ in results]

    def transcribe_sources(self, *args, **kwargs) -> list[Result]:
        """Per source ``(text, None)`` or ``(None, error)``: one bad file never stops the others.

        Takes the arguments of :meth:`stream_sources`.
        """
        return [
            (None, error) if error else (" ".join(d.text for d in windows if d.text), None)
            for windows, error in self.stream_sources(*args, **kwargs)
        ]

    def decode_sources(self, *args, **kwargs) -> list[tuple[list[Decoded], str | None]]:
        """All of :meth:`stream_sources` as a list."""
        return list(self.stream_sources(*args, **kwargs))

    def stream_sources(
        self,
        sources: Sequence[Source],
        batch_size: int = 8,
        window_seconds: float = 30.0,
        decode: SegmentDecoder | None = None,
        num_workers: int = 0,
    ) -> Iterator[tuple[list[Decoded], str | None]]:
        """Per source, in source order, its decoded windows and None, or ``([], error)``; each as soon as
        its last window is decoded, so that a caller can write it while the rest is decoded.

        Args:
            sources: ``(path, offset, duration)``; duration None reads to the end of the file.
            batch_size: windows decoded together.
            window_seconds: longer sources are cut into windows of at most this length.
            decode: runs the loader's batches through the model (default: a plain loop here).
            num_workers: data loader processes reading audio.
        """
        segments = [
            s
            for i, (path, offset, duration) in enumerate(sources)
            for s in split_into_windows(i, path, window_seconds, offset, duration)
        ]
        dataset = SegmentDataset(segments, self.package.config.data.features)
        loader = DataLoader(
            dataset, batch_size=batch_size, collate_fn=collate_segments, num_workers=num_workers
        )
        yield from _join_windows(len(sources), (decode or decode_segments)(self, loader))


def decode_segment_batch(transcriber: Transcriber, batch) -> list[tuple[Segment, Decoded | None]]:
    """``(segment, decoded)`` for one collated batch; failed segments keep their place with None."""
    segments, features, lengths = batch
    decoded = iter(transcriber.decode(features, lengths) if features is not None else [])
    return [(segment, None if segment.error else next(decoded)) for segment in segments]


def decode_segments(transcriber: Transcriber, loader: DataLoader) -> Iterable[tuple[Segment, Decoded | None]]:
    """``(segment, decoded)`` for every segment of ``loader`` (the plain loop)."""
    for batch in loader:
        yield from decode_segment_batch(transcriber, batch)


def _join_windows(
    count: int, decoded: Iterable[tuple[Segment, Decoded | None]]
) -> Iterator[tuple[list[Decoded], str | None]]:
    """One result per source, in order: segments arrive in source order, so a source is complete when a
    segment of a later one arrives."""
    done, pieces, errors = 0, [], []

    def result() -> tuple[list[Decoded], str | None]:
        return ([], errors[0]) if errors else ([d for _, d in sorted(pieces, key=lambda p: p[0])], None)

    for segment, item in decoded:
        while done < segment.source:
            yield result()
            done, pieces, errors = done + 1, [], []
        if segment.error:
            errors.append(segment.error)
        else:
            pieces.append((segment.window, item))
    while done < count:
        yield result()
        done, pieces, errors = done + 1, [], []
