"""The genomics paper configs against the sources of docs/paper-recipes.md: LN/DyT pairs differ only in
the norm (and the weight-decay groups where the source's differ), and the schedules they give."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from bio_speech_dyt.config import to_dict
from bio_speech_dyt.jobs import resolve
from bio_speech_dyt.train import lr_lambda
from bio_speech_dyt.jobs import resolve
from genomics.models.hyena import HyenaDNA

PAPER = Path(__file__).resolve().parents[2] / "configs" / "genomics" / "paper"
PAIRS = {
    "hyenadna_d256_l4_1k_pretrain": "layernorm", "hyenadna_tiny_1k_pretrain": "layernorm",
    "caduceus_ph_1k_pretrain": "rmsnorm", "caduceus_ps_1k_pretrain": "rmsnorm",
    "hyenadna_tiny_1k_gb": "layernorm", "caduceus_ph_1k_gb": "rmsnorm", "caduceus_ps_1k_gb": "rmsnorm",
}


def _load(name: str, norm: str):
    path = PAPER / f"{name}_{norm}.yaml"
    return resolve(path)[1]


def _lrs(cfg, total: int, steps) -> list[float]:
    f = lr_lambda(cfg.optim, total)
    return [cfg.optim.lr * f(s) for s in steps]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_pairs_differ_only_in_the_norm(name):
    base, dyt = to_dict(_load(name, PAIRS[name])), to_dict(_load(name, "dyt"))
    assert (base["model"].pop("norm"), dyt["model"].pop("norm")) == (PAIRS[name], "dyt")
    # the Caduceus repository exempts nn.LayerNorm from weight decay, not the DyT patch's DynamicTanh
    nd_base, nd_dyt = base["optim"].pop("no_decay"), dyt["optim"].pop("no_decay")
    if "hyenadna" in name and "tiny_1k_pretrain" not in name:
        assert (nd_base, nd_dyt) == (["norms", "biases", "embeddings"], ["biases", "embeddings"])
    else:
        assert nd_base == nd_dyt
    assert base == dyt and dyt["model"]["alpha_init"] == 0.5


@pytest.mark.parametrize("name", ["hyenadna_d256_l4_1k_pretrain", "caduceus_ph_1k_pretrain", "caduceus_ps_1k_pretrain"])
def test_caduceus_repository_pretraining_recipe(name):
    cfg = _load(name, "dyt")
    assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.weight_decay == 0.1 and cfg.optim.gradient_clip_val == 1.0
    t = cfg.trainer
    assert t.max_steps == 10_000 and cfg.data.batch_size * t.devices * t.accumulate_grad_batches == 1024
    # warm-up from 1e-6 over 10 % of the steps, cosine to the absolute floor 1e-4 (timm, warmup_prefix)
    lrs = _lrs(cfg, t.max_steps, [0, 1000, 10_000])
    assert lrs == pytest.approx([1e-6, cfg.optim.lr, 1e-4], rel=1e-9)
    assert cfg.seed == 2222 and t.precision == "16-mixed" and t.limit_val_batches == 0.125


def test_hyenadna_d256_is_the_run_pretrain_hyena_recipe():
    cfg = _load("hyenadna_d256_l4_1k_pretrain", "layernorm")
    m = cfg.model
    assert (m.d_model, m.n_layer, m.d_inner, m.l_max, cfg.optim.lr, cfg.data.rc_prob) == (256, 4, 1024, 1026, 6e-4, 0.5)
    with torch.device("meta"):
        assert sum(p.numel() for p in HyenaDNA(m).parameters()) == 3_277_568


def test_hyenadna_tiny_1k_is_the_hyena_dna_recipe():
    cfg = _load("hyenadna_tiny_1k_pretrain", "layernorm")
    with torch.device("meta"):
        assert sum(p.numel() for p in HyenaDNA(cfg.model).parameters()) == 436_096
    assert cfg.optim.betas == (0.9, 0.999) and cfg.data.batch_size == 256 and cfg.optim.no_decay == []
    # warm-up 3,815 steps from 1e-6, a cosine over 381,500 steps: the 13,300-step run barely decays
    lrs = _lrs(cfg, cfg.trainer.max_steps, [0, 3815, 13_300])
    assert lrs[0] == pytest.approx(1e-6) and lrs[1] == pytest.approx(6e-4, rel=1e-3) and lrs[2] > 0.99 * 6e-4


@pytest.mark.parametrize("name", ["hyenadna_tiny_1k_gb", "caduceus_ph_1k_gb", "caduceus_ps_1k_gb"])
def test_gb_protocol(name):
    cfg = _load(name, "dyt")
    assert cfg.seeds == [1, 2, 3, 4, 5] and cfg.init_seed == 2222 and cfg.trainer.max_epochs == 10
    assert cfg.data.schedule_len == 36_131 and cfg.data.drop_last and not cfg.head.mask_padding
    assert cfg.data.rc_prob == 0.0 and cfg.head.conjoin == (name == "caduceus_ph_1k_gb")
    horizon = 10 * -(-36_131 // cfg.data.batch_size)  # t_initial, warm-up 1 % of it, floor 0.1 lr
    lrs = _lrs(cfg, horizon, [0, horizon])
    assert lrs == pytest.approx([1e-6, 0.1 * cfg.optim.lr], rel=1e-9)
    assert dataclasses.asdict(cfg.optim)["betas"] == (0.9, 0.999)
