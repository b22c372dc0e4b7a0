"""Configs: YAML and overrides fill typed dataclasses; bad values are one-line errors naming the field."""

from __future__ import annotations

import pytest
from support import CONFIGS

from seq2seq.core.config import ConfigError, parse_overrides, to_dict
from seq2seq.experiments import ASRExperimentConfig, load_experiment


def test_small_config_loads_with_typed_overrides():
    config = load_experiment(
        CONFIGS / "asr" / "small.yaml",
        ["--model.encoder.norm.kind=batch", "--trainer.max_steps", "7", "--ctc_weight=0.5"],
    )
    assert isinstance(config, ASRExperimentConfig)
    assert config.model.encoder.norm.kind == "batch"
    assert config.model.decoder.norm.kind == "layer"  # encoder and decoder are independent
    assert config.trainer.max_steps == 7 and config.ctc_weight == 0.5
    assert isinstance(config.optim.betas, tuple)


def test_round_trip_through_plain_data():
    config = load_experiment(CONFIGS / "asr" / "small.yaml")
    from seq2seq.core.config import from_dict

    assert from_dict(ASRExperimentConfig, to_dict(config)) == config


@pytest.mark.parametrize(
    "override, words",
    [
        (["--model.encoder.norm.kind=batchy"], ["model.encoder.norm.kind", "layer", "batch_renorm"]),
        (["--model.encoder.num_heads=5"], ["d_model=144", "num_heads=5"]),
        (["--model.encoder.num_layers=-1"], ["num_layers"]),
        (["--trainer.max_steps=ten"], ["trainer.max_steps", "int"]),
        (["--model.encoder.placement=middle"], ["placement", "pre", "post"]),
        (["--model.encoder.layers=3"], ["unknown field", "num_layers"]),
        (["--ctc_weight=1.5"], ["ctc_weight"]),
        (["--model.subsampling=5"], ["subsampling", "4, 6, 8"]),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_field(override, words):
    with pytest.raises(ConfigError) as error:
        load_experiment(CONFIGS / "asr" / "small.yaml", override)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_override_syntax():
    assert parse_overrides(["--a.b=1", "--a.c", "[1, 2]", "--d=true"]) == {
        "a": {"b": 1, "c": [1, 2]},
        "d": True,
    }
    with pytest.raises(ConfigError):
        parse_overrides(["a.b=1"])
    with pytest.raises(ConfigError):
        parse_overrides(["--a.b"])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_experiment(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path):
    load_experiment(path, [])


def test_the_conformer_g2p_config_builds_a_conformer_whose_convolutions_use_layer_norm():
    from seq2seq.models.text2text import Text2TextModel
    from seq2seq.nn.conformer import ConformerEncoder

    config = load_experiment(CONFIGS / "g2p" / "cmudict_conformer.yaml", [])
    model = Text2TextModel(config.model)
    assert isinstance(model.encoder, ConformerEncoder)
    assert not any(hasattr(m, "running_var") for m in model.modules())  # no batch statistics to drift
