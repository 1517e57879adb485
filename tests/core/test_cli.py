"""The `bsd` front door: verbs of the contract, `python -m`, and clear errors."""
import subprocess
import sys

import pytest

from bio_speech_dyt.cli import build_parser, main

VERBS = ("prepare", "pretrain", "evaluate", "report", "bench", "demo")


def test_help_lists_contract_verbs():
    text = build_parser().format_help()
    for verb in VERBS:
        assert verb in text
    prep = subprocess.run([sys.executable, "-m", "bio_speech_dyt", "prepare", "--help"], capture_output=True, text=True)
    assert prep.returncode == 0
    for kind in ("hg38", "genomic-benchmarks", "librispeech", "synthetic"):
        assert kind in prep.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["prepare", "hg38"],  # needs --fasta or --download
        ["prepare", "hg38", "--fasta", "a.fa", "--download"],
        ["evaluate", "speech", "--manifest", "x.tsv"],  # needs --checkpoint
        ["evaluate", "genomic-benchmarks", "c.yaml", "--data", "d", "--seeds", "1,x"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_pretrain_errors_are_clear(tmp_path, capsys):
    assert main(["pretrain", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: nonsense\n")
    assert main(["pretrain", str(cfg)]) == 2
    assert "'task' must be one of" in capsys.readouterr().err
