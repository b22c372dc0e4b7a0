"""The language model task: model equivalences, text data, training, perplexity, packages, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from support import (
    ALPHABET,
    CONFIGS,
    error_lines,
    run_cli,
    tiny_asr_package,
    tiny_lm_overrides,
    tiny_lm_package,
    tiny_stack,
    write_jsonl,
)

from seq2seq.cli import main
from seq2seq.core.config import from_dict
from seq2seq.core.package import PackageError
from seq2seq.core.text import EOS_ID, PAD_ID, SOS_ID
from seq2seq.models.lm import LanguageModel, LMModelConfig, lm_io
from seq2seq.nn.norms import NormConfig
from seq2seq.nn.transformer import TransformerConfig


def tiny_lm(vocab: int = 12, placement: str = "pre", norm: str = "layer", seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    decoder = TransformerConfig(
        num_layers=2, d_model=16, num_heads=2, ffn_dim=32, dropout=0.0, placement=placement,
        norm=NormConfig(kind=norm),
    )  # fmt: skip
    return LanguageModel(LMModelConfig(vocab_size=vocab, decoder=decoder)).eval()


def _tokens(batch: int, length: int, vocab: int = 12, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    body = torch.randint(5, vocab, (batch, length), generator=generator)
    return torch.cat([torch.full((batch, 1), SOS_ID), body], dim=1)


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_lm_shapes_and_cached_incremental_equals_full_pass(placement):
    model = tiny_lm(placement=placement)
    tokens = _tokens(3, 7)
    full = model(tokens)
    assert full.shape == (3, 8, 12)
    cache = model.new_cache()
    steps = [model(tokens[:, :3], cache=cache)]  # a prefix at once, then one token at a time
    assert cache.length == 3
    for t in range(3, 8):
        steps.append(model(tokens[:, t : t + 1], cache=cache))
    assert cache.length == 8
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_lm_cache_select_reorders_rows():
    model = tiny_lm()
    tokens = _tokens(3, 5)
    cache = model.new_cache()
    model(tokens[:, :4], cache=cache)
    order = torch.tensor([2, 0])
    cache.select(order)
    step = model(tokens[order, 4:5], cache=cache)
    torch.testing.assert_close(step, model(tokens[order])[:, 4:5], atol=1e-5, rtol=0)


def test_lm_padding_and_batch_composition_do_not_change_valid_logits():
    model = tiny_lm()
    short, long = _tokens(1, 3, seed=2), _tokens(1, 9, seed=3)
    alone = model(short)
    padded = torch.cat([torch.cat([short, torch.full((1, 6), PAD_ID)], dim=1), long])
    batch = model(padded, torch.tensor([4, 10]))
    torch.testing.assert_close(batch[0, :4], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1], model(long)[0], atol=1e-5, rtol=0)
    garbage = padded.clone()
    garbage[0, 4:] = 7  # other tokens in the padding: valid positions unchanged
    torch.testing.assert_close(model(garbage, torch.tensor([4, 10]))[0, :4], alone[0], atol=1e-5, rtol=0)


def test_lm_io_targets_end_with_eos_and_pad():
    tokens = torch.tensor([[5, 6, 7], [8, PAD_ID, PAD_ID]])
    inputs, targets = lm_io(tokens, torch.tensor([3, 1]))
    assert inputs.tolist() == [[SOS_ID, 5, 6, 7], [SOS_ID, 8, PAD_ID, PAD_ID]]
    assert targets.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]


def test_lm_log_probs_give_no_mass_to_blank_pad_sos():
    model = tiny_lm()
    log_probs = model.log_probs(_tokens(2, 4))
    assert torch.isinf(log_probs[..., [0, PAD_ID, SOS_ID]]).all()
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 5))
    tokens, lengths = torch.tensor([[5, 6, 7], [8, PAD_ID, PAD_ID]]), torch.tensor([3, 1])
    per_token = model.sentence_log_probs(tokens, lengths)
    assert per_token.shape == (2, 4) and (per_token[1, 2:] == 0).all() and (per_token[:, :2] < 0).all()


# ---------------------------------------------------------------------------------------------
# Text data


def test_text_files_and_manifests_are_read_and_bad_lines_reported_with_file_and_line(tmp_path):
    from seq2seq.data.text_corpus import read_sentences

    text = tmp_path / "lm.txt"
    text.write_bytes(b"turn on the lights\n\n  set an alarm  \nbad \xff byte\nplay music\n")
    sentences, problems = read_sentences(text)
    assert sentences == ["turn on the lights", "set an alarm", "play music"]
    assert problems == [f"{text}:4: not UTF-8 (byte 0xff at column 5)"]
    manifest = write_jsonl(
        tmp_path / "dev.jsonl", [{"text": "one two", "audio_filepath": "a.wav"}, "{oops", {"x": 1}]
    )
    sentences, problems = read_sentences(manifest)
    assert sentences == ["one two"]
    assert [p.split(": ", 1)[0] for p in problems] == [f"{manifest}:2", f"{manifest}:3"]
    assert "no 'text' string" in problems[1]


def test_text_dataset_batches_by_length_and_leaves_out_empty_and_long(tmp_path):
    from seq2seq.core.text import CharTokenizer
    from seq2seq.data.text_corpus import TextDataset, collate_text

    tokenizer = CharTokenizer.build([ALPHABET])
    dataset = TextDataset(["ab", "!!!", "abcdef", "a"], tokenizer, max_tokens=4)
    assert (dataset.empty, dataset.too_long, len(dataset), dataset.num_frames) == (1, 1, 2, [3, 2])
    batch = collate_text([dataset[0], dataset[(1, 7)]])
    assert batch.tokens.shape == (2, 2) and batch.token_lengths.tolist() == [2, 1]
    assert batch.tokens[1, 1] == PAD_ID and batch.ids == [0, 1]


# ---------------------------------------------------------------------------------------------
# Learning and perplexity


def test_tiny_lm_loss_falls_and_it_overfits_a_tiny_text():
    from seq2seq.core.text import CharTokenizer
    from seq2seq.data.text_corpus import TextDataset, collate_text
    from seq2seq.experiments import LMExperimentConfig
    from seq2seq.training.lm_module import LMTask

    sentences = ["turn on the lights", "set an alarm for seven", "play some music", "what time is it"]
    tokenizer = CharTokenizer.build(sentences)
    model = LMModelConfig(
        vocab_size=tokenizer.vocab_size, decoder=tiny_stack(num_layers=2, d_model=32, ffn_dim=64)
    )
    task = LMTask(from_dict(LMExperimentConfig, {"model": model}), tokenizer, "unused")
    dataset = TextDataset(sentences, tokenizer)
    batch = collate_text([dataset[i] for i in range(len(dataset))])
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = task.losses(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[0] > math.log(tokenizer.vocab_size) - 0.5  # starts near uniform
    # Everything is memorised but the first character, one of 4 equally likely: that is the floor.
    predicted = int(batch.token_lengths.sum()) + len(sentences)
    floor = len(sentences) * math.log(len(sentences)) / predicted
    assert losses[-1] < floor + 0.02 < losses[0] / 10
    assert task.losses(batch)["accuracy"] >= (predicted - 3) / predicted


def _fixed_scorer(tmp_path, bias: torch.Tensor | None = None):
    """An LM package whose output ignores its input: logits = ``bias`` (zeros: uniform)."""
    from seq2seq.tasks import load_package

    scorer = load_package(tiny_lm_package(tmp_path / "lm", texts=["ab c"]))
    output = scorer.model.output
    torch.nn.init.zeros_(output.weight)
    with torch.no_grad():
        output.bias.copy_(torch.zeros_like(output.bias) if bias is None else bias)
    return scorer


def test_uniform_lm_perplexity_is_the_number_of_emittable_tokens(tmp_path):
    scorer = _fixed_scorer(tmp_path)
    vocab = scorer.tokenizer.vocab_size  # 5 reserved + a, b, c, ▁
    ppl, tokens, problems = scorer.perplexity(["abc", "c b", "", "ax"])
    assert tokens == (3 + 1) + (3 + 1) + (2 + 1)  # each sentence's tokens and its EOS
    assert ppl == pytest.approx(vocab - 3, rel=1e-5)  # BLANK, PAD and SOS are never emitted
    assert problems == ["sentence 3: empty after normalization (left out)",
                        "sentence 4: characters outside the vocabulary ('x') scored as UNK"]  # fmt: skip


def test_perplexity_of_known_probabilities(tmp_path):
    vocab = 5 + 4  # a, b, c, ▁
    bias = torch.zeros(vocab)
    bias[5] = math.log(4.0)  # 'a' four times as likely as each other emittable token
    scorer = _fixed_scorer(tmp_path, bias)
    assert scorer.tokenizer.vocab_size == vocab and scorer.tokenizer.encode("a") == [5]
    emittable = vocab - 3  # EOS, UNK, a, b, c, ▁
    p_a, p_other = 4 / (4 + emittable - 1), 1 / (4 + emittable - 1)
    log_probs = scorer.log_prob(["aa", "b"])
    assert log_probs[0] == pytest.approx(2 * math.log(p_a) + math.log(p_other), rel=1e-5)
    assert log_probs[1] == pytest.approx(2 * math.log(p_other), rel=1e-5)
    ppl, tokens, _ = scorer.perplexity(["aa", "b"])
    assert tokens == 5 and ppl == pytest.approx(math.exp(-sum(log_probs) / 5), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# The task: train, resume, export, load, evaluate


SENTENCES = ["turn on the lights", "set an alarm for seven", "play some music", "what time is it"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A 6-step run of configs/lm/small.yaml (shrunk) sharing a tiny ASR package's tokenizer, resumed to
    8 steps, exported as the average of its 2 best checkpoints."""
    from seq2seq.experiments import load_experiment
    from seq2seq.tasks import export, train

    tmp = tmp_path_factory.mktemp("lm")
    train_text = tmp / "train.txt"
    train_text.write_text("\n".join(SENTENCES * 10) + "\n")
    dev = write_jsonl(
        tmp / "dev.jsonl", [{"text": s, "audio_filepath": "x.wav", "duration": 1.0} for s in SENTENCES]
    )
    asr = tiny_asr_package(tmp / "asr", texts=[ALPHABET])
    overrides = tiny_lm_overrides(train_text, dev, tmp / "run", **{"tokenizer.source": asr})
    run = train(load_experiment(CONFIGS / "lm" / "small.yaml", overrides))
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    train(load_experiment(CONFIGS / "lm" / "small.yaml", overrides + ["--trainer.max_steps=8"]))
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    package = export(run, tmp / "pkg", average=2)
    return {"tmp": tmp, "asr": asr, "run": run, "package": package, "steps": (first, resumed)}


