"""ONNX export and the onnxruntime engine: each graph equals the PyTorch model, a whole ONNX
transcription equals PyTorch's, int8 is priced and refused over the tolerance, files load without
unpickling, and broken ONNX folders are one-line errors (docs/reliability.md)."""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys

import numpy as np
import pytest
import torch
from support import (
    ALPHABET,
    assert_one_line_error,
    run_cli,
    tiny_asr_config,
    tiny_asr_package,
    tiny_tts_batch,
    tiny_tts_config,
    write_jsonl,
    write_tone,
)

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from seq2seq.core.package import read_package_precision  # noqa: E402
from seq2seq.core.text import EOS_ID, SOS_ID  # noqa: E402
from seq2seq.decoding import DecodingConfig, decode_batch  # noqa: E402
from seq2seq.decoding.tts import synthesize  # noqa: E402
from seq2seq.evaluation.quantization import QuantizationError  # noqa: E402
from seq2seq.inference.onnx_engine import OnnxASR, OnnxTTS, onnxruntime_module, open_session  # noqa: E402
from seq2seq.inference.onnx_export import export_asr, export_tts  # noqa: E402
from seq2seq.inference.onnx_files import MANIFEST, ONNX_DIR, OnnxPackageError  # noqa: E402
from seq2seq.inference.quantization import quantize_onnx, quantize_torch  # noqa: E402
from seq2seq.models.asr import ASRModel  # noqa: E402
from seq2seq.models.tts import TTSModel  # noqa: E402
from seq2seq.nn.conformer import ConformerConfig  # noqa: E402
from seq2seq.tasks import Deployment, deploy, load_model_package  # noqa: E402

DynamicLinear = torch.ao.nn.quantized.dynamic.Linear
TOLERANCE = 2e-4


def _model(seed: int = 0, layers: int = 2) -> ASRModel:
    torch.manual_seed(seed)
    return ASRModel(tiny_asr_config(12, input_dim=8, num_layers=layers)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _model()
    directory = tmp_path_factory.mktemp("onnx")
    export_asr(model, directory)
    return model, OnnxASR(directory, threads=1)


def _features(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), 8, generator=g), torch.tensor(lengths)


@pytest.mark.parametrize("lengths", [[37], [61, 40, 23]])
def test_encoder_graph_equals_the_model_on_valid_frames(exported, lengths):
    model, engine = exported
    features, feature_lengths = _features(lengths)
    memory, memory_lengths, log_probs, cross_kv = engine.encode(features, feature_lengths)
    with torch.no_grad():
        ref_memory, ref_lengths = model.encode(features, feature_lengths)
        ref_log_probs = model.ctc_log_probs(ref_memory)
        cache = model.new_cache()
        model.decode(torch.full((len(lengths), 1), SOS_ID), ref_memory, ref_lengths, cache)
    assert memory.shape == tuple(ref_memory.shape) and memory_lengths.tolist() == ref_lengths.tolist()
    assert cross_kv.shape == (2, 2, len(lengths), 2, memory.shape[1], 8)
    for b, n in enumerate(ref_lengths.tolist()):
        np.testing.assert_allclose(memory[b, :n], ref_memory[b, :n], atol=TOLERANCE)
        np.testing.assert_allclose(log_probs[b, :n], ref_log_probs[b, :n], atol=TOLERANCE)
        for i, kv in enumerate(cache.cross_attn):
            np.testing.assert_allclose(cross_kv[i, 0, b, :, :n], kv.key[b, :, :n], atol=TOLERANCE)
            np.testing.assert_allclose(cross_kv[i, 1, b, :, :n], kv.value[b, :, :n], atol=TOLERANCE)


