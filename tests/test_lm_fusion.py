"""Language-model fusion: the LM scorer's cache equals full passes, weight 0 is the search without it,
a wide fused beam reaches the brute-force optimum of the fused score, n-best rescoring re-ranks as the
scores say, and the CLI (n-best JSON Lines, tokenizer mismatch, batch invariance)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
import torch
from support import assert_one_line_error, run_cli, tiny_asr_package, tiny_stack, write_tone
from test_decoding import _attention_log_prob, _ctc_log_prob, random_batch, tiny_model

from seq2seq.core.config import from_dict, to_dict
from seq2seq.core.package import save_package
from seq2seq.core.text import EOS_ID, SOS_ID, UNK_ID, CharTokenizer
from seq2seq.decoding import DecodingConfig, LMScorer, beam_search, build_scorers
from seq2seq.experiments import LMExperimentConfig
from seq2seq.inference.transcribe import Transcriber
from seq2seq.models.lm import LanguageModel, LMModelConfig
from seq2seq.tasks import load_model_package


def tiny_lm(vocab_size: int, seed: int = 0, sharpness: float = 3.0) -> LanguageModel:
    torch.manual_seed(seed)
    model = LanguageModel(LMModelConfig(vocab_size=vocab_size, decoder=tiny_stack(num_layers=2))).eval()
    with torch.no_grad():
        model.output.weight.mul_(sharpness)
    return model


def sharp_lm_package(out_dir: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A random-init, peaky (``tiny_lm``) LM package reading the tokenizer in ``tokenizer_dir``."""
    vocab_size = json.loads((tokenizer_dir / "tokenizer.json").read_text())["symbols"].__len__() + 5
    experiment = from_dict(
        LMExperimentConfig, {"model": LMModelConfig(vocab_size=vocab_size, decoder=tiny_stack(num_layers=2))}
    )
    model = tiny_lm(vocab_size, seed)
    return save_package(out_dir, "lm", to_dict(experiment), model.state_dict(), tokenizer_dir)


@torch.inference_mode()
def test_cached_lm_scores_equal_full_recomputation_under_reordering():
    lm = tiny_lm(12)
    scorer = LMScorer(lm)
    state = scorer.init_state(torch.zeros(2, 1, 1), torch.ones(2))
    torch.manual_seed(1)
    tokens = torch.full((2, 1), SOS_ID)
    for step in range(6):
        scores, state = scorer.score(tokens, state, None)
        full = lm.log_probs(tokens)[:, -1]
        torch.testing.assert_close(scores, full, atol=1e-5, rtol=0)
        rows = torch.randint(0, tokens.shape[0], (3 if step == 0 else tokens.shape[0],))  # expand, reorder
        new = torch.randint(5, 12, (rows.shape[0],))
        state = scorer.select_state(state, rows, new)
        tokens = torch.cat([tokens[rows], new[:, None]], dim=1)
    candidates = torch.tensor([[5, EOS_ID]] * tokens.shape[0])
    gathered, _ = scorer.score(tokens, state, candidates)
    torch.testing.assert_close(gathered, lm.log_probs(tokens)[:, -1].gather(1, candidates), atol=1e-5, rtol=0)


@torch.inference_mode()
def test_lm_weight_zero_is_exactly_the_search_without_lm():
    model, lm = tiny_model(), tiny_lm(12)
    features, lengths = random_batch([120, 90, 60])
    config = DecodingConfig(beam_size=4, ctc_weight=0.3, max_length_ratio=0.5, nbest=3)
    assert "lm" not in build_scorers(model, config, lm)[0]
    plain, fused = (
        beam_search(model, features, lengths, config),
        beam_search(model, features, lengths, config, lm),
    )
    assert [[(h.tokens, h.score) for h in hyps] for hyps in plain] == [
        [(h.tokens, h.score) for h in hyps] for hyps in fused
    ]
    weighted = beam_search(model, features, lengths, DecodingConfig(**{**vars(config), "lm_weight": 2.0}), lm)
    assert [h.tokens for h in weighted[0]] != [h.tokens for h in plain[0]]  # the LM does change the search


def _lm_log_prob(lm, tokens: list[int]) -> float:
    inputs = torch.tensor([[SOS_ID, *tokens]])
    return float(lm.log_probs(inputs)[0].gather(1, torch.tensor([*tokens, EOS_ID])[:, None]).sum())


@pytest.mark.parametrize("lm_weight,length_penalty", [(0.5, 0.0), (1.0, 0.7)])
@torch.inference_mode()
def test_wide_fused_beam_finds_brute_force_optimum(lm_weight, length_penalty):
    model = tiny_model(vocab_size=8, seed=3, sharpness=2.0)  # UNK + 3 content ids + EOS
    lm = tiny_lm(8, seed=5)
    features, lengths = random_batch([48], seed=4)
    memory, memory_lengths = model.encode(features, lengths)
    ctc = model.ctc_log_probs(memory)
    early_stop = "bound" if length_penalty == 0 else "none"
    config = DecodingConfig(
        beam_size=100, ctc_weight=0.3, lm_weight=lm_weight, length_penalty=length_penalty,
        max_length_ratio=3.5 / int(memory_lengths), nbest=5, early_stop=early_stop,
    )  # fmt: skip
    scored = []
    for n in range(4):
        for seq in map(list, itertools.product([UNK_ID, 5, 6, 7], repeat=n)):
            att = _attention_log_prob(model, memory, memory_lengths, seq)
            total = 0.7 * att + 0.3 * _ctc_log_prob(ctc, memory_lengths, seq)
            scored.append((total + lm_weight * _lm_log_prob(lm, seq) + length_penalty * n, seq))
    expected = sorted(scored, key=lambda item: -item[0])[:5]
    found = beam_search(model, features, lengths, config, lm)[0]
    assert [h.tokens for h in found] == [seq for _, seq in expected]
    assert [h.score for h in found] == pytest.approx([score for score, _ in expected], abs=1e-4)
    assert found[0].lm_score == pytest.approx(_lm_log_prob(lm, found[0].tokens), abs=1e-4)