def test_lm_run_resumes_shares_the_asr_tokenizer_and_exports_a_loadable_package(lm_run):
    from seq2seq.inference.lm import LanguageModelScorer
    from seq2seq.tasks import load_package

    assert lm_run["steps"] == (6, 8)
    shared = (lm_run["asr"] / "tokenizer" / "tokenizer.json").read_text()
    assert (lm_run["run"] / "tokenizer" / "tokenizer.json").read_text() == shared
    assert (lm_run["package"] / "tokenizer" / "tokenizer.json").read_text() == shared
    scorer = load_package(lm_run["package"])
    asr_vocab = load_package(lm_run["asr"]).package.tokenizer.vocab_size
    assert isinstance(scorer, LanguageModelScorer) and scorer.model.config.vocab_size == asr_vocab
    ppl, tokens, problems = scorer.perplexity(SENTENCES)
    assert tokens == sum(len(s) + 1 for s in SENTENCES) and not problems
    assert 1.0 < ppl < scorer.model.config.vocab_size - 3  # learnt something in 8 steps: below uniform


def test_evaluate_prints_perplexity_writes_jsonl_and_reports_a_bad_line(lm_run, tmp_path):
    from seq2seq.tasks import load_package

    text = tmp_path / "eval.txt"
    text.write_bytes(
        ("\n".join(SENTENCES[:2]) + "\n").encode() + b"caf\xe9\n" + SENTENCES[2].encode() + b"\n"
    )
    out = tmp_path / "scores.jsonl"
    result = run_cli("evaluate", lm_run["package"], text, "--out", out)
    assert result.returncode == 1, result.stderr  # a line was left out, and said so
    assert error_lines(result.stderr) == [f"error: {text}:3: not UTF-8 (byte 0xe9 at column 4)"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == [SENTENCES[0], SENTENCES[1], SENTENCES[2]]
    ppl, tokens, _ = load_package(lm_run["package"]).perplexity([r["text"] for r in rows])
    assert f"tokens {tokens}  perplexity {ppl:.3f}" in result.stdout
    assert sum(r["tokens"] for r in rows) == tokens


# ---------------------------------------------------------------------------------------------
# Bad LM packages and text: one line each


def _break(package, damage: str) -> None:
    config = package / "config.json"
    meta = json.loads(config.read_text())
    match damage:
        case "truncated weights":
            weights = package / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        case "another task's config":
            config.write_text(json.dumps({**meta, "task": "asr"}))
        case "format version":
            config.write_text(json.dumps({**meta, "format": 99}))
        case "weights of another shape":
            meta["experiment"]["model"]["decoder"]["num_layers"] = 3
            config.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, words",
    [
        ("truncated weights", ["model.safetensors", "cannot read weights"]),
        ("another task's config", ["config.json", "data.max_tokens: unknown field"]),
        ("format version", ["config.json", "package format 99"]),
        ("weights of another shape", ["model.safetensors", "missing from the package"]),
    ],
)
def test_broken_lm_package_is_one_line_error(tmp_path, capsys, damage, words):
    package = tiny_lm_package(tmp_path / "lm")
    _break(package, damage)
    text = tmp_path / "t.txt"
    text.write_text("abc\n")
    status, _, stderr = _main(capsys, "evaluate", package, text)
    assert status == 2 and len(error_lines(stderr)) == 1, stderr
    assert all(word in stderr for word in words), stderr


