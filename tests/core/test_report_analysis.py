"""The paper's norm-layer analysis: tanh fit, LN input/output recording, DyT saturation."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bio_speech_dyt import jobs
from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.report import analyze_model, fit_tanh, make_report
from bio_speech_dyt.report.analysis import choose_evenly, find_norms, record_layers
from tests.core.test_report import is_real_png


class Block(nn.Module):
    def __init__(self, dim: int, norm: str):
        super().__init__()
        self.norm = {"layernorm": nn.LayerNorm, "rmsnorm": nn.RMSNorm}[norm](dim) if norm != "dyt" else DyT(dim, 0.5)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class TinyModel(nn.Module):
    """Residual MLP blocks, each with a pre-norm, and a final norm."""

    def __init__(self, norm: str = "layernorm", depth: int = 3, dim: int = 32):
        super().__init__()
        self.layers = nn.ModuleList(Block(dim, norm) for _ in range(depth))
        self.final = Block(dim, norm).norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.final(x)


def batch(dim: int = 32, tokens: int = 64) -> torch.Tensor:
    """Tokens of very different scales with a few outlier channels (what makes LN look like tanh)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, tokens, dim, generator=g) * torch.exp(torch.randn(2, tokens, 1, generator=g))
    x[..., :2] *= 6
    return x


@pytest.mark.parametrize("alpha,scale,std", [(0.7, 1.3, 2.0), (5.0, 0.8, 1.0), (0.05, 2.0, 30.0)])
def test_fit_tanh_recovers_known_alpha(alpha: float, scale: float, std: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, std, 20_000)
    y = scale * np.tanh(alpha * x) + rng.normal(0, 0.02, x.size)
    fit = fit_tanh(x, y)
    assert fit.alpha == pytest.approx(alpha, rel=0.02)
    assert fit.scale == pytest.approx(scale, rel=0.02)
    assert fit.r2 > 0.99 and fit.regime == "tanh"


def test_fit_tanh_flags_lines_and_steps() -> None:
    x = np.linspace(-1, 1, 200)
    assert fit_tanh(x, 3 * x).regime == "linear"
    assert fit_tanh(x, np.sign(x)).regime == "step"


def test_choose_evenly() -> None:
    assert choose_evenly(list(range(20)), 8) == [0, 3, 5, 8, 11, 14, 16, 19]
    assert choose_evenly([1, 2], 8) == [1, 2]


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_recorded_output_is_the_real_norm_output(norm: str) -> None:
    """The recorded pre-affine output equals the real norm's output (identity affine at init)."""
    model, x = TinyModel(norm), batch()
    layers = find_norms(model)
    assert [p for p, _, _ in layers] == ["layers.0.norm", "layers.1.norm", "layers.2.norm", "final"]
    real: dict[str, torch.Tensor] = {}
    for path, m, _ in layers:
        m.register_forward_hook(lambda mod, a, out, path=path: real.__setitem__(path, out.detach().reshape(-1, 32)))
    records = record_layers(model, lambda: model(x), layers, {p for p, _, _ in layers})
    for rec in records:
        assert rec.kind == norm
        torch.testing.assert_close(torch.cat(rec.ys), real[rec.path], rtol=1e-4, atol=1e-5)


def test_analyze_layernorm_model(tmp_path: Path) -> None:
    model, x = TinyModel("layernorm", depth=9), batch()
    model.train()
    result = analyze_model(model, lambda: model(x), tmp_path, "tiny LN")
    paths = [r["path"] for r in result["norm_layers"]]
    assert len(paths) == 8 and paths[0] == "layers.0.norm" and paths[-1] == "final"  # 10 norms, 8 evenly chosen
    for r in result["norm_layers"]:
        assert r["points"] == 2 * 64 * 32
        assert np.isfinite(r["alpha"]) and r["alpha"] > 0 and r["r2"] > 0.5
    assert result["plots"] == ["tiny-LN-norm-io.png"] and result["dyt_layers"] == []
    assert is_real_png(tmp_path / "tiny-LN-norm-io.png")
    assert model.training  # mode restored