@pytest.mark.parametrize(("lengths", "beams"), [([37], 1), ([61, 40, 23], 1), ([61, 40, 23], 4)])
def test_decoder_step_equals_the_model_with_and_without_the_cache(exported, lengths, beams):
    """Rows share their utterance's memory row (beams), the cache grows from empty, and every step's
    log-probs equal the cached torch decoder's and the full (uncached) pass's."""
    model, engine = exported
    features, feature_lengths = _features(lengths)
    _, memory_lengths, _, cross_kv = engine.encode(features, feature_lengths)
    with torch.no_grad():
        memory, ref_lengths = model.encode(features, feature_lengths)
    rows = len(lengths) * beams
    tokens = torch.randint(5, 12, (rows, 4), generator=torch.Generator().manual_seed(2))
    tokens[:, 0] = SOS_ID
    cache, m = model.new_cache(), engine.manifest
    self_kv = np.zeros((m.layers, 2, rows, m.heads, 0, m.head_dim), dtype=np.float32)
    for u in range(tokens.shape[1]):
        feed = {"tokens": tokens[:, u : u + 1].numpy(), "memory_lengths": memory_lengths}
        log_probs, self_kv = engine.decoder_step.run(None, {**feed, "cross_kv": cross_kv, "self_kv": self_kv})
        with torch.no_grad():
            cached = model.decode(tokens[:, u : u + 1], memory, ref_lengths, cache)[:, -1].log_softmax(-1)
            full = model.decode(tokens[:, : u + 1], memory, ref_lengths)[:, -1].log_softmax(-1)
        assert self_kv.shape[4] == u + 1
        np.testing.assert_allclose(log_probs, cached, atol=TOLERANCE)
        np.testing.assert_allclose(log_probs, full, atol=TOLERANCE)
    np.testing.assert_allclose(self_kv[-1, 0], cache.self_attn[-1].key, atol=TOLERANCE)


@pytest.mark.parametrize("positions", ["absolute", "relative"])
def test_conformer_encoder_graph_equals_the_model_on_a_padded_batch(tmp_path, positions):
    """The demo's encoder kind: depthwise convolution and masked batch norm (running statistics made
    non-trivial), so padding in the batch must not reach valid frames in the graph either."""
    torch.manual_seed(0)
    config = dataclasses.replace(
        tiny_asr_config(12, input_dim=8, num_layers=2, activation="swish"),
        encoder_kind="conformer",
        conformer=ConformerConfig(kernel_size=5, positions=positions),
        scale_encoder_input=False,
    )
    model = ASRModel(config).eval()
    for name, buffer in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            buffer.copy_(torch.rand_like(buffer) + 0.5)
    export_asr(model, tmp_path)
    engine = OnnxASR(tmp_path, threads=1)
    features, feature_lengths = _features([61, 40, 23])
    memory, memory_lengths, log_probs, _ = engine.encode(features, feature_lengths)
    with torch.no_grad():
        ref_memory, ref_lengths = model.encode(features, feature_lengths)
        ref_log_probs = model.ctc_log_probs(ref_memory)
    assert memory_lengths.tolist() == ref_lengths.tolist()
    for b, n in enumerate(ref_lengths.tolist()):
        np.testing.assert_allclose(memory[b, :n], ref_memory[b, :n], atol=TOLERANCE)
        np.testing.assert_allclose(log_probs[b, :n], ref_log_probs[b, :n], atol=TOLERANCE)


def test_encoder_graph_centres_each_utterance_as_the_model_does(tmp_path):
    """``utterance_mean_norm``: the mean over each utterance's valid frames must not count the padding
    of a batch in the graph either."""
    torch.manual_seed(0)
    model = ASRModel(dataclasses.replace(tiny_asr_config(12, input_dim=8), utterance_mean_norm=True)).eval()
    model.feature_norm.mean.copy_(torch.randn(8))
    model.feature_norm.std.copy_(torch.rand(8) + 0.5)
    export_asr(model, tmp_path)
    features, feature_lengths = _features([61, 40, 23])
    features = features + 3.0  # far from zero-mean, so that a wrong mean shows
    memory, _, _, _ = OnnxASR(tmp_path, threads=1).encode(features, feature_lengths)
    with torch.no_grad():
        ref_memory, ref_lengths = model.encode(features, feature_lengths)
    for b, n in enumerate(ref_lengths.tolist()):
        np.testing.assert_allclose(memory[b, :n], ref_memory[b, :n], atol=TOLERANCE)


