"""Schedules against timm's CosineLRScheduler formula written out by hand, and weight-decay kinds."""
import math

import pytest
import torch
from torch import nn

from bio_speech_dyt import DyT
from bio_speech_dyt.config import ConfigError, OptimConfig, from_dict
from bio_speech_dyt.train import build_optimizer, build_scheduler, lr_lambda, no_decay_names, param_groups


def timm_cosine(t, base, lr_min, warmup_t, warmup_lr_init, t_initial, warmup_prefix):
    """timm.scheduler.CosineLRScheduler (cycle_limit 1, no noise) at update t, written out."""
    if t < warmup_t:
        return warmup_lr_init + t * (base - warmup_lr_init) / warmup_t
    if warmup_prefix:
        t = t - warmup_t
    if t >= t_initial:
        return lr_min
    return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * t / t_initial))


def test_default_warmup_is_unchanged():
    f = lr_lambda(OptimConfig(scheduler="cosine", warmup_steps=4, min_lr_ratio=0.0), 12)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0) and f(8) == pytest.approx(0.5) and f(12) == pytest.approx(0.0)


def test_caduceus_hg38_recipe_matches_timm():
    # experiment/hg38/hg38.yaml: warmup_t 0.1 * 10k from 1e-6, warmup_prefix, t_initial 9k, lr_min 1e-4
    cfg = OptimConfig(lr=6e-4, scheduler="cosine", warmup_steps=1000, warmup_init_lr=1e-6, min_lr_ratio=1e-4 / 6e-4)
    f = lr_lambda(cfg, 10_000)
    for step in (0, 1, 500, 999, 1000, 1001, 5500, 9999, 10_000, 12_000):
        expected = timm_cosine(step, 6e-4, 1e-4, 1000, 1e-6, 9000, warmup_prefix=True)
        assert 6e-4 * f(step) == pytest.approx(expected, rel=1e-9)
    assert 6e-4 * f(0) == pytest.approx(1e-6, rel=1e-9) and 6e-4 * f(5500) == pytest.approx(3.5e-4, rel=1e-9)


def test_gb_recipe_without_warmup_prefix_matches_timm():
    # experiment/hg38/genomic_benchmark.yaml: t_initial = all steps, warmup 1 %, lr_min 0.1 lr, no prefix
    cfg = OptimConfig(lr=2e-3, scheduler="cosine", warmup_steps=10, warmup_init_lr=1e-6, min_lr_ratio=0.1,
                      warmup_prefix=False)
    f = lr_lambda(cfg, 1000)
    for step in (0, 5, 9, 10, 11, 500, 999, 1000):
        assert 2e-3 * f(step) == pytest.approx(timm_cosine(step, 2e-3, 2e-4, 10, 1e-6, 1000, False), rel=1e-9)
    assert f(500) == pytest.approx(0.55)


def test_schedule_steps_sets_the_horizon():
    # hyena-dna's hg38_hyena: t_initial 381,500 steps, while 100 epochs of the bed file end near 13.2k
    cfg = OptimConfig(lr=6e-4, warmup_steps=3815, warmup_init_lr=1e-6, min_lr_ratio=0.1, warmup_prefix=False,
                      schedule_steps=381_500)
    f = lr_lambda(cfg, 13_200)
    for step in (0, 3814, 3815, 13_200):
        assert 6e-4 * f(step) == pytest.approx(timm_cosine(step, 6e-4, 6e-5, 3815, 1e-6, 381_500, False), rel=1e-9)
    assert f(13_200) > 0.99


def _model():
    return nn.Sequential(nn.Embedding(16, 4), nn.Linear(4, 4), DyT(4), nn.LayerNorm(4))


def test_no_decay_kinds():
    everything = {"0.weight", "1.weight", "1.bias", "2.alpha", "2.weight", "2.bias", "3.weight", "3.bias"}
    assert no_decay_names(_model()) == {"1.bias", "2.alpha", "2.weight", "2.bias", "3.weight", "3.bias"}
    assert no_decay_names(_model(), kinds=[]) == set()  # fairseq: decay on every parameter
    # the Caduceus repository: no decay on biases and embeddings; DyT's alpha and weight decay
    assert no_decay_names(_model(), kinds=["biases", "embeddings"]) == {"0.weight", "1.bias", "2.bias", "3.bias"}
    assert no_decay_names(_model(), kinds=["norms", "biases", "embeddings"]) == everything - {"1.weight"}
    with pytest.raises(ValueError, match="optim.no_decay: unknown kind"):
        no_decay_names(_model(), kinds=["norm"])


def test_scalars_and_module_hooks_never_decay():
    class Gain(nn.Module):
        def __init__(self):
            super().__init__()
            self.g = nn.Parameter(torch.tensor(1.0))
            self.w = nn.Parameter(torch.ones(3))

        def no_weight_decay(self):
            return {"w"}

    model = nn.Sequential(Gain(), nn.Linear(3, 3))
    groups = {g["name"]: g for g in param_groups(model, 0.1, no_decay=[])}
    assert {id(p) for p in groups["no_decay"]["params"]} == {id(model[0].g), id(model[0].w)}
    assert groups["decay"]["weight_decay"] == 0.1 and len(groups["decay"]["params"]) == 2


def test_warmup_ratio_is_a_fraction_of_the_horizon():
    # the Caduceus GB recipe: warmup_t = 0.01 * t_initial, a fraction of a step allowed (timm)
    cfg = OptimConfig(lr=1e-3, warmup_ratio=0.01, warmup_init_lr=1e-6, min_lr_ratio=0.1, warmup_prefix=False,
                      schedule_steps=1420)
    f = lr_lambda(cfg, 950)
    for step in (0, 7, 14, 15, 500, 950):
        assert 1e-3 * f(step) == pytest.approx(timm_cosine(step, 1e-3, 1e-4, 14.2, 1e-6, 1420, False), rel=1e-9)
    with pytest.raises(ValueError, match="warmup_steps or warmup_ratio"):
        lr_lambda(OptimConfig(warmup_steps=5, warmup_ratio=0.1), 100)


def test_alpha_lr_scale_gives_dyt_alpha_its_own_lr_through_the_schedule():
    model = nn.Sequential(nn.Linear(4, 4), DyT(4, alpha_init=8.0), nn.Linear(4, 2))
    plain = build_optimizer(model, OptimConfig(lr=1e-3))
    assert [g["name"] for g in plain.param_groups] == ["decay", "no_decay"]
    cfg = OptimConfig(lr=1e-3, alpha_lr_scale=30.0, warmup_steps=4)
    opt = build_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert [id(p) for p in groups["dyt_alpha"]["params"]] == [id(model[1].alpha)]
    assert groups["dyt_alpha"]["weight_decay"] == 0.0 and id(model[1].alpha) not in {id(p) for p in groups["no_decay"]["params"]}
    sched = build_scheduler(opt, cfg, total_steps=12)
    assert groups["dyt_alpha"]["lr"] == pytest.approx(30 * 0.25e-3, rel=1e-12)  # warm-up step 0
    for _ in range(4):
        opt.step()
        sched.step()
    assert groups["dyt_alpha"]["lr"] == pytest.approx(30 * groups["decay"]["lr"], rel=1e-12)
    with pytest.raises(ConfigError, match="alpha_lr_scale"):
        from_dict(OptimConfig, {"alpha_lr_scale": 0.0})
