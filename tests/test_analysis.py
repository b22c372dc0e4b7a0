"""The landscape / internal covariate shift probes: numbers against direct computations, no side effects."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from seq2seq.core.audio import GlobalCMVN
from seq2seq.core.config import ConfigError
from seq2seq.experiments import load_experiment
from seq2seq.models.asr import ASRModel
from seq2seq.nn.norms import MaskedBatchNorm, NormConfig, PowerNorm
from seq2seq.training.landscape import layer_groups, probe, statistics_gap, summary
from tests.support import CONFIGS, tiny_asr_config, tiny_asr_overrides

LR, SCALES = 0.05, (0.5, 1.0, 2.0, 4.0)


def tiny_network() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 2))
    return net, torch.randn(16, 4), torch.randn(16, 2)


def direct_gradient(net, names, values, x, y):
    """Loss and gradient of the MSE at the weights ``values`` (a plain functional call)."""
    values = [v.detach().clone().requires_grad_(True) for v in values]
    loss = F.mse_loss(functional_call(net, dict(zip(names, values)), (x,)), y)
    return float(loss.detach()), [g.detach() for g in torch.autograd.grad(loss, values)]


def test_probe_matches_a_direct_computation_on_a_linear_network():
    net, x, y = tiny_network()
    names = [n for n, _ in net.named_parameters()]
    x0 = [p.detach().clone() for p in net.parameters()]
    result = probe(net, lambda: F.mse_loss(net(x), y), LR, SCALES)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), x0))  # weights put back
    loss0, g0 = direct_gradient(net, names, x0, x, y)
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])  # noqa: E731
    assert result["loss"] == pytest.approx(loss0, rel=1e-6)
    losses, changes, ratios = [], [], []
    for s in SCALES:
        moved = [w - LR * s * g for w, g in zip(x0, g0)]
        loss, grad = direct_gradient(net, names, moved, x, y)
        losses.append(loss)
        changes.append(float((flat(grad) - flat(g0)).norm()))
        ratios.append(changes[-1] / float((flat(moved) - flat(x0)).norm()))
    assert result["loss_min"] == pytest.approx(min(losses), rel=1e-5)
    assert result["loss_max"] == pytest.approx(max(losses), rel=1e-5)
    assert result["grad_change_min"] == pytest.approx(min(changes), rel=1e-4)
    assert result["grad_change_max"] == pytest.approx(max(changes), rel=1e-4)
    assert result["beta_smoothness"] == pytest.approx(max(ratios), rel=1e-4)
    assert max(losses) > min(losses) and max(changes) > 0  # the steps really moved
    # ICS of layer i: gradient of its weights before / after layers < i took their SGD step.
    assert list(result["ics"]) == ["2", "4"]  # the Linear layers after the first
    for layer, updated in (("2", 2), ("4", 4)):  # parameters (weight, bias) of the earlier layers
        moved = [w - LR * g if i < updated else w for i, (w, g) in enumerate(zip(x0, g0))]
        _, shifted = direct_gradient(net, names, moved, x, y)
        own = slice(updated, updated + 2)
        g, g_shift = flat(g0[own]), flat(shifted[own])
        assert result["ics"][layer]["l2"] == pytest.approx(float((g - g_shift).norm()), rel=1e-4)
        assert result["ics"][layer]["cos"] == pytest.approx(
            float(F.cosine_similarity(g, g_shift, 0)), rel=1e-5
        )
        assert result["ics"][layer]["l2"] > 0
    scalars = summary(result)
    assert scalars["ics_l2_mean"] == pytest.approx((result["ics"]["2"]["l2"] + result["ics"]["4"]["l2"]) / 2)


def test_layer_groups_of_the_asr_model_follow_its_stacks():
    model = ASRModel(tiny_asr_config(32, num_layers=2))
    names = [name for name, _ in layer_groups(model)]
    assert names[:5] == [
        "frontend.convs.0",
        "frontend.convs.1",
        "frontend.proj",
        "encoder.layers.0",
        "encoder.layers.1",
    ]
    assert names[-4:] == ["decoder.layers.0", "decoder.layers.1", "decoder.final_norm", "output"]
    grouped = sum(p.numel() for _, group in layer_groups(model) for p in group)
    assert grouped == sum(p.numel() for p in model.parameters())  # every weight belongs to one layer


class NormNet(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.linear, self.norm = nn.Linear(6, 6), norm

    def forward(self, x, mask):
        return self.norm(self.linear(x), mask)


@pytest.mark.parametrize("kind", ["batch", "power"])
def test_batch_versus_running_statistics_match_a_direct_computation(kind):
    torch.manual_seed(1)
    norm = MaskedBatchNorm(6, 1e-5, 0.1) if kind == "batch" else PowerNorm(6, NormConfig(kind="power"))
    norm.running_var.uniform_(0.5, 2.0)
    if kind == "batch":
        norm.running_mean.normal_()
    net = NormNet(norm)
    x, mask = torch.randn(3, 7, 6) * 2 + 1, torch.arange(7) < torch.tensor([[7], [4], [2]])
    buffers = [b.clone() for b in net.buffers()]
    result = probe(net, lambda: net(x, mask).square().mean(), LR, SCALES)
    assert all(torch.equal(b, c) for b, c in zip(net.buffers(), buffers))  # running statistics put back
    h = net.linear(x).detach()[mask]  # (valid frames, 6)
    if kind == "batch":
        expected_mean = float((h.mean(0) - buffers[0]).norm()) / 6
        expected_var = float((h.var(0, unbiased=False) - buffers[1]).norm()) / 6
        assert result["norm_stats"]["norm"]["mean_gap"] == pytest.approx(expected_mean, rel=1e-5)
    else:
        expected_var = float((h.square().mean(0) - norm.running_var).norm()) / 6
    assert result["norm_stats"]["norm"]["var_gap"] == pytest.approx(expected_var, rel=1e-5)
    assert statistics_gap(norm, net.linear(x), mask) == pytest.approx(result["norm_stats"]["norm"])


def test_bad_scaling_scales_the_band_and_cmvn_undoes_it_unless_off():
    torch.manual_seed(2)
    features, lengths = torch.randn(2, 9, 80) * 3 + 5, torch.tensor([9, 6])
    mask = (torch.arange(9) < lengths[:, None]).unsqueeze(-1)
    stats = GlobalCMVN.from_features([features[0], features[1, :6]])
    plain, scaled, raw = (
        ASRModel(replace(tiny_asr_config(32), feature_scale_band=band, feature_norm=norm))
        for band, norm in ((None, True), (7, True), (7, False))
    )
    for model in (plain, scaled, raw):
        model.set_feature_stats(stats)
    ratio = raw.normalize_input(features, lengths)[mask[..., 0]] / features[mask[..., 0]]
    assert torch.allclose(ratio[:, 7], torch.tensor(100.0))  # CMVN off: band 7 is 100x larger ...
    assert torch.equal(ratio[:, :7], torch.ones(15, 7)) and torch.equal(ratio[:, 8:], torch.ones(15, 72))
    assert torch.equal(raw.normalize_input(features, lengths)[1, 6:], torch.zeros(3, 80))  # padding 0
    # With CMVN on, the statistics were scaled with the band: the model sees what an unscaled one sees.
    assert torch.allclose(
        scaled.normalize_input(features, lengths), plain.normalize_input(features, lengths), atol=1e-5
    )
    normalized = plain.normalize_input(features, lengths)[mask.expand(-1, -1, 80)].view(-1, 80)
    assert normalized.mean(0).abs().max() < 1e-4  # CMVN on: zero-mean bands ...
    off = ASRModel(replace(tiny_asr_config(32), feature_norm=False))
    off.set_feature_stats(stats)
    assert torch.equal(off.normalize_input(features, lengths), features * mask)  # ... off: raw features


def test_utterance_mean_norm_cancels_a_channel_and_ignores_padding():
    torch.manual_seed(3)
    features, lengths = torch.randn(2, 9, 80) * 3 + 5, torch.tensor([9, 6])
    stats = GlobalCMVN.from_features([features[0], features[1, :6]])
    centred = ASRModel(replace(tiny_asr_config(32), utterance_mean_norm=True))
    centred.set_feature_stats(stats)
    out = centred.normalize_input(features, lengths)
    # A microphone's response is a constant per band in the log-Mel domain: it cancels.
    channel = torch.randn(1, 1, 80) * 4
    assert torch.allclose(centred.normalize_input(features + channel, lengths), out, atol=1e-4)
    # Each utterance's valid frames average to zero per band; padding is 0 and does not count.
    assert out[0].mean(0).abs().max() < 1e-4 and out[1, :6].mean(0).abs().max() < 1e-4
    assert torch.equal(out[1, 6:], torch.zeros(3, 80))
    alone = centred.normalize_input(features[1:, :6], lengths[1:])
    assert torch.allclose(alone[0], out[1, :6], atol=1e-5)
    # Its scale is still the global statistics': frames differ from the plain model's by a shift only.
    plain = ASRModel(tiny_asr_config(32))
    plain.set_feature_stats(stats)
    shift = out[0] - plain.normalize_input(features, lengths)[0]
    assert torch.allclose(shift, shift[:1].expand(9, -1), atol=1e-4)
    raw = ASRModel(replace(tiny_asr_config(32), utterance_mean_norm=True, feature_norm=False))
    centred_raw = raw.normalize_input(features, lengths)[0]
    assert torch.allclose(centred_raw, features[0] - features[0].mean(0), atol=1e-5)


def test_analysis_options_are_checked():
    with pytest.raises(ConfigError, match="landscape_every"):
        load_experiment(CONFIGS / "asr" / "small.yaml", ["--analysis.landscape_every=-1"])
    with pytest.raises(ConfigError, match="feature_scale_band"):
        load_experiment(CONFIGS / "asr" / "small.yaml", ["--model.feature_scale_band=80"])


def final_state(run):
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return state["state_dict"], state["optimizer_states"][0]["state"]


@pytest.mark.slow  # two (one) real Trainer runs: seconds
def test_probing_leaves_the_training_run_bit_identical(tiny_corpus, tmp_path):
    from seq2seq.tasks import train

    extra = {
        "model.encoder.norm.kind": "batch",
        "model.decoder.norm.kind": "batch",
        "model.encoder.dropout": 0.2,
        "model.decoder.dropout": 0.2,
        "trainer.val_every_steps": 100,
        "analysis.ics_update": "optimizer",  # the exact AdamW step, computed on copies of its state
    }
    runs = {}
    for name, every in (("plain", 0), ("probed", 2)):
        overrides = tiny_asr_overrides(
            tiny_corpus, tmp_path / name, **extra, **{"analysis.landscape_every": every}
        )
        runs[name] = train(load_experiment(CONFIGS / "asr" / "small.yaml", overrides))
    weights, moments = final_state(runs["plain"])
    probed_weights, probed_moments = final_state(runs["probed"])
    assert weights.keys() == probed_weights.keys()
    assert any("running_var" in k for k in weights)
    assert all(torch.equal(weights[k], probed_weights[k]) for k in weights)  # weights and running statistics
    for index, state in moments.items():
        assert all(torch.equal(v, probed_moments[index][k]) for k, v in state.items())  # Adam moments, steps
    records = [json.loads(line) for line in (runs["probed"] / "analysis" / "probes.jsonl").open()]
    assert [r["step"] for r in records] == [0, 2, 4]
    assert all(r["loss_min"] <= r["loss_max"] and r["norm_stats"] and r["ics"] for r in records)
    assert all(-1.0 <= v["cos"] <= 1.0 for r in records for v in r["ics"].values())
    assert not (runs["plain"] / "analysis").exists()
    metrics = next((runs["probed"] / "logs").glob("version_*/metrics.csv")).read_text()
    assert "analysis/beta_smoothness" in metrics and "analysis/ics_cos_mean" in metrics


@pytest.mark.parametrize("fused", [False, True])
def test_adamw_update_is_the_step_the_optimizer_takes(fused):
    import copy

    from seq2seq.training.landscape import adamw_update

    net, x, y = tiny_network()
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.1, fused=fused)
    for _ in range(2):  # moments and step counts that are not zero
        optimizer.zero_grad()
        F.mse_loss(net(x), y).backward()
        optimizer.step()
    params = list(net.parameters())
    grads = torch.autograd.grad(F.mse_loss(net(x), y), params)
    state = copy.deepcopy(optimizer.state_dict())
    predicted = adamw_update(optimizer, clip=0.05)(params, list(grads))
    assert str(optimizer.state_dict()) == str(state)  # nothing advanced
    twin = copy.deepcopy(net)
    twin_optimizer = torch.optim.AdamW(twin.parameters(), lr=0.01, weight_decay=0.1, fused=fused)
    twin_optimizer.load_state_dict(state)
    for p, g in zip(twin.parameters(), grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.05)
    twin_optimizer.step()
    for p, q, step in zip(params, twin.parameters(), predicted):
        assert torch.allclose(p + step, q, atol=1e-7, rtol=1e-6)
    assert max(float(s.abs().max()) for s in predicted) > 1e-3  # a real step, not zero


def test_ics_uses_the_given_update():
    from seq2seq.training.landscape import Probe, internal_covariate_shift

    net, x, y = tiny_network()
    names = [n for n, _ in net.named_parameters()]
    x0 = [p.detach().clone() for p in net.parameters()]
    _, g0 = direct_gradient(net, names, x0, x, y)
    updates = [torch.full_like(w, 0.01) for w in x0]  # any step, not along the gradient
    ics = internal_covariate_shift(Probe(net, lambda: F.mse_loss(net(x), y)), g0, updates)
    _, shifted = direct_gradient(
        net, names, [w + u if i < 2 else w for i, (w, u) in enumerate(zip(x0, updates))], x, y
    )
    expected = float(
        (torch.cat([g.flatten() for g in g0[2:4]]) - torch.cat([g.flatten() for g in shifted[2:4]])).norm()
    )
    assert ics["2"]["l2"] == pytest.approx(expected, rel=1e-4)


def norm_study_modules():
    import importlib
    import sys

    folder = str(CONFIGS.parent / "recipes" / "norm_study")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("study"), importlib.import_module("intervals")


def study_args(tmp_path, encoder: str):
    """The options ``base_overrides`` reads, for a tiny model."""
    import argparse

    return argparse.Namespace(
        task="asr", d_model=32, out=tmp_path, warmup=5, steps=10, val_every=5, probe_every=5,
        ics_update="sgd", encoder_layers=1, decoder_layers=1, encoder=encoder,
    )  # fmt: skip


def test_norm_study_plans_every_norm_placement_and_conv_norm_and_each_loads(tmp_path):
    study, _ = norm_study_modules()
    runs = study.plan(True, 1500, (), conformer=True)
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) == 32
    assert {f"{n}-{p}" for n in study.NORMS for p in ("pre", "post")} <= set(names)
    assert {"none-post", "conformer-conv_group", "conformer-conv_power-unmasked"} <= set(names)
    base = study.base_overrides(
        study_args(tmp_path, "transformer"), study.TASKS["asr"], tmp_path / "t.jsonl", tmp_path / "d.jsonl"
    )
    for run in runs:
        experiment = load_experiment(study.TASKS["asr"].config, study.as_cli({**base, **run.overrides}))
        assert experiment.analysis.landscape_every == 5
        ASRModel(replace(experiment.model, vocab_size=32))  # every planned model builds
    unmasked = load_experiment(study.TASKS["asr"].config, study.as_cli({**base, **runs[-1].overrides}))
    assert unmasked.model.encoder_kind == "conformer" and not unmasked.model.conformer.conv_norm_masked
    band = next(r for r in runs if r.name == "layer-pre-nocmvn-band100")
    scaled = load_experiment(study.TASKS["asr"].config, study.as_cli({**base, **band.overrides})).model
    assert (scaled.feature_norm, scaled.feature_scale_band, scaled.feature_scale_factor) == (False, 10, 100.0)


def test_norm_study_on_a_conformer_gives_the_convolution_module_each_runs_norm(tmp_path):
    study, _ = norm_study_modules()
    task = study.study_task("asr", "conformer")
    base = study.base_overrides(
        study_args(tmp_path, "conformer"), task, tmp_path / "t.jsonl", tmp_path / "d.jsonl"
    )
    runs = study.plan(True, 1500, task.conv_norms, conformer=False)
    assert not [r for r in runs if r.group == "conv_norm"]
    for run in runs:
        model = load_experiment(task.config, study.as_cli({**base, **run.overrides})).model
        assert model.encoder_kind == "conformer"
        assert model.conformer.conv_norm.kind == model.encoder.norm.kind  # none-pre has no norm anywhere
        assert model.conformer.conv_norm.renorm_warmup_steps == 5
        ASRModel(replace(model, vocab_size=32))


def test_norm_study_settings_parse_as_the_cli_takes_them():
    study, _ = norm_study_modules()
    assert study.parse_setting("optim.lr=0.003") == ("optim.lr", 0.003)
    assert study.parse_setting("optim.schedule=cosine") == ("optim.schedule", "cosine")
    assert study.parse_setting("data.test_manifest=null") == ("data.test_manifest", None)
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        study.parse_setting("optim.lr")


def test_t_interval_over_seeds():
    _, intervals = norm_study_modules()
    mean, half, n = intervals.mean_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and half == pytest.approx(4.303 / 3**0.5)
    assert intervals.mean_ci([5.0])[1] != intervals.mean_ci([5.0])[1]  # one seed: no interval (nan)
    assert intervals.format_ci([1.0, 2.0, 3.0]) == "2 ± 2.5"


def test_findings_rank_correlation_and_its_permutation_p_value():
    import importlib

    norm_study_modules()  # puts the recipe folder on sys.path
    findings = importlib.import_module("findings")
    assert findings.ranks([3.0, 1.0, 2.0, 1.0]) == [4.0, 1.5, 3.0, 1.5]
    x = [0.1, 0.4, 0.2, 0.9, 0.5, 0.3, 0.8, 0.7]
    rho, p = findings.spearman(x, [v**3 for v in x], permutations=2000)
    assert rho == pytest.approx(1.0) and p < 0.001  # monotone: rank correlation 1, 1 in 8! orders
    rho, p = findings.spearman(x, [-v for v in x], permutations=2000)
    assert rho == pytest.approx(-1.0) and p < 0.001
    rho, p = findings.spearman(x, [0.5, 0.1, 0.9, 0.3, 0.2, 0.8, 0.4, 0.6], permutations=2000)
    assert abs(rho) < 0.5 and p > 0.2


def test_findings_tables_come_from_the_runs(tmp_path):
    import importlib

    study, _ = norm_study_modules()
    findings = importlib.import_module("findings")
    planned = study.plan(True, 1500, (), conformer=True)
    rows, curves, probes = [], [], []
    for i, name in enumerate(["none-pre", "batch-pre", "layer-pre", "rms-pre"]):
        for seed in range(2):
            l2 = 2e-3 if name == "none-pre" else 1e-3 * (1 + i / 10)
            rows.append(
                {
                    "run": name,
                    "seed": seed,
                    "ics_l2_mean": l2,
                    "ics_cos_mean": 1 - l2 / 100,
                    "val_cer": 0.3 + i / 100,
                    "train_loss_mean": 2 + i / 10,
                    "beta_smoothness": 1 + i,
                }
            )
            curves += [{"run": name, "seed": seed, "val_cer": v} for v in (0.5 + i / 100, 0.3 + i / 100)]
            probes += [
                {
                    "run": name,
                    "seed": seed,
                    "step": s,
                    "beta_smoothness": 9.0 - s / 10,
                    "loss_band": 0.01,
                    "grad_change_max": 0.1,
                }
                for s in range(0, 90, 10)
            ]
    findings.write_findings(tmp_path, rows, curves, probes, planned)
    data = json.loads((tmp_path / "findings.json").read_text())
    assert data["ics_vs_none"]["ics_l2_mean"]["batch-pre"] == pytest.approx(0.55)
    assert data["ics_vs_none"]["ics_1_minus_cos"]["batch-pre"] == pytest.approx(0.55, rel=1e-6)
    assert data["spearman"]["beta_smoothness~val_cer"]["rho"] == pytest.approx(1.0)
    assert data["spearman"]["beta_smoothness~val_cer_mid"]["n"] == 4  # the first validation of each
    assert data["warmup"]["layer-pre"]["beta_smoothness_first_third"] == pytest.approx(8.0)  # steps 0-20
    assert "| batch-pre | 2 |" in (tmp_path / "findings.md").read_text()
    assert "convolution-module norm" in (tmp_path / "findings.md").read_text()
    conformer_grid = study.plan(True, 1500, study.study_task("asr", "conformer").conv_norms, conformer=False)
    findings.write_findings(tmp_path, rows, curves, probes, conformer_grid)
    assert "convolution-module norm" not in (tmp_path / "findings.md").read_text()  # no empty table


@pytest.mark.slow  # two (one) real Trainer runs: seconds
def test_tts_runs_probe_too(tiny_corpus, tmp_path):
    from seq2seq.tasks import train
    from tests.support import tiny_tts_overrides

    overrides = tiny_tts_overrides(tiny_corpus, tmp_path / "tts", **{"analysis.landscape_every": 2})
    run = train(load_experiment(CONFIGS / "tts" / "small.yaml", overrides))
    records = [json.loads(line) for line in (run / "analysis" / "probes.jsonl").open()]
    assert [r["step"] for r in records] == [0, 2]
    assert all(r["ics"] and r["grad_norm"] > 0 and r["beta_smoothness"] > 0 for r in records)