def _trained_model() -> tuple[ASRModel, torch.Tensor, torch.Tensor]:
    """A tiny model fitted to three utterances, so that its search has clear winners to agree on."""
    model = _model(seed=3).train()
    features, lengths = _features([80, 64, 48], seed=4)
    targets = torch.tensor([[5, 6, 7, 8, 9], [9, 8, 7, 6, 0], [10, 11, 5, 0, 0]])
    target_lengths = torch.tensor([5, 4, 3])
    tokens_in = torch.cat([torch.full((3, 1), SOS_ID), targets], 1)
    tokens_out = torch.cat([targets, torch.zeros(3, 1, dtype=torch.long)], 1)
    tokens_out[torch.arange(3), target_lengths] = EOS_ID
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        log_probs, memory_lengths, logits = model(features, lengths, tokens_in, target_lengths + 1)
        ctc = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, memory_lengths, target_lengths)
        mask = torch.arange(6)[None] <= target_lengths[:, None]
        ce = torch.nn.functional.cross_entropy(logits[mask], tokens_out[mask])
        optimizer.zero_grad()
        (ctc + ce).backward()
        optimizer.step()
    return model.eval(), features, lengths


@pytest.mark.slow  # trains for 100 steps (about 5 s)
def test_onnx_transcription_equals_torch_on_a_trained_model(tmp_path):
    model, features, lengths = _trained_model()
    export_asr(model, tmp_path)
    engine = OnnxASR(tmp_path, threads=1)
    for config in (DecodingConfig(beam_size=4, ctc_weight=0.3), DecodingConfig(beam_size=1, ctc_weight=0.0)):
        expected = decode_batch(model, features, lengths, config)
        assert expected == [[5, 6, 7, 8, 9], [9, 8, 7, 6], [10, 11, 5]]  # it learned: clear winners
        assert engine.decode(features, lengths, config) == expected
        for b in range(3):  # batch 1 gives the same as in the batch
            one = engine.decode(features[b : b + 1, : lengths[b]], lengths[b : b + 1], config)
            assert one == expected[b : b + 1]


def test_onnx_search_reads_the_ctc_window_of_the_config(exported, monkeypatch):
    import seq2seq.inference.onnx_engine as onnx_engine

    model, engine = exported
    windows = []

    class Recording(onnx_engine.CTCPrefixScorer):
        def __init__(self, ctc_log_probs, window=0):
            windows.append(window)
            super().__init__(ctc_log_probs, window)

    monkeypatch.setattr(onnx_engine, "CTCPrefixScorer", Recording)
    features, lengths = _features([160, 97])  # 39 and 23 encoder frames: longer than the 2 x 3 window
    config = DecodingConfig(beam_size=4, ctc_weight=0.5, ctc_window=3, max_length_ratio=0.5)
    assert engine.decode(features, lengths, config) == decode_batch(model, features, lengths, config)
    assert windows == [3]


def test_onnx_search_over_a_word_list_equals_torch(exported):
    from seq2seq.decoding.lexicon import LexiconTrie

    model, engine = exported
    words = [([5, 6], 2.0), ([7], 1.0), ([8, 9, 10], 1.0), ([6, 5], 3.0)]
    trie = LexiconTrie.build(words, [5, 6, 7, 8, 9, 10], 11, 12)
    features, lengths = _features([160, 97, 120])
    config = DecodingConfig(beam_size=4, ctc_weight=0.3, lexicon_weight=1.0, oov_penalty=200.0)
    expected = decode_batch(model, features, lengths, config, lexicon=trie)
    assert engine.decode(features, lengths, config, trie) == expected
    assert expected != decode_batch(model, features, lengths, dataclasses.replace(config, lexicon_weight=0.0))


def test_torch_int8_replaces_linear_layers_and_stays_close():
    model = _model(layers=1)
    quantized = quantize_torch(model)
    linears = {name for name, m in quantized.named_modules() if isinstance(m, DynamicLinear)}
    layer = "decoder.layers.0"
    assert {
        "output",
        "ctc_head",
        f"{layer}.feed_forward.sublayer.up",
        f"{layer}.self_attn.sublayer.fused.query_key_value",  # the projections, fused and quantized
        f"{layer}.cross_attn.sublayer.fused.key_value",
        f"{layer}.cross_attn.sublayer.query",
        "encoder.layers.0.self_attn.sublayer.fused.query_key_value",
    } <= linears
    assert not any(name.endswith((".key", ".value")) for name in linears)  # only used fused
    assert not any(len(m.fused) for m in model.modules() if hasattr(m, "fused"))  # the model is untouched
    unfused = quantize_torch(model, fuse_attention=False)
    names = {name for name, m in unfused.named_modules() if isinstance(m, DynamicLinear)}
    assert "output" in names
    assert not any(name.endswith((".query", ".key", ".value", "_value")) for name in names)
    features, lengths = _features([50, 30])
    with torch.no_grad():
        a, b = model.encode(features, lengths)[0], quantized.encode(features, lengths)[0]
    error = (a - b)[0].abs().max() / a[0].abs().max()
    assert 0 < error < 0.1


