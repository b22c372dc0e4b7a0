"""``train --init-from PACKAGE``: a run starts from a package's weights, statistics and tokenizer; a model
or tokenizer that does not fit is a one-line error naming the tensors or folders, before any training."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from support import CONFIGS, run_cli, tiny_asr_overrides

from seq2seq.core.package import PackageError, read_weights
from seq2seq.experiments import load_experiment
from seq2seq.tasks import export, train


class RecordStart(L.Callback):
    """The model's tensors when fitting starts, before the first optimizer step."""

    def on_fit_start(self, trainer, module):
        self.state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}


@pytest.fixture(scope="module")
def package(tiny_corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("source_run")
    train(load_experiment(CONFIGS / "asr" / "small.yaml", tiny_asr_overrides(tiny_corpus, run)))
    return export(run, run / "package")


@pytest.mark.slow
def test_a_run_starts_from_the_package_weights_statistics_and_tokenizer(package, tiny_corpus, tmp_path):
    start = RecordStart()
    overrides = tiny_asr_overrides(tiny_corpus, tmp_path / "run", **{"trainer.max_steps": 2})
    run = train(load_experiment(CONFIGS / "asr" / "small.yaml", overrides), [start], init_from=package)
    weights = read_weights(package)
    assert set(start.state) == set(weights)
    for name, tensor in weights.items():
        assert torch.equal(start.state[name], tensor), name  # feature statistics included
    assert (run / "tokenizer" / "tokenizer.json").read_text() == (
        package / "tokenizer" / "tokenizer.json"
    ).read_text()
    # The fine-tuned run trained: its weights moved away from the package's.
    tuned = export(run, tmp_path / "tuned")
    assert not torch.equal(read_weights(tuned)["output.weight"], weights["output.weight"])


def test_a_model_of_another_shape_is_refused_naming_the_tensors(package, tiny_corpus, tmp_path):
    overrides = tiny_asr_overrides(tiny_corpus, tmp_path / "run", **{"model.encoder.ffn_dim": 48})
    with pytest.raises(
        PackageError, match=r"tensors do not fit the run's model: encoder\.layers\.0\.feed_forward"
    ):
        train(load_experiment(CONFIGS / "asr" / "small.yaml", overrides), init_from=package)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


def test_a_run_with_another_tokenizer_is_refused_through_the_cli(package, tiny_corpus, tmp_path):
    tokenizer = tmp_path / "run" / "tokenizer"
    tokenizer.mkdir(parents=True)
    (tokenizer / "tokenizer.json").write_text('{"kind": "char", "symbols": ["a"]}')
    overrides = tiny_asr_overrides(tiny_corpus, tmp_path / "run")
    result = run_cli(
        "train", "-c", str(CONFIGS / "asr" / "small.yaml"), "--init-from", str(package), *overrides
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "already has a tokenizer that differs from" in result.stderr
