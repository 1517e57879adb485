"""Published HyenaDNA / Caduceus checkpoints in and out: every layout imports strictly with the
published parameter counts, logits equal the published formulas, wrong files are clear errors
that write nothing, DyT conversion (fixed and fitted alpha), bitwise export round trips, and the
imported run works with `bsd pretrain` and `bsd evaluate genomic-benchmarks`."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.support.numerics import assert_close_scaled
from tests.support.pretrained_helpers import (
    HYENA_HF_CONFIG,
    HYENA_ORIGINAL_CONFIG,
    caduceus_config,
    caduceus_reference_logits,
    hyena_reference_logits,
    write_caduceus,
    write_hyena_hf,
    write_hyena_original,
)

from bio_speech_dyt.cli import main
from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.jobs import resolve
from bio_speech_dyt.pretrained import CheckpointError, convert_pretrained_norms
from bio_speech_dyt.report.fit import fit_dyt
from bio_speech_dyt.checkpoints import load_weights
from genomics.jobs.specs import build_model
from genomics.models.hyena import HyenaDNA, HyenaDNAConfig
from genomics.pretrained import export_run, import_checkpoint, load_pretrained

TINY_HF = {**HYENA_HF_CONFIG, "d_model": 16, "d_inner": 32, "filter_order": 8, "max_seq_len": 66}
TINY_CADUCEUS = dict(d_model=16, n_layer=2, ssm_cfg={**caduceus_config(False)["ssm_cfg"], "d_state": 4})


pytestmark = pytest.mark.usefixtures("one_thread")


def _write(layout: str, folder: Path, tiny: bool = False, **cfg_over) -> dict:
    """A published-layout folder; returns the state dict written into it."""
    if layout == "hyenadna-hf":
        return write_hyena_hf(folder, {**(TINY_HF if tiny else HYENA_HF_CONFIG), **cfg_over})
    if layout == "hyenadna-original":
        return write_hyena_original(folder, {**HYENA_ORIGINAL_CONFIG, **cfg_over})
    over = {**(TINY_CADUCEUS if tiny else {}), **cfg_over}
    return write_caduceus(folder, caduceus_config(layout.startswith("caduceus-ps"), **over))


def _file_keys(folder: Path) -> set[str]:
    from safetensors import safe_open

    if (folder / "model.safetensors").is_file():
        with safe_open(folder / "model.safetensors", "pt") as fh:
            return set(fh.keys())
    return set(torch.load(folder / "weights.ckpt", weights_only=True)["state_dict"])


LAYOUTS = [("hyenadna-hf", 438_144), ("hyenadna-original", 436_096), ("caduceus-ph", 470_702),
           ("caduceus-ps", 470_702)]


@pytest.mark.parametrize("layout, params", LAYOUTS)
def test_every_layout_imports_strictly_with_the_published_parameter_count(layout, params, tmp_path):
    written = _write(layout, tmp_path / "src")
    assert main(["import", str(tmp_path / "src"), "--out", str(tmp_path / "run")]) == 0
    info = json.loads((tmp_path / "run" / "import.json").read_text())
    assert info["layout"] == layout and info["num_parameters"] == params
    assert set(info["mapped"]) | set(info["ignored"]) == _file_keys(tmp_path / "src")  # every stored key explained
    assert all(reason for reason in info["ignored"].values())
    module, cfg = resolve(tmp_path / "run" / "config.yaml")  # a valid pretrain config
    assert cfg.init_checkpoint == str((tmp_path / "run" / "checkpoints" / "last.ckpt").resolve())
    model = build_model(cfg.model)
    load_weights(model, tmp_path / "run" / "checkpoints" / "last.ckpt")  # strict
    assert sum(p.numel() for p in model.parameters()) == params
    first = next(k for k in written if "embedding" in k)
    assert torch.equal(model.embedding.weight, written[first])


EQUALITY = [("hyenadna-hf", {}), ("hyenadna-original", {}), ("caduceus-ph", {}), ("caduceus-ps", {}),
            ("caduceus-ps-unfused", {"fused_add_norm": False})]


@pytest.mark.parametrize("layout, over", EQUALITY, ids=[e[0] for e in EQUALITY])
def test_logits_equal_the_published_formulas(layout, over, tmp_path):
    written = _write(layout, tmp_path / "src", **over)
    model = load_pretrained(tmp_path / "src")
    ids = torch.randint(7, 12, (2, 24), generator=torch.Generator().manual_seed(1))
    cfg = json.loads((tmp_path / "src" / "config.json").read_text())
    if layout.startswith("hyena"):
        ref = hyena_reference_logits(written, cfg, layout == "hyenadna-hf", ids)
    else:
        ref = caduceus_reference_logits(written, cfg, ids)
    with torch.no_grad():
        out = model(ids)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert float((out.double() - ref).abs().max() / ref.abs().max()) <= 1e-4


def test_ps_fused_and_unfused_paths_differ_on_the_same_weights(tmp_path):
    """The two upstream paths disagree; the import follows the config's (checked above for both)."""
    _write("caduceus-ps", tmp_path / "fused", tiny=True)
    cfg = json.loads((tmp_path / "fused" / "config.json").read_text())
    fused = load_pretrained(tmp_path / "fused")
    info = import_checkpoint(tmp_path / "fused", tmp_path / "run")
    assert info["model"]["rcps_fused_add_norm"] is True and "second channel half" in info["notes"][0]
    unfused = build_model(type(fused.cfg)(**{**info["model"], "rcps_fused_add_norm": False}))
    unfused.load_state_dict(fused.state_dict())
    ids = torch.randint(7, 11, (2, 16))
    with torch.no_grad():
        a, b = fused(ids), unfused.eval()(ids)
    assert float((a - b).norm() / b.norm()) > 0.01
    assert cfg["fused_add_norm"] is True


