"""ASR decoding over onnxruntime sessions: the same batched joint beam search, another scorer backend.

:class:`OnnxASR` runs ``encoder.onnx`` once per batch, then :class:`~seq2seq.decoding.BeamSearch`
with :class:`OnnxAttentionScorer` (``decoder_step.onnx``, its KV cache held as arrays) and the usual
:class:`~seq2seq.decoding.scorer.CTCPrefixScorer` fed from the encoder's CTC log-probs. onnxruntime is
imported only here, and only when an ONNX engine is asked for; files are read by onnxruntime (protobuf)
and JSON: nothing is unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seq2seq.decoding import DecodingConfig
from seq2seq.decoding.beam_search import BeamSearch
from seq2seq.decoding.lexicon import LexiconScorer, LexiconTrie
from seq2seq.decoding.scorer import CTCPrefixScorer
from seq2seq.inference.onnx_files import OnnxManifest, read_manifest

# benchmarks/deployment.py --before turns spinning back on (onnxruntime's default) for comparison.
SPINNING = False


def onnxruntime_module() -> Any:
    """The onnxruntime module, or a one-line error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError(
            "the onnx engine needs onnxruntime, which is not installed: pip install 'seq2seq[onnx]'"
        ) from None
    return onnxruntime


def open_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``path``; a one-line OSError naming the file when it is unreadable."""
    ort = onnxruntime_module()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Idle workers sleep instead of spinning: a decoder step is a chain of small kernels, and spinning
    # between them doubled the CPU time of 2-thread batch-1 decoding on a shared 2-core machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if SPINNING else "0")
    options.log_severity_level = 3  # warnings about unused initializers are not the user's business
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types; the message's first line names why
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(f"{path}: not a loadable ONNX graph ({reason[:200]})") from None


@dataclass
class OnnxAttentionState:
    """The decoder step's inputs between steps (see :class:`seq2seq.decoding.scorer.AttentionState`).

    Attributes:
        self_kv: (L, 2, N, H, P, Dh) self-attention keys/values, one row per hypothesis.
        cross_kv: (L, 2, G, H, S, Dh) cross-attention keys/values, one row per live utterance.
        memory_lengths: (G,) int64.
        utterance: (N,) which run of rows each hypothesis belongs to; ``groups`` (G,) the live ones.
    """

    self_kv: np.ndarray
    cross_kv: np.ndarray
    memory_lengths: np.ndarray
    utterance: torch.Tensor
    groups: torch.Tensor


class OnnxAttentionScorer:
    """``decoder_step.onnx`` as a full scorer: one session call per search step for all hypotheses.

    Args:
        session: the decoder-step session.
        cross_kv: (L, 2, B, H, S, Dh) from ``encoder.onnx`` for the batch being searched.
        manifest: the graphs' shapes (layers, heads, head size).
    """

    partial = False

    def __init__(self, session: Any, cross_kv: np.ndarray, manifest: OnnxManifest):
        self.session, self.cross_kv, self.manifest = session, cross_kv, manifest

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> OnnxAttentionState:
        m, batch = self.manifest, memory.shape[0]
        empty = np.zeros((m.layers, 2, batch, m.heads, 0, m.head_dim), dtype=self.cross_kv.dtype)
        utterance = torch.arange(batch)
        lengths = memory_lengths.numpy().astype(np.int64)
        return OnnxAttentionState(empty, self.cross_kv, lengths, utterance, utterance)

    def score(self, tokens: torch.Tensor, state: OnnxAttentionState, candidates=None):
        """tokens: (N, U) -> (N, V) float32 log-probs (or gathered at ``candidates``); only the newest
        token is fed, the cache holds the rest."""
        feed = {
            "tokens": tokens[:, -1:].numpy(),
            "memory_lengths": state.memory_lengths,
            "cross_kv": state.cross_kv,
            "self_kv": state.self_kv,
        }
        log_probs, state.self_kv = self.session.run(None, feed)
        scores = torch.from_numpy(log_probs)
        return (scores if candidates is None else scores.gather(1, candidates)), state

    def select_state(self, state: OnnxAttentionState, indices, tokens=None) -> OnnxAttentionState:
        rows = indices.numpy()
        state.utterance = state.utterance.index_select(0, indices)
        state.self_kv = state.self_kv.take(rows, axis=2)
        groups = state.utterance.unique_consecutive()
        if not torch.equal(groups, state.groups):  # utterances left: keep their memory rows only
            kept = torch.searchsorted(state.groups, groups).numpy()
            state.cross_kv = state.cross_kv.take(kept, axis=2)
            state.memory_lengths = state.memory_lengths.take(kept)
            state.groups = groups
        return state


class OnnxASR:
    """An exported ASR model's ONNX graphs, decoding batches of features (CPU).

    Args:
        directory: the package's ``onnx`` folder (``manifest.json``, ``encoder.onnx``,
            ``decoder_step.onnx``).
        threads: onnxruntime intra-op threads (default: torch's).
        step_threads: threads of the decoder-step session (default: ``threads``). A step is a chain of
            small kernels over ``beam`` rows, where a second thread may cost more in hand-offs than it
            brings; onnxruntime's results do not depend on either count (checked bit for bit).
    """

    def __init__(self, directory: str | Path, threads: int | None = None, step_threads: int | None = None):
        self.manifest = read_manifest(directory, "asr")
        self.encoder = open_session(self.manifest.graph("encoder"), threads)
        self.decoder_step = open_session(self.manifest.graph("decoder_step"), step_threads or threads)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
        """-> memory, memory lengths, CTC log-probs, cross_kv (numpy, as the encoder graph gives them)."""
        feed = {"features": features.float().numpy(), "lengths": lengths.numpy().astype(np.int64)}
        return self.encoder.run(None, feed)

    def decode(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        config: DecodingConfig,
        lexicon: LexiconTrie | None = None,
    ) -> list[list[int]]:
        """Best token ids per utterance by the joint CTC/attention beam search of ``config`` (over the
        words of ``lexicon`` when given, as the torch engine searches)."""
        memory, memory_lengths, log_probs, cross_kv = self.encode(features.cpu(), lengths.cpu())
        memory, memory_lengths = torch.from_numpy(memory), torch.from_numpy(memory_lengths)
        ctc = torch.from_numpy(log_probs)
        scorers: dict[str, Any] = {}
        weights = {"attention": 1.0 - config.ctc_weight, "ctc": config.ctc_weight}
        if weights["attention"] > 0:
            scorers["attention"] = OnnxAttentionScorer(self.decoder_step, cross_kv, self.manifest)
        if weights["ctc"] > 0:
            scorers["ctc"] = CTCPrefixScorer(lambda _memory: ctc, config.ctc_window)
        if lexicon is not None and config.lexicon_weight > 0:
            scorers["lexicon"] = LexiconScorer(lexicon.to("cpu"), config.oov_penalty)
            weights["lexicon"] = config.lexicon_weight
        search = BeamSearch(scorers, {name: weights[name] for name in scorers}, config)
        hyps = search(memory, memory_lengths, self.manifest.vocab_size)
        return [h[0].tokens if h else [] for h in hyps]


@dataclass(frozen=True)
class _TTSShape:
    reduction_factor: int
    n_mels: int


class _TTSCache:
    """The step graph's keys/values for the sentences still running (``BatchedSynthesis`` drops rows)."""

    def __init__(self, self_kv: np.ndarray, cross_kv: np.ndarray):
        self.self_kv, self.cross_kv = self_kv, cross_kv

    def select(self, indices: torch.Tensor) -> None:
        rows = indices.numpy()
        self.self_kv, self.cross_kv = self.self_kv.take(rows, axis=2), self.cross_kv.take(rows, axis=2)


class OnnxTTS:
    """An exported TTS model's graphs behind the interface :func:`seq2seq.decoding.tts.synthesize`
    uses (``encode``, ``new_cache``, ``prenet``, ``decode_step``, ``finish``), so synthesis runs the
    same loop. ``prenet`` only draws the prenet's dropout scales (as PyTorch draws its masks, from the
    same generator); the step graph applies them."""

    def __init__(self, directory: str | Path, threads: int | None = None):
        self.manifest = m = read_manifest(directory, "tts")
        self.config = _TTSShape(int(m.extra["reduction_factor"]), int(m.extra["n_mels"]))
        self.sessions = {name: open_session(m.graph(name), threads) for name in m.graphs}
        self._cross_kv: np.ndarray | None = None

    def encode(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feed = {"tokens": tokens.numpy(), "token_lengths": token_lengths.numpy().astype(np.int64)}
        memory, self._cross_kv = self.sessions["encoder"].run(None, feed)
        return torch.from_numpy(memory), torch.arange(tokens.shape[1])[None] < token_lengths[:, None]

    def new_cache(self) -> _TTSCache:
        m, cross = self.manifest, self._cross_kv
        return _TTSCache(np.zeros((m.layers, 2, cross.shape[2], m.heads, 0, m.head_dim), np.float32), cross)

    def prenet(self, frames: torch.Tensor, generator: torch.Generator | None = None):
        """frames (B, 1, n_mels) -> the frames and their prenet dropout scales (P, B, hidden)."""
        p, b = self.manifest.extra["prenet_dropout"], frames.shape[0]
        shape = (int(self.manifest.extra["prenet_layers"]), b, 1, int(self.manifest.extra["prenet_dim"]))
        scales = torch.ones(shape)
        if p > 0:
            for scale in scales:  # one mask per layer, in the order the PyTorch prenet draws them
                scale.bernoulli_(1.0 - p, generator=generator).div_(1.0 - p)
        return frames, scales[:, :, 0]

    def decode_step(self, inputs, memory, memory_mask, cache: _TTSCache):
        frames, scales = inputs
        feed = {
            "previous": frames[:, -1].numpy(),
            "prenet_scale": scales.numpy(),
            "token_lengths": memory_mask.sum(1).numpy().astype(np.int64),
            "cross_kv": cache.cross_kv,
            "self_kv": cache.self_kv,
        }
        mels, stop, attention, cache.self_kv = self.sessions["decoder_step"].run(None, feed)
        return torch.from_numpy(mels), torch.from_numpy(stop), torch.from_numpy(attention)

    def finish(self, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        feed = {"mels": mels.float().contiguous().numpy(), "lengths": lengths.numpy().astype(np.int64)}
        return torch.from_numpy(self.sessions["postnet"].run(None, feed)[0])
