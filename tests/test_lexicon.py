"""Lexicon decoding: the tree's increments sum to the words' unigram log-probabilities (and the OOV
penalty), its state survives beam reordering, weight 0 is the search without it, a wide beam finds the
brute-force optimum of the combined score, and the word list, tokenizer and CLI errors are one line."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from support import assert_one_line_error, run_cli, tiny_asr_package, write_tone
from test_decoding import _attention_log_prob, _ctc_log_prob, random_batch, tiny_model

from seq2seq.core.text import EOS_ID, CharTokenizer, SentencePieceTokenizer
from seq2seq.decoding import DecodingConfig, beam_search, build_scorers
from seq2seq.decoding.lexicon import LexiconScorer, LexiconTrie
from seq2seq.inference.lexicon import WordList, spell
from seq2seq.inference.transcribe import Transcriber
from seq2seq.tasks import load_model_package

A, B, SPACE = 5, 6, 7  # a vocabulary of 8 ids: 5 reserved, letters A and B, the space
WORDS = {(A,): 3.0, (A, B): 1.0, (B, B): 4.0}  # weights: p = 3/8, 1/8, 4/8
PENALTY = 6.0


def tiny_trie() -> LexiconTrie:
    return LexiconTrie.build(list(WORDS.items()), [A, B], SPACE, 8)


def direct_log_prob(tokens: list[int], penalty: float = PENALTY) -> float:
    """The lexicon score of a whole sentence + EOS, computed word by word."""
    total = sum(WORDS.values())
    words = [tuple(w) for w in _split(tokens)]
    if any(not w for w in words[:-1]) or (len(words) > 1 and not words[0]):
        return -math.inf  # a space at the start or two spaces in a row: an empty word
    return sum(math.log(WORDS[w] / total) if w in WORDS else -penalty for w in words if w)


def _split(tokens: list[int]) -> list[list[int]]:
    words: list[list[int]] = [[]]
    for t in tokens:
        if t == SPACE:
            words.append([])
        else:
            words[-1].append(t)
    return words


def walk(scorer: LexiconScorer, tokens: list[int]) -> float:
    state = scorer.init_state(torch.zeros(1, 1, 1), torch.ones(1))
    total = 0.0
    for token in [*tokens, EOS_ID]:
        scores, state = scorer.score(None, state, None)
        total += float(scores[0, token])
        state = scorer.select_state(state, torch.tensor([0]), torch.tensor([token]))
    return total


@pytest.mark.parametrize(
    "tokens",
    [
        [A],
        [A, B],
        [B, B, SPACE, A],
        [A, SPACE, A, B, SPACE, B, B],
        [B],
        [B, A, SPACE, A],
        [A, A, B],
        [A, SPACE],
    ],
)
def test_increments_sum_to_the_word_log_probabilities_and_the_oov_penalty(tokens):
    assert walk(LexiconScorer(tiny_trie(), PENALTY), tokens) == pytest.approx(
        direct_log_prob(tokens), abs=1e-6
    )


def test_empty_words_are_impossible_and_no_increment_is_positive():
    scorer = LexiconScorer(tiny_trie(), PENALTY)
    assert walk(scorer, [SPACE, A]) == -math.inf
    assert walk(scorer, [A, SPACE, SPACE, A]) == -math.inf
    assert walk(scorer, []) == 0.0  # the empty sentence: the other scorers decide
    state = scorer.init_state(torch.zeros(1, 1, 1), torch.ones(1))
    for token in [B, B, SPACE, A, A, B, B]:  # through listed, unlisted and partial words
        scores, state = scorer.score(None, state, None)
        assert (scores <= 0).all()
        state = scorer.select_state(state, torch.tensor([0]), torch.tensor([token]))


@torch.inference_mode()
def test_state_follows_reordered_and_expanded_rows():
    scorer = LexiconScorer(tiny_trie(), PENALTY)
    torch.manual_seed(0)
    state = scorer.init_state(torch.zeros(2, 1, 1), torch.ones(2))
    sequences: list[list[int]] = [[], []]
    totals = torch.zeros(2, dtype=torch.float64)
    for step in range(7):
        scores, state = scorer.score(None, state, None)
        rows = torch.randint(0, len(sequences), (3 if step == 0 else len(sequences),))
        new = torch.tensor([[A, B, SPACE][i] for i in torch.randint(0, 3, (rows.shape[0],))])
        totals = totals[rows] + scores[rows, new].double()
        sequences = [sequences[r] + [int(t)] for r, t in zip(rows.tolist(), new)]
        state = scorer.select_state(state, rows, new)
    final, _ = scorer.score(None, state, torch.full((len(sequences), 1), EOS_ID))
    for seq, total, end in zip(sequences, totals.tolist(), final[:, 0].tolist()):
        assert total + end == pytest.approx(direct_log_prob(seq), abs=1e-5)


@torch.inference_mode()
def test_lexicon_weight_zero_is_exactly_the_search_without_it():
    model, trie = tiny_model(vocab_size=8), tiny_trie()
    features, lengths = random_batch([120, 90, 60])
    config = DecodingConfig(beam_size=4, ctc_weight=0.3, max_length_ratio=0.5, nbest=3)
    assert "lexicon" not in build_scorers(model, config, lexicon=trie)[0]
    plain = beam_search(model, features, lengths, config)
    unweighted = beam_search(model, features, lengths, config, lexicon=trie)
    assert [[(h.tokens, h.score) for h in hyps] for hyps in plain] == [
        [(h.tokens, h.score) for h in hyps] for hyps in unweighted
    ]
    weighted = beam_search(
        model, features, lengths, DecodingConfig(**{**vars(config), "lexicon_weight": 2.0}), lexicon=trie
    )
    assert [h.tokens for h in weighted[0]] != [h.tokens for h in plain[0]]


@pytest.mark.parametrize("weight,penalty", [(0.7, PENALTY), (1.5, 200.0)])
@torch.inference_mode()
def test_wide_beam_finds_the_brute_force_optimum_of_the_combined_score(weight, penalty):
    model = tiny_model(vocab_size=8, seed=3, sharpness=2.0)
    features, lengths = random_batch([48], seed=4)
    memory, memory_lengths = model.encode(features, lengths)
    ctc = model.ctc_log_probs(memory)
    config = DecodingConfig(
        beam_size=200, ctc_weight=0.3, lexicon_weight=weight, oov_penalty=penalty,
        max_length_ratio=4.5 / int(memory_lengths), nbest=5,
    )  # fmt: skip
    scored = []
    for n in range(5):
        for seq in map(list, itertools.product([A, B, SPACE], repeat=n)):
            lexicon = direct_log_prob(seq, penalty)
            if lexicon == -math.inf:
                continue
            att = _attention_log_prob(model, memory, memory_lengths, seq)
            total = 0.7 * att + 0.3 * _ctc_log_prob(ctc, memory_lengths, seq) + weight * lexicon
            scored.append((total, seq))
    expected = sorted(scored, key=lambda item: -item[0])[:5]
    found = beam_search(model, features, lengths, config, lexicon=tiny_trie())[0]
    assert [h.tokens for h in found] == [seq for _, seq in expected]
    assert [h.score for h in found] == pytest.approx([score for score, _ in expected], abs=1e-4)
    assert found[0].scores["lexicon"] == pytest.approx(direct_log_prob(found[0].tokens, penalty), abs=1e-5)
    if penalty > 100:  # a hard lexicon: every word of every hypothesis is listed
        assert all(tuple(w) in WORDS for h in found for w in _split(h.tokens) if w)


def test_spelling_uses_the_tokenizer_and_skips_what_it_cannot_spell(tmp_path):
    tokenizer = CharTokenizer.build(["ab ba"])
    words = WordList("", (("ab", 2.0), ("Ba", 1.0), ("abc", 5.0), ("a b", 1.0)))
    spelled = spell(words, tokenizer)
    assert spelled.skipped == ("abc", "a b")  # 'c' is not in the vocabulary; a word holds no space
    assert spelled.trie.words == 2  # "Ba" is normalised to "ba"
    scorer = LexiconScorer(spelled.trie, 10.0)
    assert walk(scorer, tokenizer.encode("ba ab")) == pytest.approx(math.log(1 / 3) + math.log(2 / 3))
    assert tokenizer.unknown_counts == {}  # spelling does not count the list's characters as unknown


def test_spelling_refuses_tokenizers_that_do_not_spell_letters(tmp_path):
    texts = ["the cat sat on the mat"] * 20
    pieces = SentencePieceTokenizer.train(texts, vocab_size=20, model_type="unigram")
    with pytest.raises(ValueError, match="character tokenizer.*SentencePieceTokenizer"):
        spell(WordList("words.txt", (("cat", 1.0),)), pieces)


@pytest.mark.parametrize(
    "text,problem",
    [("cat 2\ndog x\n", "words.txt:2: the weight 'x' is not a number"),
     ("cat 1 2\n", "words.txt:1: expected 'word' or 'word weight'"),
     ("cat -1\n", "must be positive"),
     ("\n\n", "holds no word"),
     ("cat\ncaf\xe9 2\n", "words.txt:2: not UTF-8")],
)  # fmt: skip
def test_word_list_errors_name_the_file_and_line(tmp_path, text, problem):
    path = tmp_path / "words.txt"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=problem):
        WordList.read(path)


def test_word_list_reads_weights_and_merges_repeats(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("cat\t2\ndog\n\ncat 0.5\n")
    assert WordList.read(path).entries == (("cat", 2.5), ("dog", 1.0))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = tmp_path_factory.mktemp("lexicon")
    asr = tiny_asr_package(root / "asr", texts=["ab ba bad"])  # letters a, b, d and the space
    words = root / "words.txt"
    words.write_text("a 5\nab 2\nba 1\nbad 1\n")
    audio = [write_tone(root / f"a{i}.wav", seconds=0.3 + 0.1 * i) for i in range(5)]
    return dict(asr=asr, words=words, audio=audio, root=root)


def test_cli_nbest_carries_the_lexicon_score_and_batch_size_does_not_matter(package):
    common = ["transcribe", package["asr"], *package["audio"], "--lexicon", package["words"]]
    common += ["--lexicon-weight", "0.8", "--oov-penalty", "300", "--beam-size", "4", "--ctc-weight", "0.3"]
    common += ["--nbest", "3", "--output-format", "jsonl"]
    outputs = {}
    for batch in ("1", "8"):
        out = package["root"] / f"nbest-{batch}.jsonl"
        run_cli(*common, "--batch-size", batch, "--output", out, check=True)
        outputs[batch] = [json.loads(line) for line in out.read_text().splitlines()]
    listed = {"a", "ab", "ba", "bad"}
    for row in outputs["1"]:
        for entry in row["nbest"][0]:
            combined = (
                0.7 * entry["attention"] + 0.3 * entry["ctc"] + 0.8 * entry["lexicon"] + entry["length"]
            )
            assert entry["total"] == pytest.approx(combined, abs=1e-3)
            assert set(entry["text"].split()) <= listed  # the penalty keeps the search on the list
    for a, b in zip(outputs["1"], outputs["8"]):
        assert [e["text"] for e in a["nbest"][0]] == [e["text"] for e in b["nbest"][0]]


def test_transcriber_with_lexicon_changes_only_what_it_says(package):
    plain = Transcriber(load_model_package(package["asr"]), DecodingConfig(beam_size=3, max_length_ratio=0.5))
    features, lengths = torch.randn(2, 60, 80), torch.tensor([60, 44])
    with_list = plain.with_lexicon(WordList("", (("ab", 1.0), ("ba", 1.0))), 1.0, 500.0)
    assert with_list.config.lexicon_weight == 1.0 and with_list.config.oov_penalty == 500.0
    assert with_list.with_decoding(beam_size=4).lexicon is with_list.lexicon  # kept by other changes
    assert all(set(text.split()) <= {"ab", "ba"} for text in with_list(features, lengths))
    assert with_list.with_lexicon(None)(features, lengths) == plain(features, lengths)


def test_cli_lexicon_errors_are_one_line(package):
    one = package["audio"][:1]
    assert_one_line_error(run_cli("transcribe", package["asr"], *one, "--oov-penalty", "5"), "--lexicon")
    missing = package["root"] / "missing.txt"
    assert_one_line_error(run_cli("transcribe", package["asr"], *one, "--lexicon", missing), str(missing))
    bad = package["root"] / "bad.txt"
    bad.write_text("a 1\nb zero\n")
    assert_one_line_error(run_cli("evaluate", package["asr"], str(bad), "--lexicon", bad), "bad.txt:2")


def test_prepare_lexicon_writes_frequent_english_words_first(tmp_path):
    out = tmp_path / "lexicon.txt"
    result = run_cli("prepare", "lexicon", out, "--size", "5000", check=True)
    assert "5000 words" in result.stdout
    entries = WordList.read(out).entries
    assert len(entries) == 5000
    assert [w for w, _ in entries[:3]] == ["the", "to", "and"]
    weights = [weight for _, weight in entries]
    assert weights == sorted(weights, reverse=True)
    assert {"don't", "weather"} <= {w for w, _ in entries}


def test_export_includes_the_word_list_and_the_package_searches_over_it(package):
    root, audio = package["root"], package["audio"]
    with_list = root / "with-list"
    run_cli("export", package["asr"], with_list, "--lexicon", package["words"], check=True)
    assert (with_list / "lexicon.txt").read_text() == package["words"].read_text()
    copy = root / "copy"
    run_cli("export", with_list, copy, check=True)
    assert (copy / "lexicon.txt").is_file()  # a copied package keeps its word list

    loaded = load_model_package(copy)
    searching = Transcriber(loaded, DecodingConfig(beam_size=4, lexicon_weight=0.8, oov_penalty=300.0))
    assert searching.lexicon is not None and searching.lexicon.trie.words == 4
    features, lengths = torch.randn(3, 60, 80), torch.tensor([60, 44, 52])
    assert all(set(text.split()) <= {"a", "ab", "ba", "bad"} for text in searching(features, lengths))
    assert Transcriber(loaded).lexicon is None  # the package's config weight is 0: the list is not read

    def transcripts(model, *flags):
        out = root / "out.jsonl"
        run_cli("transcribe", model, *audio, "--output-format", "jsonl", "--output", out, *flags, check=True)
        return [json.loads(line)["text"] for line in out.read_text().splitlines()]

    plain = transcripts(package["asr"], "--beam-size", "4")
    assert transcripts(copy, "--beam-size", "4") == plain
    assert transcripts(copy, "--beam-size", "4", "--lexicon-weight", "0") == plain
    listed = transcripts(copy, "--beam-size", "4", "--lexicon-weight", "0.8", "--oov-penalty", "300")
    assert all(set(text.split()) <= {"a", "ab", "ba", "bad"} for text in listed)


def test_export_refuses_a_word_list_it_cannot_use_and_writes_nothing(package, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("ab 1\nba -2\n")
    out = tmp_path / "refused"
    assert_one_line_error(run_cli("export", package["asr"], out, "--lexicon", bad), "bad.txt:2")
    assert not out.exists()


def test_a_package_whose_config_weights_its_list_uses_it_by_default_but_not_for_the_tts_round_trip(package):
    from seq2seq.evaluation.tts import transcribe as round_trip

    weighted = package["root"] / "weighted"
    run_cli("export", package["asr"], weighted, "--lexicon", package["words"], check=True)
    config = json.loads((weighted / "config.json").read_text())
    config["experiment"]["decoding"].update(beam_size=4, lexicon_weight=0.8, oov_penalty=300.0)
    (weighted / "config.json").write_text(json.dumps(config))
    loaded = load_model_package(weighted)
    assert Transcriber(loaded).lexicon_trie is not None  # the package's own list, at its saved weight
    out = package["root"] / "default.jsonl"
    run_cli(
        "transcribe", weighted, *package["audio"], "--output-format", "jsonl", "--output", out, check=True
    )
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert all(set(text.split()) <= {"a", "ab", "ba", "bad"} for text in texts)
    torch.manual_seed(0)
    waves = [torch.randn(4000) * 0.1, torch.randn(6000) * 0.1]
    assert round_trip(loaded, waves) == _greedy_transcripts(loaded, waves)  # greedy, without the list


def _greedy_transcripts(package, waves):
    from seq2seq.core.audio import LogMel

    logmel = LogMel(package.config.data.features)
    ratio = package.config.decoding.max_length_ratio
    greedy = Transcriber(package, DecodingConfig(beam_size=1, ctc_weight=0.0, max_length_ratio=ratio))
    assert greedy.lexicon_trie is None
    return [greedy(f[None], torch.tensor([f.shape[0]]))[0] for f in (logmel.single(w) for w in waves)]