def test_sessions_do_not_spin_between_kernels(exported):
    options = exported[1].decoder_step.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1


def test_decoder_step_threads_are_separate_and_do_not_change_the_result(exported):
    model, engine = exported
    split = OnnxASR(engine.manifest.directory, threads=2, step_threads=1)
    threads = [s.get_session_options().intra_op_num_threads for s in (split.encoder, split.decoder_step)]
    assert threads == [2, 1]
    features, lengths = _features([61, 40, 23])
    config = DecodingConfig(beam_size=3, ctc_weight=0.3, max_length_ratio=0.5)
    assert split.decode(features, lengths, config) == engine.decode(features, lengths, config)
    np.testing.assert_array_equal(split.encode(features, lengths)[0], engine.encode(features, lengths)[0])


def test_onnx_int8_quantizes_the_matmuls_and_leaves_convolutions_float(tmp_path):
    """ConvInteger has no fast CPU kernel (the reference encoder: 135 ms with it, 57 ms without)."""
    import onnx

    model = _model(layers=1)
    manifest = quantize_onnx(export_asr(model, tmp_path / "fp32"), tmp_path / "int8")
    ops = {
        name: {node.op_type for node in onnx.load(manifest.graph(name)).graph.node}
        for name in manifest.graphs
    }
    assert {"MatMulInteger", "Conv"} <= ops["encoder"] and "ConvInteger" not in ops["encoder"]
    assert "MatMulInteger" in ops["decoder_step"]
    features, lengths = _features([50, 30])
    memory = OnnxASR(tmp_path / "int8", threads=1).encode(features, lengths)[0]
    with torch.no_grad():
        expected = model.encode(features, lengths)[0].numpy()
    error = np.abs(memory - expected)[0].max() / np.abs(expected[0]).max()
    assert 0 < error < 0.1  # quantized, and close


def _calibration(tmp_path, package) -> str:
    tokenizer = load_model_package(package).tokenizer
    records = [
        {
            "audio_filepath": str(write_tone(tmp_path / f"{i}.wav", 0.5 + 0.2 * i)),
            "duration": 0.5 + 0.2 * i,
            "text": "ab c",
        }
        for i in range(3)
    ]
    assert tokenizer.vocab_size > 5
    return str(write_jsonl(tmp_path / "calibration.jsonl", records))


def test_int8_is_refused_over_the_tolerance_and_recorded_within_it(tmp_path):
    package = tiny_asr_package(tmp_path / "pkg", texts=(ALPHABET,))
    manifest = _calibration(tmp_path, package)
    lines: list[str] = []
    with pytest.raises(QuantizationError, match=r"refusing int8: torch int8: CER .* tolerance of -1 points"):
        deploy(package, Deployment(True, "int8", manifest, tolerance=-1.0), lines.append)
    assert read_package_precision(package) == "fp32" and len(lines) == 1
    assert json.loads((package / ONNX_DIR / MANIFEST).read_text())["precision"] == "fp32"
    deploy(package, Deployment(True, "int8", manifest, tolerance=100.0), lines.append)
    assert [line.split(":")[0] for line in lines[1:]] == ["torch int8", "onnxruntime int8"]
    assert read_package_precision(package) == "int8"
    assert OnnxASR(package / ONNX_DIR).manifest.precision == "int8"
    loaded = load_model_package(package)
    assert isinstance(loaded.model.output, DynamicLinear)
    assert not list(package.glob(".deploy-*"))


def test_int8_is_refused_when_no_calibration_file_can_be_read(tmp_path):
    package = tiny_asr_package(tmp_path / "pkg", texts=(ALPHABET,))
    missing = [
        {"audio_filepath": str(tmp_path / f"gone{i}.wav"), "duration": 1.0, "text": "ab"} for i in range(2)
    ]
    manifest = str(write_jsonl(tmp_path / "calibration.jsonl", missing))
    with pytest.raises(QuantizationError, match=r"refusing int8: no CER could be measured on .*calibration"):
        deploy(package, Deployment(True, "int8", manifest, tolerance=100.0), lambda line: None)
    assert read_package_precision(package) == "fp32"


