"""Speech jobs: configs, `bsd pretrain` (run dir, metrics, resume), `bsd evaluate speech`, CLI."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tests.support.speech_helpers import MICRO_MODEL, librispeech_tree

from bio_speech_dyt import cli
from bio_speech_dyt.jobs import load_checkpoint_model, pretrain, resolve
from bio_speech_dyt.prepared import PUBLISHING, NotPreparedError
from speech.data.synthetic import make_synthetic_speech
from speech.tasks import evaluate_speech
from speech.models.wav2vec2 import build_wav2vec2

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "speech"
PAPER = {"wav2vec2_base": 26, "wav2vec2_large": 50}


@pytest.mark.parametrize("name", sorted(PAPER))
@pytest.mark.parametrize("norm", ["layernorm", "dyt"])
def test_paper_configs(name, norm):
    _, cfg = resolve(CONFIGS / "paper" / f"{name}_{norm}.yaml")
    assert cfg.model.norm == norm and cfg.model.alpha_init == 0.5 and cfg.data.path == "data/librispeech"
    assert (cfg.optim.betas, cfg.optim.eps, cfg.optim.weight_decay) == ((0.9, 0.98), 1e-6, 0.01)
    with torch.device("meta"):
        model, report = build_wav2vec2(cfg.model)
    assert (len(report) if report else 0) == (PAPER[name] if norm == "dyt" else 0)
    if name == "wav2vec2_large":
        assert model.encoder.layer_norm is not None and model.encoder_frontend.layer_norm is None  # pre-LN
        assert (cfg.optim.lr, cfg.trainer.max_steps, cfg.data.max_sample_size) == (3e-4, 250_000, 320_000)
    else:
        assert (cfg.optim.lr, cfg.optim.warmup_steps, cfg.data.max_tokens) == (5e-4, 32_000, 1_400_000)
        assert model.num_distractors == 100 and model.quantizer.num_codebook_entries == 320


@pytest.mark.parametrize("name, data_path", [("wav2vec2_tiny", "data/synthetic/speech"),
                                             ("wav2vec2_small_real", "data/librispeech_sample")])
def test_cpu_configs_follow_the_recipe(name, data_path):
    """LN and DyT differ only in the norm and DyT's alpha0 of the post-extraction norm; the
    contrastive task keeps 10 distractors."""
    (_, ln), (_, dyt) = (resolve(CONFIGS / "cpu" / f"{name}_{norm}.yaml") for norm in ("layernorm", "dyt"))
    assert (ln.model.norm, dyt.model.norm) == ("layernorm", "dyt") and ln.data.path == dyt.data.path == data_path
    assert dyt.model.alpha_init == 0.5
    assert dyt.model.alpha_overrides == {"encoder_frontend.post_extract_layer_norm": 20.0}
    assert ln.model.num_distractors == 10 and ln.optim == dyt.optim and ln.trainer == dyt.trainer
    same = {f: getattr(ln.model, f) for f in vars(ln.model) if f not in ("norm", "alpha_overrides")}
    assert same == {f: getattr(dyt.model, f) for f in same} and ln.data == dyt.data


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech")
    make_synthetic_speech(out, seed=2, num_speakers=3, utterances_per_speaker=3, seconds=(1.1, 1.4),
                          valid_fraction=0.34)
    return out


def _micro_config(tmp: Path, corpus: Path, norm: str) -> Path:
    raw = yaml.safe_load((CONFIGS / "cpu" / "wav2vec2_tiny_layernorm.yaml").read_text())
    raw["model"].update(MICRO_MODEL, norm=norm)
    raw["data"].update(path=str(corpus), max_tokens=32_000, max_sample_size=16_000, min_sample_size=16_000)
    raw["optim"]["warmup_steps"] = 2
    raw["trainer"].update(max_steps=4, val_check_interval=2, checkpoint_every_n_steps=2, log_every_n_steps=1)
    path = tmp / f"micro_{norm}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_pretrain_dyt_run_dir_and_evaluate(tmp_path, corpus):
    run = tmp_path / "run"
    metrics = pretrain(_micro_config(tmp_path, corpus, "dyt"), out=run)
    for key in ("valid_loss_bits", "contrastive_bits", "diversity_bits", "penalty_bits", "contrastive_accuracy",
                "code_perplexity", "samples_per_s", "train_loss", "valid_loss", "num_parameters"):
        assert key in metrics and metrics[key] == metrics[key], key  # present and not NaN
    assert metrics["steps"] == 4 and metrics["num_distractors"] == 5 and metrics["norms_swapped"] == 2 * 2 + 2
    assert json.loads((run / "metrics.json").read_text())["valid_loss_bits"] == metrics["valid_loss_bits"]
    with (run / "alpha.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and "encoder_frontend.post_extract_layer_norm" in rows[0]
    assert json.loads((run / "norm_swaps.json").read_text())["num_swapped"] == 6
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert all(k in header for k in ("train_contrastive_bits", "train_code_perplexity", "valid_contrastive_accuracy"))

    ckpt = run / "checkpoints" / "last.ckpt"
    first = evaluate_speech(ckpt, corpus / "valid.tsv", out=tmp_path / "eval1")
    second = evaluate_speech(ckpt, corpus / "valid.tsv", out=tmp_path / "eval2")
    assert first == {**second, "checkpoint": first["checkpoint"]}  # identical numbers every time
    assert first["valid_loss_bits"] == pytest.approx(metrics["valid_loss_bits"], rel=1e-5)
    assert first["valid_loss_bits"] == pytest.approx(
        first["contrastive_bits"] + first["diversity_bits"] + first["penalty_bits"], rel=1e-5)

    _, model, run_once = load_checkpoint_model(ckpt)  # the report's analysis entry point
    assert torch.isfinite(run_once().loss)


def test_pretrain_refuses_interrupted_or_corrupted_prepare(tmp_path, corpus):
    data = tmp_path / "speech"
    shutil.copytree(corpus, data, symlinks=True)
    cfg = _micro_config(tmp_path, data, "layernorm")
    (data / "train.tsv").write_text((data / "train.tsv").read_text()[:-20])  # a truncated manifest
    with pytest.raises(NotPreparedError, match=r"train\.tsv has .* bytes.*corrupted"):
        pretrain(cfg, out=tmp_path / "run")
    (data / PUBLISHING).touch()  # a prepare killed while publishing: its marker left, no stats.json
    (data / "stats.json").unlink()
    with pytest.raises(NotPreparedError, match="no stats.json"):
        pretrain(cfg, out=tmp_path / "run")


def test_external_fairseq_manifests_are_used_with_a_warning(tmp_path, corpus):
    """A folder of fairseq manifests made elsewhere (no stats.json, no staging folder of ours)."""
    data = tmp_path / "speech"
    shutil.copytree(corpus, data, symlinks=True)
    (data / "stats.json").unlink()
    cfg = _micro_config(tmp_path, data, "layernorm")
    with pytest.warns(UserWarning, match="not written by `bsd prepare librispeech`.*unverified"):
        metrics = pretrain(cfg, ["trainer.max_steps=1"], out=tmp_path / "run")
    assert metrics["steps"] == 1
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.warns(UserWarning, match="unverified"):
        assert evaluate_speech(ckpt, data / "valid.tsv", out=tmp_path / "eval")["utterances"] > 0
    (data / PUBLISHING).touch()  # now it looks like our prepare was killed there: refused
    with pytest.raises(NotPreparedError, match="no stats.json"):
        evaluate_speech(ckpt, data / "valid.tsv", out=tmp_path / "eval")


def test_pretrain_resume_matches_uninterrupted(tmp_path, corpus):
    cfg = _micro_config(tmp_path, corpus, "layernorm")
    full = pretrain(cfg, out=tmp_path / "full")
    pretrain(cfg, ["trainer.max_steps=2"], out=tmp_path / "part")
    resumed = pretrain(cfg, out=tmp_path / "part", resume=True)
    assert resumed["steps"] == 4
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-5)
    assert resumed["valid_loss_bits"] == pytest.approx(full["valid_loss_bits"], rel=1e-5)


def test_cli_prepare_and_evaluate_errors(tmp_path, capsys):
    root = librispeech_tree(tmp_path / "in", {"train-clean-100": ["1", "2", "3"]}, utts=1)
    assert cli.main(["prepare", "librispeech", "--root", str(root), "--valid-fraction", "0.34",
                     "--out", str(tmp_path / "out")]) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["splits"]["valid"]["utterances"] == 1 and stats["splits"]["train"]["utterances"] == 2
    assert cli.main(["evaluate", "speech", "--checkpoint", str(tmp_path / "none.ckpt"),
                     "--manifest", str(tmp_path / "out" / "valid.tsv")]) == 2
    assert "none.ckpt" in capsys.readouterr().err