def _main(capsys, *args) -> tuple[int, str, str]:
    """``seq2seq ARGS`` in this process (no interpreter start-up): exit status, stdout, stderr."""
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def test_an_asr_package_is_not_a_language_model_and_a_bad_tokenizer_source_is_named(tmp_path):
    from seq2seq.experiments import load_experiment
    from seq2seq.inference.lm import LanguageModelScorer
    from seq2seq.tasks import load_model_package, train

    asr = tiny_asr_package(tmp_path / "asr")
    with pytest.raises(PackageError, match="asr package is not a language model"):
        LanguageModelScorer(load_model_package(asr))
    text = tmp_path / "t.txt"
    text.write_text("abc\n")
    overrides = tiny_lm_overrides(text, text, tmp_path / "run", **{"tokenizer.source": tmp_path})
    with pytest.raises(PackageError, match=f"{tmp_path}/tokenizer: no tokenizer.json"):
        train(load_experiment(CONFIGS / "lm" / "small.yaml", overrides))


# ---------------------------------------------------------------------------------------------
# LM training text from the sentence generator


def test_prepare_lm_text_writes_count_sentences_and_none_of_the_excluded(tmp_path, capsys):
    from seq2seq.data.synthetic.lm_text import CHUNK, HELD_OUT_SHARE
    from seq2seq.data.synthetic.sentences import generate_sentences

    first_chunk = generate_sentences(CHUNK, 5 * 1_000_003, True, None, HELD_OUT_SHARE)  # seed 5's first draw
    held_out = set(first_chunk[:20])
    held = write_jsonl(tmp_path / "test.jsonl", [{"text": s.upper()} for s in held_out])  # case is ignored
    out = tmp_path / "lm" / "text.txt"
    status, stdout, _ = _main(
        capsys, "prepare", "lm-text", out, "--count", 300, "--seed", 5, "--exclude", held
    )
    assert status == 0
    written = out.read_text().splitlines()
    assert written == [s for s in first_chunk if s not in held_out][:300] and not set(written) & held_out
    dropped = sum(first_chunk.count(s) for s in held_out)  # every draw of one is counted
    assert dropped >= 20 and f"lm text: 300 sentences ({dropped} drawn sentences excluded)" in stdout
    assert len({s.split()[0] for s in written}) > 20  # many patterns, not one