def _refused(tmp_path: Path, src: Path, match: str, capsys, **kw) -> None:
    out = tmp_path / "run"
    with pytest.raises((CheckpointError, FileNotFoundError), match=match):
        import_checkpoint(src, out, **kw)
    assert not out.exists() and not list(tmp_path.glob(".run.staging-*"))
    assert main(["import", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]) and not out.exists()


def test_caduceus_weights_in_a_hyenadna_folder(tmp_path, capsys):
    _write("caduceus-ph", tmp_path / "cad", tiny=True)
    (tmp_path / "cad" / "config.json").write_text(json.dumps(TINY_HF))  # passed as HyenaDNA
    _refused(tmp_path, tmp_path / "cad", r"model\.safetensors: keys that fit no rule.*caduceus\.backbone", capsys)


def test_truncated_safetensors(tmp_path, capsys):
    _write("hyenadna-hf", tmp_path / "src", tiny=True)
    weights = tmp_path / "src" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    _refused(tmp_path, tmp_path / "src", r"model\.safetensors: not a readable safetensors file", capsys)


def test_config_whose_d_model_disagrees_with_the_weights(tmp_path, capsys):
    _write("caduceus-ps", tmp_path / "src", tiny=True)
    cfg = json.loads((tmp_path / "src" / "config.json").read_text())
    (tmp_path / "src" / "config.json").write_text(json.dumps({**cfg, "d_model": 24}))
    _refused(tmp_path, tmp_path / "src", r"model\.safetensors: .* has shape \(16, 16\), but .*config\.json describes", capsys)