@torch.inference_mode()
def test_rescoring_reorders_the_nbest_list_as_the_scores_say(tmp_path):
    asr = tiny_asr_package(tmp_path / "asr")
    lm_path = sharp_lm_package(tmp_path / "lm", tmp_path / "asr-tokenizer")
    package, lm = load_model_package(asr), load_model_package(lm_path)
    config = DecodingConfig(beam_size=6, ctc_weight=0.3, max_length_ratio=0.5, nbest=6, lm_weight=1.5)
    rescoring = Transcriber(package, config, lm, rescore=True)
    features, lengths = torch.randn(2, 60, 80), torch.tensor([60, 44])
    search = dataclasses.replace(config, lm_weight=0.0)
    found = beam_search(package.model, features, lengths, search)
    reordered = False
    for hyps, decoded in zip(found, rescoring.decode(features, lengths)):
        rescored = rescoring._rescored(hyps)
        assert sorted(h.tokens for h in rescored) == sorted(h.tokens for h in hyps)
        for h in rescored:  # total = search score + weight x LM(sentence + EOS)
            before = next(g.score for g in hyps if g.tokens == h.tokens)
            assert h.lm_score == pytest.approx(_lm_log_prob(lm.model, h.tokens), abs=1e-4)
            assert h.score == pytest.approx(before + 1.5 * h.lm_score, abs=1e-4)
        assert [h.score for h in rescored] == sorted((h.score for h in rescored), reverse=True)
        assert decoded.text == package.tokenizer.decode(rescored[0].tokens)
        reordered |= [h.tokens for h in rescored] != [h.tokens for h in hyps]
    assert reordered


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    asr = tiny_asr_package(root / "asr")
    lm = sharp_lm_package(root / "lm", root / "asr-tokenizer")
    other_tokenizer = root / "other-tokenizer"
    CharTokenizer.build(["abc xyz"]).save(other_tokenizer)
    other = sharp_lm_package(root / "other-lm", other_tokenizer)
    audio = [write_tone(root / f"a{i}.wav", seconds=0.3 + 0.1 * i) for i in range(5)]
    return dict(asr=asr, lm=lm, other=other, audio=audio, root=root)


def test_tokenizer_mismatch_is_one_line_error(packages):
    result = run_cli("transcribe", packages["asr"], *packages["audio"][:1], "--lm", packages["other"])
    assert_one_line_error(result, "tokenizer differs", str(packages["other"]))


def test_cli_nbest_jsonl_has_per_scorer_scores_and_batch_size_does_not_matter(packages):
    common = ["transcribe", packages["asr"], *packages["audio"], "--lm", packages["lm"], "--lm-weight", "0.5"]
    common += ["--beam-size", "4", "--ctc-weight", "0.3", "--nbest", "3", "--output-format", "jsonl"]
    common += ["--length-bonus", "0.5"]  # a bonus with the package's early stop: switched to espnet
    outputs = {}
    for batch in ("1", "8"):
        out = packages["root"] / f"nbest-{batch}.jsonl"
        run_cli(*common, "--batch-size", batch, "--output", out, check=True)
        outputs[batch] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(outputs["1"]) == 5
    for row in outputs["1"]:
        (window,) = row["nbest"]
        assert 1 <= len(window) <= 3
        for entry in window:
            assert set(entry) == {"text", "tokens", "attention", "ctc", "lm", "lexicon", "length", "total"}
            fused = 0.7 * entry["attention"] + 0.3 * entry["ctc"] + 0.5 * entry["lm"] + entry["length"]
            assert entry["total"] == pytest.approx(fused, abs=1e-3)
            assert entry["length"] == pytest.approx(0.5 * entry["tokens"])
        assert row["text"] == window[0]["text"]
    for a, b in zip(outputs["1"], outputs["8"]):
        assert [e["text"] for e in a["nbest"][0]] == [e["text"] for e in b["nbest"][0]]
        assert [e["total"] for e in a["nbest"][0]] == pytest.approx(
            [e["total"] for e in b["nbest"][0]], abs=1e-4
        )


def test_cli_needs_an_lm_for_lm_options(packages):
    result = run_cli("transcribe", packages["asr"], *packages["audio"][:1], "--rescore")
    assert_one_line_error(result, "--lm")


def test_lightning_predict_loop_carries_the_nbest_lists(packages):
    from seq2seq.corpus_decoding import lightning_decoder

    config = DecodingConfig(beam_size=4, ctc_weight=0.3, max_length_ratio=0.5, nbest=3, lm_weight=0.5)
    package, lm = load_model_package(packages["asr"]), load_model_package(packages["lm"])
    transcriber = Transcriber(package, config, lm)
    transcriber.keep_nbest = True
    sources = [(str(path), 0.0, None) for path in packages["audio"][:2]]
    plain = transcriber.decode_sources(sources, batch_size=2)
    through_lightning = transcriber.decode_sources(sources, batch_size=2, decode=lightning_decoder("cpu"))
    assert through_lightning == plain
    assert all(len(windows[0].nbest) >= 1 for windows, _ in plain)
