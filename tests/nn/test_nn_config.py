"""Invalid configurations fail early with a one-line ValueError naming the field (and the valid choices)."""

from __future__ import annotations

import pytest

from seq2seq.core.config import from_dict
from seq2seq.nn.frontends import Conv2dSubsampling
from seq2seq.nn.linear import LINEAR_NORMS
from seq2seq.nn.norms import NORM_KINDS, NormConfig, build_norm
from seq2seq.nn.transformer import TransformerConfig

CASES = {
    "heads do not divide d_model": (
        lambda: TransformerConfig(d_model=30, num_heads=4),
        ["d_model", "num_heads"],
    ),
    "negative d_model": (lambda: TransformerConfig(d_model=-16), ["d_model"]),
    "zero heads": (lambda: TransformerConfig(num_heads=0), ["num_heads"]),
    "negative layers": (lambda: TransformerConfig(num_layers=-1), ["num_layers"]),
    "negative ffn": (lambda: TransformerConfig(ffn_dim=-5), ["ffn_dim"]),
    "dropout of 1": (lambda: TransformerConfig(dropout=1.0), ["dropout"]),
    "negative attention dropout": (lambda: TransformerConfig(attention_dropout=-0.1), ["attention_dropout"]),
    "unknown norm kind": (lambda: NormConfig(kind="batchnorm"), ["norm.kind", *NORM_KINDS]),
    "unknown norm kind from YAML": (
        lambda: from_dict(TransformerConfig, {"norm": {"kind": "weight"}}),
        ["norm.kind", *NORM_KINDS],
    ),
    "unknown placement": (lambda: TransformerConfig(placement="sandwich"), ["placement", "pre", "post"]),
    "unknown activation": (
        lambda: TransformerConfig(activation="tanh"),
        ["activation", "relu", "gelu", "swish"],
    ),
    "unknown linear norm": (lambda: TransformerConfig(linear_norm="batch"), ["linear_norm", *LINEAR_NORMS]),
    "group norm groups do not divide d_model": (
        lambda: TransformerConfig(d_model=24, num_heads=4, norm=NormConfig(kind="group", groups=5)),
        ["groups", "5", "24"],
    ),
    "group norm groups from YAML": (
        lambda: from_dict(TransformerConfig, {"d_model": 32, "norm": {"kind": "group", "groups": 6}}),
        ["groups", "6", "32"],
    ),
    "group norm built directly": (
        lambda: build_norm(NormConfig(kind="group", groups=3), 16),
        ["groups", "3", "16"],
    ),
    "zero groups": (lambda: NormConfig(kind="group", groups=0), ["groups"]),
    "negative eps": (lambda: NormConfig(eps=-1e-5), ["eps"]),
    "momentum above 1": (lambda: NormConfig(momentum=1.5), ["momentum"]),
    "renorm r_max below 1": (lambda: NormConfig(renorm_r_max=0.5), ["renorm_r_max"]),
    "unknown subsampling": (lambda: Conv2dSubsampling(80, 16, factor=5), ["subsampling", "4", "6", "8"]),
    "too few feature bins": (lambda: Conv2dSubsampling(6, 16, factor=8, channels=2), ["input_dim"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_config_raises_one_line_value_error(case):
    build, words = CASES[case]
    with pytest.raises(ValueError) as error:
        build()
    message = str(error.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"


def test_valid_configs_build():
    data = {"d_model": 24, "num_heads": 4, "norm": {"kind": "group", "groups": 6}, "num_layers": 0}
    config = from_dict(TransformerConfig, data)
    assert isinstance(config.norm, NormConfig) and config.norm.groups == 6
    for kind in NORM_KINDS:
        build_norm(NormConfig(kind=kind, groups=4), 16)


def test_configs_are_frozen():
    config = TransformerConfig()
    with pytest.raises(AttributeError):
        config.d_model = 3