def test_unknown_layout_and_missing_weights(tmp_path, capsys):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    _refused(tmp_path, tmp_path / "bert", r"bert: no known checkpoint layout|not a HyenaDNA or Caduceus", capsys)
    with pytest.raises(CheckpointError, match=r"bert/config\.json: not a HyenaDNA or Caduceus config\.json"):
        import_checkpoint(tmp_path / "bert", tmp_path / "run")
    _write("hyenadna-hf", tmp_path / "noweights", tiny=True)
    (tmp_path / "noweights" / "model.safetensors").unlink()
    _refused(tmp_path, tmp_path / "noweights", r"noweights: no hyenadna-hf weights \(model\.safetensors or pytorch_model\.bin\)", capsys)


class Unpicklable:
    """Stands for the omegaconf objects of a real Lightning checkpoint's hyper-parameters."""


def test_pickled_objects_need_trust_pickle(tmp_path, capsys):
    _write("hyenadna-original", tmp_path / "src")
    ckpt = torch.load(tmp_path / "src" / "weights.ckpt", weights_only=True)
    ckpt["hyper_parameters"] = {"cfg": Unpicklable()}
    torch.save(ckpt, tmp_path / "src" / "weights.ckpt")
    _refused(tmp_path, tmp_path / "src", r"weights\.ckpt: holds the object .*Unpicklable.*--trust-pickle", capsys)
    assert import_checkpoint(tmp_path / "src", tmp_path / "run", trust_pickle=True)["num_parameters"] == 436_096


def test_safetensors_preferred_and_existing_out_refused(tmp_path):
    sd = write_hyena_hf(tmp_path / "src", TINY_HF)
    torch.save({k: torch.zeros_like(v) for k, v in sd.items()}, tmp_path / "src" / "pytorch_model.bin")
    info = import_checkpoint(tmp_path / "src", tmp_path / "run")
    assert info["files"]["weights"].endswith("model.safetensors")
    with pytest.raises(FileExistsError, match="not empty"):
        import_checkpoint(tmp_path / "src", tmp_path / "run")
    (tmp_path / "src" / "model.safetensors").unlink()  # the bin holds every name of the shared frequency
    assert import_checkpoint(tmp_path / "src", tmp_path / "run2")["files"]["weights"].endswith("pytorch_model.bin")


def test_hf_source_goes_through_snapshot_download(tmp_path, monkeypatch):
    import huggingface_hub

    _write("caduceus-ph", tmp_path / "cache", tiny=True)
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id: calls.append(repo_id) or str(tmp_path / "cache"))
    model = load_pretrained("hf:kuleshov-group/caduceus-ph_tiny")
    assert calls == ["kuleshov-group/caduceus-ph_tiny"] and not model.training
    assert model(torch.randint(7, 11, (1, 8))).shape == (1, 8, 16)


def test_import_genomics_stays_cheap():
    code = "import genomics, sys; print('genomics.pretrained' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("layout, norms", [("hyenadna-hf", 5), ("caduceus-ps", 3)])  # 2 layers each
def test_norm_dyt_leaves_no_layernorm_or_rmsnorm(layout, norms, tmp_path):
    _write(layout, tmp_path / "src", tiny=True)
    info = import_checkpoint(tmp_path / "src", tmp_path / "run", norm="dyt", alpha_init=0.8)
    _, cfg = resolve(tmp_path / "run" / "config.yaml")
    model = build_model(cfg.model)
    load_weights(model, tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.RMSNorm)) for m in model.modules())
    dyts = [m for m in model.modules() if isinstance(m, DyT)]
    assert len(dyts) == info["norm_conversion"]["num_swapped"] == norms and all(m.alpha.item() == pytest.approx(0.8) for m in dyts)
    assert cfg.model.norm == "dyt" and info["norm_conversion"]["from"] in ("layernorm", "rmsnorm")


