"""Genomics jobs end to end on the synthetic genome/task: pretraining (both models, metrics,
resume, analysis hook) and GenomicBenchmarks evaluation (scratch and from a checkpoint)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bio_speech_dyt.config import ConfigError
from bio_speech_dyt.harness import RunStateError
from bio_speech_dyt.jobs import load_checkpoint_model, pretrain, resolve
from genomics.tasks import evaluate_gb

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "genomics"
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
    with pytest.raises(RunStateError, match="already holds a run"):
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
    # the fine-tuned model's norm analysis (the report's --analyze), from a seed's best checkpoint
    cfg, model, forward = load_checkpoint_model(tmp_path / "gb" / "synthetic_promoters" / "seed2" / "checkpoints" / "best.ckpt")
    assert cfg.task == "caduceus_gb" and forward().shape == (64, 2)
    assert [n for n, m in model.named_modules() if type(m).__name__ == "DyT"] == [
        "backbone.layers.0.norm", "backbone.layers.1.norm", "backbone.norm_f"]


def test_gb_from_pretraining_checkpoint(synthetic, tmp_path):
    # the checkpoint's filters keep their l_max; the synthetic task's sequences are 200 long
    _pretrain("hyenadna_tiny_pretrain_layernorm.yaml", synthetic, tmp_path / "short", 2, [*HYENA_TINY, "model.l_max=66"])
    with pytest.raises(ConfigError, match="l_max 66"):
        _gb("hyenadna_tiny_gb_layernorm.yaml", synthetic, tmp_path / "gb0",
            checkpoint=tmp_path / "short" / "checkpoints" / "last.ckpt", seeds=[1])
    _pretrain("hyenadna_tiny_pretrain_layernorm.yaml", synthetic, tmp_path / "pt", 2, [*HYENA_TINY, "model.l_max=210"])
    ckpt = tmp_path / "pt" / "checkpoints" / "last.ckpt"
    m = _gb("hyenadna_tiny_gb_layernorm.yaml", synthetic, tmp_path / "gb", checkpoint=ckpt, seeds=[1])
    assert m["checkpoint"] == str(ckpt) and m["per_seed"][0]["num_parameters"] < 20_000  # the checkpoint's d_model 16
    # the checkpoint's architecture wins (a LayerNorm model converted to DyT is fine-tuned as DyT)
    m2 = _gb("hyenadna_tiny_gb_dyt.yaml", synthetic, tmp_path / "gb2", checkpoint=ckpt, seeds=[1])
    assert m2["norm"] == "layernorm"
    assert (tmp_path / "gb2" / "synthetic_promoters" / "seed1" / "metrics.csv").is_file()
    assert (tmp_path / "gb2" / "synthetic_promoters" / "seed1" / "alpha.csv").exists() is False  # no DyT


def test_gb_evaluation_killed_after_its_first_seed_resumes_to_the_same_metrics(synthetic, tmp_path):
    extra = ["model.d_model=16", "model.d_inner=32", "model.filter_order=8"]
    full = _gb("hyenadna_tiny_gb_dyt.yaml", synthetic, tmp_path / "full", extra, seeds=[1, 2])
    # what a kill during seed 2 leaves: seed 1's result, a partial seed 2 folder, no metrics.json
    part = tmp_path / "part"
    _gb("hyenadna_tiny_gb_dyt.yaml", synthetic, part, extra, seeds=[1, 2])
    (part / "metrics.json").unlink()
    (part / "synthetic_promoters" / "seed2" / "result.json").unlink()
    seed1 = (part / "synthetic_promoters" / "seed1" / "result.json").read_bytes()
    with pytest.raises(RunStateError, match="--resume"):
        _gb("hyenadna_tiny_gb_dyt.yaml", synthetic, part, extra, seeds=[1, 2])
    resumed = _gb("hyenadna_tiny_gb_dyt.yaml", synthetic, part, extra, seeds=[1, 2], resume=True)
    assert (part / "synthetic_promoters" / "seed1" / "result.json").read_bytes() == seed1  # kept, not redone
    assert json.loads((part / "metrics.json").read_text()) == {**json.loads((tmp_path / "full" / "metrics.json").read_text())}
    assert resumed["per_seed"] == full["per_seed"]


def _lr_and_losses(run: Path) -> tuple[list[str], list[float], list[float]]:
    import csv

    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train_loss")]
    return [r["step"] for r in rows], [float(r["lr"]) for r in rows], [float(r["train_loss"]) for r in rows]


@pytest.mark.parametrize("config", ["hyenadna_tiny_pretrain_layernorm.yaml", "caduceus_ph_tiny_pretrain_rmsnorm.yaml"])
def test_accumulation_two_equals_a_doubled_batch(synthetic, tmp_path, config):
    """batch 2 x accumulation 2 against batch 4: same schedule, same samples, one metrics.csv row
    per optimizer step with the whole step's loss. HyenaDNA's loss is a plain mean over its
    (equally many) tokens per micro-batch, so its parameters are the same too (fp32); Caduceus's
    is a mean over each micro-batch's masked tokens, whose counts differ, so only close."""
    from safetensors.torch import load_file

    tiny = ["model.d_model=16", "model.d_inner=32", "model.filter_order=8", "model.l_max=66"] \
        if config.startswith("hyena") else ["model.d_model=16", "model.d_state=4"]
    common = [*tiny, "model.embed_dropout=0.0", "optim.warmup_steps=2", "trainer.val_check_interval=3"]
    if config.startswith("caduceus"):
        common = [c for c in common if not c.startswith("model.embed_dropout")]
    _pretrain(config, synthetic, tmp_path / "acc", 6, [*common, "data.batch_size=2", "trainer.accumulate_grad_batches=2"])
    _pretrain(config, synthetic, tmp_path / "big", 6, [*common, "data.batch_size=4"])
    steps_a, lr_a, loss_a = _lr_and_losses(tmp_path / "acc")
    steps_b, lr_b, loss_b = _lr_and_losses(tmp_path / "big")
    assert steps_a == steps_b == [str(k) for k in range(1, 7)]
    assert lr_a == lr_b
    exact = config.startswith("hyena")
    for a, b in zip(loss_a, loss_b):
        assert abs(a - b) <= (1e-5 if exact else 1e-2) * abs(b), (loss_a, loss_b)
    if exact:
        a, b = load_file(tmp_path / "acc" / "model.safetensors"), load_file(tmp_path / "big" / "model.safetensors")
        for k in b:
            scale = b[k].abs().max().item() or 1.0
            assert (a[k] - b[k]).abs().max().item() <= 1e-4 * scale, k
    valid_steps = [r.split(",")[0] for r in (tmp_path / "acc" / "metrics.csv").read_text().splitlines()[1:]
                   if r.split(",")[2] == ""]
    assert valid_steps == ["3", "6"]  # validation by optimizer steps, not micro-batches


