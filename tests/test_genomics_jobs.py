"""Genomics jobs end to end on the synthetic genome/task: pretraining (both models, metrics,
resume, analysis hook) and GenomicBenchmarks evaluation (scratch and from a checkpoint)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bio_speech_dyt.config import ConfigError
from bio_speech_dyt.jobs import load_checkpoint_model, pretrain
from genomics.jobs.gb_eval import evaluate_gb

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "genomics"
FAST = ["trainer.progress_bar=false", "trainer.log_every_n_steps=1", "data.num_workers=0"]
HYENA_TINY = ["model.d_model=16", "model.d_inner=32", "model.filter_order=8", "data.batch_size=2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from genomics.data.synthetic import prepare_synthetic_genomics

    out = tmp_path_factory.mktemp("synthetic")
    prepare_synthetic_genomics(out, seed=0)
    return out


def _pretrain(config: str, synthetic: Path, out: Path, steps: int, extra=(), resume=False) -> dict:
    overrides = [*FAST, f"data.path={synthetic / 'genome'}", f"trainer.max_steps={steps}", "trainer.val_check_interval=2",
                 "trainer.limit_val_batches=2", "trainer.checkpoint_every_n_steps=2", "data.max_length=64", *extra]
    return pretrain(CONFIGS / "cpu" / config, overrides, out, resume)


def test_hyena_pretrain_metrics_resume_and_analysis(synthetic, tmp_path):
    run = tmp_path / "hyena"
    extra = [*HYENA_TINY, "model.l_max=66"]
    m = _pretrain("hyenadna_tiny_pretrain_dyt.yaml", synthetic, run, 4, extra)
    for key in ("num_parameters", "train_loss", "valid_loss", "steps", "tokens_per_s",
                "baseline_unigram_loss", "baseline_kmer_loss"):
        assert m[key] is not None, key
    assert m["steps"] == 4 and m["num_dyt"] == 5 and m["norm"] == "dyt"
    assert json.loads((run / "metrics.json").read_text())["num_parameters"] == m["num_parameters"]
    assert (run / "alpha.csv").read_text().startswith("step,layers.0.norm1")
    with pytest.raises(FileExistsError):
        _pretrain("hyenadna_tiny_pretrain_dyt.yaml", synthetic, run, 6, extra)
    assert _pretrain("hyenadna_tiny_pretrain_dyt.yaml", synthetic, run, 6, extra, resume=True)["steps"] == 6

    cfg, model, forward = load_checkpoint_model(run / "checkpoints" / "last.ckpt")
    assert cfg.model.norm == "dyt" and forward().shape[-1] == 16


def test_caduceus_pretrain(synthetic, tmp_path):
    m = _pretrain("caduceus_ph_tiny_pretrain_rmsnorm.yaml", synthetic, tmp_path / "cad", 2,
                  ["model.d_model=16", "model.d_state=4", "data.batch_size=2"])
    assert m["steps"] == 2 and m["num_dyt"] == 0 and m["valid_loss"] is not None


def _gb(config: str, synthetic: Path, out: Path, extra=(), **kw) -> dict:
    overrides = [*FAST, "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=2",
                 "data.batch_size=32", *extra]
    return evaluate_gb(CONFIGS / "cpu" / config, data=[synthetic / "gb"], overrides=overrides, out=out, **kw)


def test_gb_from_scratch_two_seeds(synthetic, tmp_path):
    m = _gb("caduceus_ph_tiny_gb_dyt.yaml", synthetic, tmp_path / "gb", ["model.d_model=16", "model.d_state=4"],
            seeds=[1, 2])
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["norm"] == "dyt"
    assert [r["seed"] for r in m["per_seed"]] == [1, 2] and "test_accuracy_std" in m
    assert set(m["valid_curve"]) == {"1", "2"}
    assert "synthetic_promoters" in (tmp_path / "gb" / "results.md").read_text()


def test_gb_from_pretraining_checkpoint(synthetic, tmp_path):
    extra = [*HYENA_TINY, "model.l_max=66"]
    _pretrain("hyenadna_tiny_pretrain_layernorm.yaml", synthetic, tmp_path / "pt", 2, extra)
    ckpt = tmp_path / "pt" / "checkpoints" / "last.ckpt"
    m = _gb("hyenadna_tiny_gb_layernorm.yaml", synthetic, tmp_path / "gb", checkpoint=ckpt, seeds=[1])
    assert m["checkpoint"] == str(ckpt) and m["per_seed"][0]["num_parameters"] < 20_000  # the checkpoint's d_model 16
    with pytest.raises(ConfigError, match="norm"):
        _gb("hyenadna_tiny_gb_dyt.yaml", synthetic, tmp_path / "gb2", checkpoint=ckpt, seeds=[1])