def test_fit_reproduces_a_known_layernorm_within_the_measured_error():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.LayerNorm(64))
    with torch.no_grad():
        model[0].weight.copy_(1 + 0.3 * torch.randn(64))
        model[0].bias.copy_(0.2 * torch.randn(64))
    x = 3 * torch.randn(500, 64) + torch.linspace(-1, 1, 64)  # rows with like statistics: LN is near a tanh
    y = model(x).detach()
    report = convert_pretrained_norms(model, "dyt", "fit", "layernorm", lambda m: m(x))
    (row,) = report["fits"]
    expected = fit_dyt(x.double().numpy(), y.double().numpy())
    dyt = model[0]
    assert isinstance(dyt, DyT) and dyt.alpha.item() == pytest.approx(expected.alpha, rel=1e-6)
    with torch.no_grad():
        measured = float((dyt(x) - y).norm() / y.norm())
    assert measured == pytest.approx(row["rel_error"], rel=1e-3) and measured == pytest.approx(expected.rel_error, rel=1e-3)
    assert measured < 0.2 and row["r2"] > 0.95


def test_fit_recovers_an_exact_dyt():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, (400, 6))
    w, b = rng.normal(1, 0.3, 6), rng.normal(0, 0.2, 6)
    fit = fit_dyt(x, w * np.tanh(0.7 * x) + b)
    assert fit.alpha == pytest.approx(0.7, rel=1e-6)
    assert_close_scaled(torch.as_tensor(fit.weight), torch.as_tensor(w), rtol=1e-5, msg="fitted weight")
    assert_close_scaled(torch.as_tensor(fit.bias), torch.as_tensor(b), rtol=1e-5, msg="fitted bias")
    assert fit_dyt(x, w * np.tanh(0.7 * x), bias=False).bias is None


def _tiny_gb_task(out: Path, max_length: int = 40) -> Path:
    from bio_speech_dyt.prepared import preparing
    from genomics.data.gb import TaskSplit, write_task
    from genomics.data.gb_sources import Example

    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 40), ("test", 16)):
        seqs = ["".join(rng.choice(list("ACGT"), max_length - int(rng.integers(0, 5)))) for _ in range(n)]
        splits[split] = TaskSplit([Example(f"{split}{i}", s, "", split) for i, s in enumerate(seqs)], np.arange(n) % 2)
    with preparing(out, "genomic-benchmarks", {"generator": "test"}):
        write_task(out, "tiny_task", splits, ["a", "b"], max_length=max_length)
    return out


def test_fit_on_a_gb_folder_and_genomic_benchmarks_accepts_the_converted_checkpoint(tmp_path):
    from genomics.tasks import evaluate_gb

    _write("hyenadna-hf", tmp_path / "src", tiny=True)
    task = _tiny_gb_task(tmp_path / "gb")
    assert main(["import", str(tmp_path / "src"), "--out", str(tmp_path / "run"), "--norm", "dyt", "--alpha-init", "fit",
                 "--calibrate", str(task)]) == 0
    fits = json.loads((tmp_path / "run" / "import.json").read_text())["norm_conversion"]["fits"]
    assert len(fits) == 5 and all(0 <= f["rel_error"] < 1 and f["rows"] > 100 for f in fits)
    config = Path(__file__).resolve().parents[2] / "configs" / "genomics" / "cpu" / "hyenadna_tiny_gb_layernorm.yaml"
    overrides = ["trainer.progress_bar=false", "trainer.max_steps=2", "trainer.val_check_interval=1",
                 "trainer.limit_val_batches=1", "data.batch_size=16"]
    m = evaluate_gb(config, data=[task], checkpoint=tmp_path / "run" / "checkpoints" / "last.ckpt", seeds=[1],
                    overrides=overrides, out=tmp_path / "gb_run")
    assert m["norm"] == "dyt" and 0 <= m["test_accuracy"] <= 1