def test_gb_caduceus_protocol_keys(synthetic, tmp_path, monkeypatch):
    """init_seed fixes the init across split seeds; schedule_len sets the schedule's horizon."""
    import genomics.jobs.gb_eval as gb
    from genomics.data.gb import GBTask

    class Built(Exception):
        pass

    def recording(model, optim, total, *args):  # stands in for ClassifierModule: record, then stop
        raise Built(total, model.head.weight.detach().clone())

    monkeypatch.setattr(gb, "ClassifierModule", recording)
    task = GBTask.load(synthetic / "gb")

    def built(*sets: str) -> list[tuple]:
        _, cfg = resolve(CONFIGS / "cpu" / "caduceus_ph_tiny_gb_rmsnorm.yaml",
                         ["model.d_model=16", "model.d_state=4", "trainer.max_epochs=2", "data.batch_size=64", *sets])
        out = []
        for seed in (1, 2):
            with pytest.raises(Built) as e:
                gb.fine_tune(cfg, task, seed, tmp_path / str(seed))
            out.append(e.value.args)
        return out

    (total1, w1), (total2, w2) = built("init_seed=7", "data.schedule_len=6400", "data.drop_last=true")
    assert total1 == total2 == 2 * 100 and torch.equal(w1, w2)  # 2 epochs of ceil(6400 / 64), one init
    (total1, w1), (_, w2) = built()
    n_train = round(0.9 * len(task.split("train")[1]))
    assert total1 == pytest.approx(2 * n_train / 64, abs=2.5) and not torch.equal(w1, w2)
