"""Caduceus: RC equivariance of PS, every norm swapped, tied BiMamba projections, conjoining head."""
from __future__ import annotations

import pytest
import torch

from bio_speech_dyt.dyt import DyT
from genomics.models.caduceus import Caduceus, CaduceusConfig
from genomics.models.heads import SequenceClassifier
from genomics.tokenizer import A_ID, PAD_ID, T_ID, reverse_complement_ids
from tests.support.numerics import assert_close_scaled, max_scaled_error

TINY = dict(d_model=16, n_layer=2, d_state=4)


@pytest.mark.parametrize("norm", ["rmsnorm", "layernorm", "dyt"])
def test_ps_is_rc_equivariant(norm):
    torch.manual_seed(0)
    model = Caduceus(CaduceusConfig(rcps=True, norm=norm, **TINY)).eval()
    with torch.no_grad():  # nudge DyT/norm parameters off their init so the test sees them
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randint(A_ID, T_ID + 1, (3, 40))
    logits, logits_rc = model(x), model(reverse_complement_ids(x))
    expected = logits.flip(1)[..., model.complement]  # position L-1-i, complemented token
    assert logits.shape == (3, 40, 16)
    assert_close_scaled(logits_rc, expected, rtol=1e-5, msg="PS logits of RC(x)")
    h, h_rc = model.hidden(x), model.hidden(reverse_complement_ids(x))
    assert_close_scaled(h_rc, h.flip(-2, -1), rtol=1e-5, msg="PS hidden states of RC(x)")


def test_ph_is_not_equivariant_but_conjoined_head_is_invariant():
    torch.manual_seed(0)
    backbone = Caduceus(CaduceusConfig(rcps=False, **TINY))
    x = torch.randint(A_ID, T_ID + 1, (3, 40))
    assert max_scaled_error(backbone(reverse_complement_ids(x)), backbone(x).flip(1)[..., backbone.complement]) > 1e-3
    clf = SequenceClassifier(backbone, 2, conjoin=True).eval()
    out = clf(x)
    assert_close_scaled(clf(reverse_complement_ids(x)), out, rtol=1e-5, msg="conjoined logits of RC(x)")


@pytest.mark.parametrize("rcps", [False, True])
def test_dyt_in_every_block_and_final_norm(rcps):
    model = Caduceus(CaduceusConfig(rcps=rcps, norm="dyt", **TINY))
    dyts = [m for m in model.modules() if isinstance(m, DyT)]
    assert len(dyts) == TINY["n_layer"] + 1
    assert all(m.bias is None for m in dyts)  # a DyT replacing RMSNorm has no bias
    assert not any(isinstance(m, (torch.nn.RMSNorm, torch.nn.LayerNorm)) for m in model.modules())
    # the swapped norm is really on the path: changing alpha changes the output
    x = torch.randint(A_ID, T_ID + 1, (2, 20))
    before = model(x)
    with torch.no_grad():
        dyts[0].alpha.mul_(3.0)
    assert not torch.allclose(model(x), before)


def test_bimamba_ties_projections():
    model = Caduceus(CaduceusConfig(**TINY))
    mixer = model.layers[0].mixer
    assert mixer.mamba_fwd.in_proj.weight is mixer.mamba_rev.in_proj.weight
    assert mixer.mamba_fwd.out_proj.weight is mixer.mamba_rev.out_proj.weight
    assert mixer.mamba_fwd.x_proj.weight is not mixer.mamba_rev.x_proj.weight


def test_masked_pooling_ignores_padding():
    torch.manual_seed(0)
    clf = SequenceClassifier(Caduceus(CaduceusConfig(rcps=True, **TINY)), 3).eval()
    x = torch.randint(A_ID, T_ID + 1, (2, 30))
    padded = torch.cat([torch.full((2, 10), PAD_ID), x], dim=1)
    assert clf(padded).shape == (2, 3)
    # PS features are RC-invariant: the classifier gives the same logits for RC(x)
    out = clf(x)
    assert_close_scaled(clf(reverse_complement_ids(x)), out, rtol=1e-5, msg="conjoined logits of RC(x)")


@pytest.mark.parametrize("rcps", [False, True])
def test_one_step_lowers_the_mlm_loss(rcps):
    torch.manual_seed(0)
    model = Caduceus(CaduceusConfig(rcps=rcps, norm="dyt", **TINY))
    x = torch.randint(A_ID, T_ID + 1, (4, 32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())

    before = loss()
    before.backward()
    opt.step()
    assert loss().item() < before.item()
