"""The study driver: grid expansion, plan errors, and a tiny study end to end (2 pretraining cells and a
GB evaluation of one checkpoint on the synthetic data), resumed after a cell is lost part-way."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from bio_speech_dyt.config import ConfigError, load_config
from bio_speech_dyt.study import StudyConfig, main, plan, variants

CPU = Path(__file__).resolve().parents[2] / "configs" / "genomics" / "cpu"
TINY = ["model.d_model=16", "model.d_inner=32", "model.filter_order=8", "model.l_max=210", "data.batch_size=2",
        "data.max_length=64", "trainer.val_check_interval=2", "trainer.limit_val_batches=2",
        "trainer.checkpoint_every_n_steps=2", "trainer.log_every_n_steps=1", "trainer.progress_bar=false"]


def _study(tmp_path: Path, data: dict) -> StudyConfig:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(StudyConfig, path)


def test_grid_times_variants_and_their_cells(tmp_path):
    study = _study(tmp_path, {
        "seeds": [0, 1],
        "stage": {"kind": "genomic-benchmarks", "configs": {"rmsnorm": "r.yaml", "dyt": "d.yaml"}, "data": ["gb"]},
        "grid": {"lr": {"1e-3": ["optim.lr=1e-3"], "2e-3": ["optim.lr=2e-3"]},
                 "task": {"cohn": {"set": ["data.schedule_len=27791"], "data": ["cohn"]}}},
        "variants": {"plain": [], "gain": {"set": ["model.embed_gain=true"], "norms": ["dyt"], "seeds": [5]}},
    })
    v = variants(study)
    assert list(v) == ["1e-3+cohn+plain", "1e-3+cohn+gain", "2e-3+cohn+plain", "2e-3+cohn+gain"]
    gain, labels = v["2e-3+cohn+gain"]
    assert gain.set == ["optim.lr=2e-3", "data.schedule_len=27791", "model.embed_gain=true"]
    assert gain.norms == ["dyt"] and gain.data == ["cohn"] and labels == {"lr": "2e-3", "task": "cohn"}
    cells, evaluation = plan(study, tmp_path / "out")
    assert evaluation == [] and len(cells) == 2 * (2 * 2 + 1)
    gain = [c for c in cells if c.variant == "1e-3+cohn+gain"]
    assert [(c.norm, c.seed) for c in gain] == [("dyt", 5)]
    assert gain[0].args[:6] == ["evaluate", "genomic-benchmarks", "d.yaml", "--data", "cohn", "--seeds"]
    assert gain[0].run_dir == tmp_path / "out" / "genomic-benchmarks" / "1e-3+cohn+gain" / "dyt" / "seed5"


def test_best_is_picked_within_the_held_axes(tmp_path):
    import json as _json

    from bio_speech_dyt.study import summarise

    study = _study(tmp_path, {
        "stage": {"kind": "genomic-benchmarks", "configs": {"dyt": "d.yaml"}, "data": ["gb"], "goal": "max",
                  "metric": "test_accuracy"},
        "grid": {"task": {"a": [], "b": []}, "lr": {"lo": [], "hi": []}}, "best_within": ["task"]})
    cells, _ = plan(study, tmp_path / "out")
    accuracy = {"a+lo+plain": 0.7, "a+hi+plain": 0.8, "b+lo+plain": 0.6, "b+hi+plain": 0.5}
    for c in cells:
        c.run_dir.mkdir(parents=True)
        (c.run_dir / "metrics.json").write_text(_json.dumps({"test_accuracy": accuracy[c.variant]}))
    rows = summarise(cells, study.stage, study.best_within)["rows"]
    assert sorted(r["variant"] for r in rows if r.get("best")) == ["a+hi+plain", "b+lo+plain"]
    with pytest.raises(ConfigError, match="best_within"):
        plan(_study(tmp_path, {"stage": {"configs": {"dyt": "a"}}, "best_within": ["task"]}), tmp_path)


def test_only_and_seeds_select_the_cells_that_run(tmp_path, capsys):
    from bio_speech_dyt.study import selected

    study = _study(tmp_path, {
        "seeds": [0, 1, 2],
        "stage": {"configs": {"layernorm": "l.yaml", "dyt": "d.yaml"}},
        "variants": {"plain": [], "alpha": {"norms": ["dyt"], "set": ["model.alpha_init=2.0"]}},
        "evaluate": {"configs": {"dyt": "g.yaml"}, "data": ["gb"], "seeds": [1, 2], "scratch": True}})
    cells, evaluation = plan(study, tmp_path / "out")
    picked = selected(cells + evaluation, ["alpha"], [0])
    assert [(c.stage, c.variant, c.norm, c.seed) for c in picked] == [
        ("pretrain", "alpha", "dyt", 0), ("evaluate", "alpha", "dyt", 1), ("evaluate", "alpha", "dyt", 2),
        ("evaluate", "scratch", "dyt", 1), ("evaluate", "scratch", "dyt", 2)]
    assert selected(cells, None, None) == cells
    with pytest.raises(ConfigError, match=r"--only: \['nope'\]"):
        selected(cells, ["nope"], None)
    with pytest.raises(ConfigError, match=r"--seeds: \[7\]"):
        selected(cells, None, [7])
    (tmp_path / "s.yaml").write_text((tmp_path / "study.yaml").read_text())
    assert main([str(tmp_path / "s.yaml"), "--dry-run", "--only", "plain", "--seeds", "1,2", "--no-evaluate"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and all("seed=1" in ln or "seed=2" in ln for ln in printed)


def test_report_analyses_each_gb_cells_first_best_checkpoint(tmp_path, monkeypatch):
    import subprocess

    from bio_speech_dyt import study as study_mod

    study = _study(tmp_path, {"seeds": [1, 2], "stage": {
        "kind": "genomic-benchmarks", "configs": {"rmsnorm": "r.yaml", "dyt": "d.yaml"}, "data": ["gb"]}})
    cells, _ = plan(study, tmp_path / "out")
    for c in cells:
        for task in ("a_task", "b_task"):
            (c.run_dir / task / f"seed{c.seed}" / "checkpoints").mkdir(parents=True)
            (c.run_dir / task / f"seed{c.seed}" / "checkpoints" / "best.ckpt").touch()
        (c.run_dir / "metrics.json").write_text("{}")
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append(args) or subprocess.CompletedProcess(args, 0))
    assert study_mod._report(study, cells, tmp_path / "out", 1) == 0
    analysed = [a for prev, a in zip(calls[0], calls[0][1:]) if prev == "--analyze"]
    gb = tmp_path / "out" / "genomic-benchmarks" / "plain"
    assert analysed == [str(gb / n / "seed1" / "a_task" / "seed1" / "checkpoints" / "best.ckpt") for n in ("rmsnorm", "dyt")]


def test_plan_errors_name_the_key(tmp_path):
    bad_norm = {"stage": {"configs": {"layernorm": "a.yaml"}}, "variants": {"x": {"norms": ["dyt"]}}}
    with pytest.raises(ConfigError, match=r"variants.x.norms: \['dyt'\]"):
        plan(_study(tmp_path, bad_norm), tmp_path)
    with pytest.raises(ConfigError, match="analyze must be one of"):
        plan(_study(tmp_path, {"stage": {"configs": {"dyt": "a"}}, "analyze": "yes"}), tmp_path)
    with pytest.raises(ConfigError, match="stage.kind"):
        plan(_study(tmp_path, {"stage": {"kind": "train", "configs": {"dyt": "a"}}}), tmp_path)
    with pytest.raises(ConfigError, match="evaluate.variants"):
        plan(_study(tmp_path, {"stage": {"configs": {"dyt": "a"}},
                               "evaluate": {"configs": {"dyt": "b"}, "data": ["gb"], "variants": ["nope"]}}), tmp_path)
    assert main([str(tmp_path / "study.yaml"), "--dry-run"]) == 2  # the last study: a one-line error


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_study_end_to_end_and_resume(tmp_path):
    from genomics.data.synthetic import prepare_synthetic_genomics

    prepare_synthetic_genomics(tmp_path / "syn", seed=0)
    data = {
        "name": "tiny",
        "seeds": [0],
        "threads": 1,
        "analyze": "none",  # the analysis has its own tests; bsd report still gets every run directory
        "stage": {"kind": "pretrain", "metric": "valid_loss", "references": ["baseline_kmer_loss"],
                  "configs": {"layernorm": str(CPU / "hyenadna_tiny_pretrain_layernorm.yaml"),
                              "dyt": str(CPU / "hyenadna_tiny_pretrain_dyt.yaml")},
                  "set": [f"data.path={tmp_path / 'syn' / 'genome'}", "trainer.max_steps=2", *TINY]},
        "variants": {"plain": []},
        "evaluate": {"kind": "genomic-benchmarks", "data": [str(tmp_path / "syn" / "gb")],
                     "configs": {"dyt": str(CPU / "hyenadna_tiny_gb_dyt.yaml")}, "seeds": [1],
                     "set": ["trainer.max_steps=2", "trainer.val_check_interval=1", "trainer.limit_val_batches=1",
                             "data.batch_size=16", "trainer.progress_bar=false"]},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    assert main([str(tmp_path / "study.yaml"), "--out", str(out), "--jobs", "2", "--no-evaluate"]) == 0
    ln, dyt = (out / "pretrain" / "plain" / n / "seed0" for n in ("layernorm", "dyt"))
    gb = out / "evaluate" / "plain" / "dyt" / "pt0" / "seed1"
    assert (dyt / "metrics.json").is_file() and not gb.exists()  # the main stage only
    assert "evaluate" not in json.loads((out / "study.json").read_text())["stages"]
    assert main([str(tmp_path / "study.yaml"), "--out", str(out), "--jobs", "2"]) == 0
    for d in (ln, dyt, gb):
        assert (d / "metrics.json").is_file() and json.loads((d / ".study_cell.json").read_text())["attempts"] == 1
    assert json.loads((gb / "metrics.json").read_text())["checkpoint"] == str(dyt / "checkpoints" / "last.ckpt")
    summary = json.loads((out / "study.json").read_text())
    rows = {r["norm"]: r for r in summary["stages"]["pretrain"]["rows"]}
    assert rows["dyt"]["mean"] == pytest.approx(json.loads((dyt / "metrics.json").read_text())["valid_loss"])
    assert rows["dyt"]["steps"] == 2 and rows["dyt"]["vs_baseline"]["norm"] == "layernorm"
    assert summary["stages"]["pretrain"]["references"]["baseline_kmer_loss"] > 0
    assert summary["stages"]["evaluate"]["rows"][0]["done"] == 1 and summary["report"] == 0
    assert "| plain | dyt | 1/1 |" in (out / "study.md").read_text() and (out / "study_pretrain_curves.png").is_file()
    assert summary["plots"] == ["study_pretrain_curves.png", "study_pretrain_seeds.png", "study_evaluate_seeds.png"]
    assert all((out / p).is_file() and (out / p).read_bytes()[:4] == b"\x89PNG" for p in summary["plots"])
    assert (out / "report" / "report.md").is_file()

    # the DyT cell loses its result part-way and the study is rerun with more steps: that cell resumes from
    # its step-2 checkpoint to step 4, the LN cell (done) and the evaluation (done) are skipped
    (dyt / "metrics.json").unlink()
    data["stage"]["set"][1] = "trainer.max_steps=4"
    data["report"] = False
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert main([str(tmp_path / "study.yaml"), "--out", str(out)]) == 0
    assert json.loads((dyt / "metrics.json").read_text())["steps"] == 4
    assert [int(r["step"]) for r in _rows(dyt / "metrics.csv") if r.get("train_loss")] == [1, 2, 3, 4]
    assert json.loads((dyt / ".study_cell.json").read_text())["attempts"] == 2
    assert json.loads((ln / ".study_cell.json").read_text())["attempts"] == 1
    assert "resum" in (dyt / ".study.log").read_text().lower() or "step 2" in (dyt / ".study.log").read_text()


STUDIES = sorted((Path(__file__).resolve().parents[2] / "configs" / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_studies_plan_cells_whose_configs_load(path, tmp_path):
    """Every cell of configs/studies/ builds its typed config (the overrides name real keys)."""
    from bio_speech_dyt.jobs import resolve

    root = Path(__file__).resolve().parents[2]
    main_cells, eval_cells = plan(load_config(StudyConfig, path), tmp_path)
    assert main_cells
    seen = set()
    for cell in main_cells + eval_cells:
        args = cell.args
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set" and not args[i + 1].startswith("seed=")]
        if tuple(sets + args[:3]) in seen:
            continue
        seen.add(tuple(sets + args[:3]))
        if args[0] == "pretrain":
            resolve(root / args[1], sets)
        elif args[1] == "genomic-benchmarks":
            resolve(root / args[2], sets)
