"""``bsd report``: fake run directories in, Markdown/JSON/PNGs out."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from bio_speech_dyt.cli import main
from bio_speech_dyt.report import load_runs, make_report, pair_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


#: what the harness records in metrics.json per task (its domain and loss unit)
TASKS = {"hyenadna_pretrain": ("genomics", "nats/token"), "caduceus_pretrain": ("genomics", "nats/token"),
         "hyenadna_gb": ("genomics", "nats/sequence"), "caduceus_gb": ("genomics", "nats/sequence"),
         "wav2vec2_pretrain": ("speech", "bits"), "wav2vec2_eval": ("speech", "bits")}


def harness_keys(task: str) -> dict:
    domain, unit = TASKS.get(task, ("unknown", "raw loss"))
    return {"task": task, "domain": domain, "loss_unit": unit}


def make_run(root: Path, name: str, task: str, norm: str, metrics: dict, curves: list[dict] | None = None,
             alpha: list[dict] | None = None, config: dict | None = None) -> Path:
    """A run directory as the harness writes it."""
    d = root / name
    d.mkdir(parents=True)
    cfg = {"task": task, "seed": 0, "model": {"norm": norm, "alpha_init": 0.5, "d_model": 64},
           "optim": {"lr": 0.001}, "data": {"path": "data/synthetic/genome"}, "trainer": {"max_steps": 120}}
    for k, v in (config or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "metrics.json").write_text(json.dumps({**harness_keys(task), **metrics}))
    if curves is not None:
        write_csv(d / "metrics.csv", curves)
    if alpha is not None:
        write_csv(d / "alpha.csv", alpha)
    return d


def pretrain_curves(final: float, steps: int = 120, throughput_key: str = "tokens_per_s", seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(1, steps + 1):
        loss = final + 0.6 * math.exp(-s / 30) + 0.03 * rng.standard_normal()
        rows.append({"step": s, "epoch": 0, "train_loss": loss, "lr": 1e-3, throughput_key: 5000.0})
        if s % 20 == 0:
            rows.append({"step": s, "epoch": 0, "valid_loss": final + 0.6 * math.exp(-s / 30) + 0.02})
    return rows


def alpha_rows(layers: int, steps: int = 120) -> list[dict]:
    return [{"step": s, **{f"backbone.layers.{i}.norm1": 0.5 + 0.002 * s * (i + 1) / layers for i in range(layers)}}
            for s in range(1, steps + 1)]


def gb_metrics(norm: str, accs: dict[str, list[float]], curve: bool = False) -> dict:
    """metrics.json of a GenomicBenchmarks evaluation as genomics.jobs.gb_eval writes it."""
    tasks = {}
    for name, per_seed in accs.items():
        mean = float(np.mean(per_seed))
        tasks[name] = {"task": name, "test_accuracy": mean, "test_accuracy_std": float(np.std(per_seed, ddof=1)),
                       "per_seed": [{"seed": i + 1, "test_accuracy": a} for i, a in enumerate(per_seed)],
                       "valid_curve": {str(i + 1): [{"epoch": e, "step": 10 * (e + 1), "valid_loss": 0.7 - 0.05 * e,
                                                     "valid_accuracy": a - 0.03 * (3 - e)} for e in range(4)]
                                       for i, a in enumerate(per_seed)}}
    metrics = {"norm": norm, "seeds": [1, 2], "tasks": tasks,
               "test_accuracy": float(np.mean([t["test_accuracy"] for t in tasks.values()]))}
    if curve:
        (only,) = tasks.values()
        metrics.update(task=only["task"], per_seed=only["per_seed"], valid_curve=only["valid_curve"])
    return metrics


def speech_eval_metrics(norm: str, bits: float, acc: float) -> dict:
    return {"valid_loss_bits": bits, "contrastive_bits": bits - 0.2, "diversity_bits": 0.15, "penalty_bits": 0.05,
            "contrastive_accuracy": acc, "num_distractors": 10, "norm": norm, "manifest": "valid.tsv",
            **harness_keys("wav2vec2_eval")}


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    dna = {"num_parameters": 436_000, "steps": 120, "baseline_kmer_loss": 1.30, "baseline_unigram_loss": 1.386}
    two_tasks = {"ln": {"human_nontata_promoters": [0.80, 0.82], "human_enhancers_cohn": [0.70, 0.72]},
                 "dyt": {"human_nontata_promoters": [0.83, 0.84], "human_enhancers_cohn": [0.69, 0.71]}}
    paths = [
        make_run(root, "hyena_ln", "hyenadna_pretrain", "layernorm",
                 {**dna, "train_loss": 1.25, "valid_loss": 1.2500, "tokens_per_s": 8000.0}, pretrain_curves(1.25)),
        make_run(root, "hyena_dyt", "hyenadna_pretrain", "dyt",
                 {**dna, "train_loss": 1.24, "valid_loss": 1.2400, "tokens_per_s": 9000.0},
                 pretrain_curves(1.24, seed=1), alpha_rows(4)),
        make_run(root, "w2v_ln", "wav2vec2_pretrain", "layernorm",
                 {"num_parameters": 4_500_000, "steps": 120, "train_loss": 3.0, "valid_loss": 2.9, "samples_per_s": 20.0},
                 pretrain_curves(2.9, throughput_key="samples_per_s")),
        make_run(root, "w2v_dyt", "wav2vec2_pretrain", "dyt",  # no alpha.csv: noted, not fatal
                 {"num_parameters": 4_500_000, "steps": 120, "train_loss": 3.1, "valid_loss": 3.0, "samples_per_s": 19.0},
                 pretrain_curves(3.0, throughput_key="samples_per_s")),
        make_run(root, "gb_ln", "hyenadna_gb", "layernorm", gb_metrics("layernorm", two_tasks["ln"])),
        make_run(root, "gb_dyt", "hyenadna_gb", "dyt", gb_metrics("dyt", two_tasks["dyt"])),
        make_run(root, "cad_gb_rms", "caduceus_gb", "rmsnorm",
                 gb_metrics("rmsnorm", {"human_nontata_promoters": [0.85, 0.86]}, curve=True)),
        make_run(root, "cad_gb_dyt", "caduceus_gb", "dyt",
                 gb_metrics("dyt", {"human_nontata_promoters": [0.86, 0.86]}, curve=True)),
    ]
    for name, norm, bits, acc in (("w2v_ln", "layernorm", 4.1, 0.70), ("w2v_dyt", "dyt", 4.0, 0.74)):
        (root / name / "eval").mkdir()  # bsd evaluate speech's default: RUN_DIR/eval, metrics.json only
        (root / name / "eval" / "metrics.json").write_text(json.dumps(speech_eval_metrics(norm, bits, acc)))
        paths.append(root / name / "eval")
    return paths


def is_real_png(path: Path, min_bytes: int = 8_000) -> bool:
    """A PNG with actual content (a blank figure compresses to a few kB)."""
    import matplotlib.image as mpimg

    if not path.is_file() or path.read_bytes()[:8] != PNG_MAGIC or path.stat().st_size < min_bytes:
        return False
    img = mpimg.imread(path)
    return img.shape[0] > 200 and img.shape[1] > 200 and float(img[..., :3].std()) > 0.02


def test_report_tables_plots_and_json(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    data = make_report(runs, out)
    md = (out / "report.md").read_text()

    # pretraining metric: LN and DyT side by side with the difference
    valid = next(r for r in data["metrics"]["valid_loss"] if r["task"] == "hyenadna_pretrain")
    assert (valid["baseline"], valid["dyt"]) == (1.25, 1.24)
    assert valid["dyt_minus_baseline"] == pytest.approx(-0.01)
    assert valid["unit"] == "nats/token"
    assert "| hyenadna_pretrain | — | `hyena_ln` (LayerNorm) · `hyena_dyt` | nats/token | 1.2500 | 1.2400 | -0.0100 |" in md
    # throughput as a ratio
    tput = data["metrics"]["tokens_per_s"][0]
    assert tput["dyt_over_baseline"] == pytest.approx(9000 / 8000)
    assert "×1.125" in md
    # GenomicBenchmarks accuracy ± std and per seed, in percent, with the mean over datasets
    gb = {(r["task"], r["dataset"]): r for r in data["genomic_benchmarks"]}
    nontata = gb[("hyenadna_gb", "human_nontata_promoters")]
    assert nontata["dyt_minus_baseline_pp"] == pytest.approx(2.5)
    assert "| hyenadna_gb | — | human_nontata_promoters | `gb_ln` (LayerNorm) · `gb_dyt` | 81.00 ± 1.41 | 83.50 ± 0.71 " \
           "| +2.50 | 80.0, 82.0 | 83.0, 84.0 |" in md
    mean = gb[("hyenadna_gb", "mean")]
    assert (mean["baseline_mean_pct"], mean["dyt_mean_pct"]) == pytest.approx((76.0, 76.75))
    assert "**mean of 2**" in md and "**+0.75**" in md
    assert gb[("caduceus_gb", "human_nontata_promoters")]["baseline_norm"] == "rmsnorm"
    assert "`cad_gb_rms` (RMSNorm) · `cad_gb_dyt`" in md
    # speech evaluation (metrics.json only, no config.yaml): paired by norm, named by their run
    evals = data["metrics"]["valid_loss_bits"]
    assert [(r["task"], r["baseline_run"], r["dyt_run"]) for r in evals] == [("wav2vec2_eval", "w2v_ln/eval", "w2v_dyt/eval")]
    assert evals[0]["dyt_minus_baseline"] == pytest.approx(-0.1)
    assert "wav2vec 2.0 contrastive loss" in md and "0.740" in md
    # paper numbers, labelled as such
    assert "wav2vec 2.0 Large" in md and "86.90" in md and "not comparable" in md
    assert {r["model"] for r in data["paper_reference"]} >= {"HyenaDNA", "Caduceus", "wav2vec 2.0 Base"}

    # plots exist, are embedded with relative links and are real images
    expected = {"throughput.png", "alpha-hyena_dyt.png", "curves-hyenadna_pretrain.png", "curves-wav2vec2_pretrain.png",
                "curves-caduceus_gb.png"}
    assert expected <= set(data["plots"])
    for name in data["plots"]:
        assert f"]({name})" in md
        assert is_real_png(out / name), name
    # skips are noted, not fatal
    assert "`w2v_dyt`: no alpha.csv" in md
    assert "`gb_ln`: no metrics.csv and no valid_curve" in md
    # final alpha per layer in the JSON
    hyena_dyt = next(r for r in data["runs"] if r["name"] == "hyena_dyt")
    assert hyena_dyt["alpha_final"]["backbone.layers.3.norm1"] == pytest.approx(0.5 + 0.002 * 120)
    assert json.loads((out / "report.json").read_text())["metrics"]["valid_loss"] == data["metrics"]["valid_loss"]


def test_pairing_by_setting(tmp_path: Path) -> None:
    """Runs of one task that differ in something besides the norm are kept apart."""
    m = {"valid_loss": 1.0}
    paths = [make_run(tmp_path, f"{n}_s{s}", "hyenadna_pretrain", n, m, config={"seed": s})
             for n in ("layernorm", "dyt") for s in (1, 2)]
    pairs = pair_runs(load_runs(paths))
    assert sorted((p.setting, p.baseline.name, p.dyt.name) for p in pairs) == [
        ("seed=1", "layernorm_s1", "dyt_s1"), ("seed=2", "layernorm_s2", "dyt_s2")]


def test_minimal_runs_do_not_crash(tmp_path: Path) -> None:
    """A metrics.csv-only run (no config, no metrics.json) and an unpaired run still report."""
    a = tmp_path / "bare"
    a.mkdir()
    write_csv(a / "metrics.csv", [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.5}])
    b = make_run(tmp_path, "lonely_dyt", "caduceus_pretrain", "dyt", {"valid_loss": 1.1}, alpha=[{"step": 1}])
    data = make_report([a, b], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "`bare`: no config.yaml" in md and "norm unknown" in md
    assert "`lonely_dyt`: alpha.csv has no layer columns" in md
    assert data["metrics"]["valid_loss"][0]["baseline"] is None


def test_not_a_run_directory_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: not a run directory"):
        make_report([tmp_path / "empty"], tmp_path / "out")
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "missing: no such run directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="nothing to report"):
        make_report([], tmp_path / "out")


def test_loss_axis_leaves_out_a_first_step_that_dwarfs_the_curve():
    """An untrained model's first loss (here 100 nats) must not flatten curves that then sit near 1.3."""
    from bio_speech_dyt.report.plots import _clip_top

    steep = np.concatenate([[100.0, 40.0], np.linspace(1.40, 1.30, 98)])
    top = _clip_top([steep, np.linspace(1.45, 1.32, 100)])
    assert top is not None and 1.45 < top < 2.0  # every value after the first steps stays on the axis
    spiky = np.linspace(1.40, 1.30, 200)
    spiky[120] = 30.0  # one rare spike later in training is left above the axis too
    assert 1.40 < _clip_top([spiky]) < 1.7
    assert _clip_top([np.linspace(2.0, 1.3, 100)]) is None  # a curve without an outlier keeps its axis