@pytest.mark.parametrize("layout", ["hyenadna-hf", "hyenadna-original", "caduceus-ph", "caduceus-ps"])
def test_import_export_import_is_bitwise(layout, tmp_path):
    _write(layout, tmp_path / "src", tiny=layout != "hyenadna-original")
    import_checkpoint(tmp_path / "src", tmp_path / "run1")
    assert main(["export", str(tmp_path / "run1"), "--format", "hf", "--out", str(tmp_path / "hub")]) == 0
    assert _file_keys(tmp_path / "hub") == _file_keys(tmp_path / "src")
    import_checkpoint(tmp_path / "hub", tmp_path / "run2")
    a, b = (torch.load(tmp_path / r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for r in ("run1", "run2"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_a_run_of_ours_exports_to_the_original_layout_and_back(tmp_path):
    """Our LayerNorm HyenaDNA (shift 0, recomputed filter buffers) survives export + import exactly."""
    from bio_speech_dyt.config import to_dict
    from bio_speech_dyt.pretrained import lightning_checkpoint
    from genomics.jobs.pretrain import CONFIGS

    torch.manual_seed(0)
    cfg = HyenaDNAConfig(d_model=16, n_layer=2, d_inner=32, filter_order=8, l_max=66, embed_dropout=0.0)
    ours = HyenaDNA(cfg).eval()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save(lightning_checkpoint(ours, to_dict(CONFIGS["hyenadna_pretrain"](model=cfg))), tmp_path / "run" / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match="fixes the modulation shift"):
        export_run(tmp_path / "run", "hyenadna-hf", tmp_path / "hf")
    export_run(tmp_path / "run", "hf", tmp_path / "hub")
    assert json.loads((tmp_path / "hub" / "config.json").read_text())["layer"]["shift"] == 0.0
    back = load_pretrained(tmp_path / "hub")
    ids = torch.randint(7, 11, (2, 30))
    with torch.no_grad():
        assert torch.equal(back(ids), ours(ids))
    with pytest.raises(FileExistsError):
        export_run(tmp_path / "run", "hf", tmp_path / "hub")


def test_old_state_dicts_without_filter_buffers_still_load():
    cfg = HyenaDNAConfig(d_model=16, n_layer=1, d_inner=32, filter_order=8, l_max=34)
    old = HyenaDNA(cfg).state_dict()
    assert not any(k.endswith((".z", ".t", ".deltas")) for k in old)
    HyenaDNA(cfg).load_state_dict(old)  # strict
    stored = HyenaDNA(HyenaDNAConfig(**{**cfg.__dict__, "filter_pos_from_checkpoint": True})).state_dict()
    assert set(stored) - set(old) == {f"layers.0.mixer.filter_fn.{k}" for k in ("pos_emb.z", "pos_emb.t", "modulation.deltas")}


def test_pretrain_continues_from_the_import(tmp_path):
    from bio_speech_dyt.jobs import pretrain
    from genomics.data.hg38 import prepare_hg38
    from tests.support.genomics_helpers import random_dna, write_fasta

    _write("hyenadna-hf", tmp_path / "src", tiny=True)
    import_checkpoint(tmp_path / "src", tmp_path / "run")
    fasta = write_fasta(tmp_path / "g.fa", {"chr1": random_dna(np.random.default_rng(0), 40_000)})
    prepare_hg38(fasta=fasta, bed=None, download=False, out=tmp_path / "genome")
    overrides = [f"data.path={tmp_path / 'genome'}", "data.max_length=32", "data.batch_size=2", "trainer.max_steps=1",
                 "trainer.progress_bar=false", "trainer.limit_val_batches=1", "optim.lr=0.0", "optim.warmup_steps=0"]
    pretrain(tmp_path / "run" / "config.yaml", overrides, tmp_path / "more")
    from safetensors.torch import load_file

    before, after = load_file(tmp_path / "run" / "model.safetensors"), load_file(tmp_path / "more" / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_failed_hf_download_is_one_line(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def offline(repo_id):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert main(["import", "hf:LongSafari/nothing", "--out", str(tmp_path / "run")]) == 2
    assert "hf:LongSafari/nothing: download failed (OSError: We couldn't connect" in capsys.readouterr().err