def test_exported_files_load_without_unpickling(tmp_path, monkeypatch):
    package = tiny_asr_package(tmp_path / "pkg")
    deploy(package, Deployment(onnx=True))

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling while loading ONNX graphs")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    engine = OnnxASR(package / ONNX_DIR)
    features, lengths = _features([40])
    assert len(engine.decode(torch.randn(1, 40, 80), lengths, DecodingConfig(beam_size=2))) == 1


def _broken(tmp_path, change) -> str:
    package = tiny_asr_package(tmp_path / "pkg")
    deploy(package, Deployment(onnx=True))
    change(package / ONNX_DIR)
    return str(package)


def _truncate(directory):
    data = (directory / "encoder.onnx").read_bytes()
    (directory / "encoder.onnx").write_bytes(data[: len(data) // 3])


def _edit_manifest(**changes):
    def edit(directory):
        data = json.loads((directory / MANIFEST).read_text())
        (directory / MANIFEST).write_text(json.dumps({**data, **changes}))

    return edit


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_truncate, ("encoder.onnx", "not a loadable ONNX graph")),
        (_edit_manifest(task="tts"), ("manifest.json", "'tts' model, not of a asr")),
        (_edit_manifest(format=7), ("manifest.json", "ONNX format 7", "export the ONNX graphs again")),
        (lambda d: (d / MANIFEST).unlink(), ("no ONNX graphs", "--onnx")),
    ],
    ids=["truncated", "other-task", "format-version", "no-manifest"],
)
def test_broken_onnx_folders_are_one_line_errors(tmp_path, change, words):
    package = _broken(tmp_path, change)
    with pytest.raises((OnnxPackageError, OSError)) as error:
        OnnxASR(f"{package}/{ONNX_DIR}")
    assert "\n" not in str(error.value) and all(w in str(error.value) for w in words)


def test_transcribe_engine_onnx_with_a_truncated_graph_is_one_error_line(tmp_path):
    package = _broken(tmp_path, _truncate)
    wav = write_tone(tmp_path / "a.wav", 0.5)
    result = run_cli("transcribe", package, str(wav), "--engine", "onnx")
    assert_one_line_error(result, "encoder.onnx", "not a loadable ONNX graph")


def test_missing_onnxruntime_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(
        RuntimeError, match=r"^the onnx engine needs onnxruntime.*pip install 'seq2seq\[onnx\]'$"
    ):
        onnxruntime_module()
    with pytest.raises(RuntimeError, match="needs onnxruntime"):
        open_session("x.onnx")


@pytest.fixture(scope="module")
def tts_exported(tmp_path_factory):
    torch.manual_seed(0)
    model = TTSModel(tiny_tts_config(2, 0.0, decoder_prenet_dropout=0.5)).eval()  # prenet dropout stays on
    directory = tmp_path_factory.mktemp("tts-onnx")
    export_tts(model, directory)
    return model, OnnxTTS(directory, threads=1)


@pytest.mark.parametrize("rows", [[0], [0, 1, 2]])
def test_onnx_tts_synthesis_equals_torch(tts_exported, rows):
    """Encoder, cached decoder step (prenet dropout drawn from the same seeded generator) and postnet:
    every sentence stops at the same frame, mels and alignments agree within float tolerance."""
    model, engine = tts_exported
    tokens, token_lengths, _, _ = tiny_tts_batch()
    tokens, token_lengths = tokens[rows, : int(token_lengths[rows].max())], token_lengths[rows]
    runs = [
        synthesize(
            m, tokens, token_lengths, 3.0, stop_threshold=0.99, generator=torch.Generator().manual_seed(1)
        )
        for m in (model, engine)
    ]
    assert runs[0].mel_lengths.tolist() == runs[1].mel_lengths.tolist()
    assert runs[0].mels.shape == runs[1].mels.shape and runs[0].mels.abs().max() > 0.1
    torch.testing.assert_close(runs[1].mels, runs[0].mels, atol=TOLERANCE, rtol=1e-4)
    torch.testing.assert_close(runs[1].alignments, runs[0].alignments, atol=TOLERANCE, rtol=1e-4)