def test_analyze_dyt_model(tmp_path: Path) -> None:
    model, x = TinyModel("dyt"), batch()
    with torch.no_grad():
        model.layers[1].norm.alpha.fill_(2.0)
    inputs: dict[str, torch.Tensor] = {}
    for path, m, _ in find_norms(model):
        m.register_forward_hook(lambda mod, a, out, path=path: inputs.__setitem__(path, a[0].detach()))
    result = analyze_model(model, lambda: model(x), tmp_path, "tiny DyT")
    assert [r["path"] for r in result["dyt_layers"]] == ["layers.0.norm", "layers.1.norm", "layers.2.norm", "final"]
    for row in result["dyt_layers"]:
        m = model.get_submodule(row["path"])
        assert row["alpha"] == pytest.approx(float(m.alpha.detach()))
        expected = float((m.alpha.detach() * inputs[row["path"]]).abs().gt(2).float().mean())
        assert row["saturated_share"] == pytest.approx(expected)
        assert row["input_std"] == pytest.approx(float(inputs[row["path"]].double().std(unbiased=False)), rel=1e-6)
        assert row["weight_min"] == row["weight_max"] == 1.0
    assert result["dyt_layers"][1]["saturated_share"] > 0.05
    assert result["plots"] == ["tiny-DyT-dyt.png"]
    assert is_real_png(tmp_path / "tiny-DyT-dyt.png")


def test_report_analyze_section(tmp_path: Path, monkeypatch) -> None:
    """``bsd report --analyze CKPT`` without run directories: a section with plots and the alpha table."""
    model, x = TinyModel("layernorm"), batch()
    cfg = SimpleNamespace(task="hyenadna_pretrain", model=SimpleNamespace(norm="layernorm"))
    monkeypatch.setattr(jobs, "load_checkpoint_model", lambda path: (cfg, model, lambda: model(x)))
    ckpt = tmp_path / "hyena_ln" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    data = make_report([], tmp_path / "out", analyze=[ckpt])
    md = (tmp_path / "out" / "report.md").read_text()
    title = "hyena_ln last (hyenadna_pretrain, layernorm)"
    assert f"### {title}" in md
    alpha = data["analysis"][0]["norm_layers"][0]["alpha"]
    assert f"| `layers.0.norm` | layernorm | {alpha:.4g} |" in md
    plot = data["analysis"][0]["plots"][0]
    assert f"]({plot})" in md and is_real_png(tmp_path / "out" / plot)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        make_report([], tmp_path / "out", analyze=[tmp_path / "nope.ckpt"])


def test_report_analyses_of_runs_alike_in_name_keep_their_plots(tmp_path: Path, monkeypatch) -> None:
    """A study's VARIANT/NORM/seed0 run directories: each checkpoint gets its own title and plot."""
    model, x = TinyModel("dyt"), batch()
    cfg = SimpleNamespace(task="hyenadna_pretrain", model=SimpleNamespace(norm="dyt"))
    monkeypatch.setattr(jobs, "load_checkpoint_model", lambda path: (cfg, model, lambda: model(x)))
    ckpts = [tmp_path / v / "dyt" / "seed0" / "checkpoints" / "last.ckpt" for v in ("plain", "embed_gain")]
    for c in ckpts:
        c.parent.mkdir(parents=True)
        c.write_bytes(b"")
    data = make_report([], tmp_path / "out", analyze=ckpts)
    titles = [a["title"] for a in data["analysis"]]
    assert titles == ["plain/dyt/seed0 last (hyenadna_pretrain, dyt)", "embed_gain/dyt/seed0 last (hyenadna_pretrain, dyt)"]
    plots = [a["plots"][0] for a in data["analysis"]]
    assert len(set(plots)) == 2 and all(is_real_png(tmp_path / "out" / p) for p in plots)