def test_prepare_lm_text_of_training_patterns_holds_no_held_out_phrasing(tmp_path, capsys):
    from seq2seq.data.synthetic.lm_text import CHUNK, HELD_OUT_SHARE
    from seq2seq.data.synthetic.sentences import generate_sentences

    count = CHUNK + 2000  # into the second chunk, which `all` draws from the held-out families
    texts = {}
    for patterns in ("all", "train"):
        out = tmp_path / f"{patterns}.txt"
        status, _, _ = _main(
            capsys, "prepare", "lm-text", out, "--count", count, "--seed", 2, "--patterns", patterns
        )
        assert status == 0
        texts[patterns] = out.read_text().splitlines()
    second_train = generate_sentences(CHUNK, 2 * 1_000_003 + 1, True, None, HELD_OUT_SHARE)
    second_held_out = generate_sentences(CHUNK, 2 * 1_000_003 + 1, False, None, HELD_OUT_SHARE)
    assert texts["train"][:CHUNK] == texts["all"][:CHUNK]  # the first chunk is training patterns either way
    assert texts["train"][CHUNK:] == second_train[:2000]
    assert texts["all"][CHUNK:] == second_held_out[:2000]
    pin = "my pin is "  # a held-out family's phrasing (grammar.py: Family("pin", ..., False, ...))
    assert sum(s.startswith(pin) for s in texts["all"]) > 0
    assert sum(s.startswith(pin) for s in texts["train"]) == 0
