"""Exact resume after SIGKILL: per-step losses and final parameters equal an uninterrupted run."""
import json
import sys

from tests.support.resume_helpers import assert_sigkill_resume_exact, hyenadna_cmd, pretrain_cmd, synthetic_genome



def test_toy_sigkill_resume_is_exact(tmp_path):
    assert_sigkill_resume_exact([sys.executable, "-m", "tests.support.resume_toy"], tmp_path, steps=8)


def test_hyenadna_pretraining_sigkill_resume_is_exact(tmp_path):
    assert_sigkill_resume_exact(hyenadna_cmd(tmp_path, "trainer.max_steps=40"), tmp_path, steps=40)


def test_caduceus_ph_pretraining_sigkill_resume_is_exact(tmp_path):
    # MLM masks and reverse-complement flips are drawn per (pass, window): both must continue exactly
    cmd = pretrain_cmd("configs/genomics/cpu/caduceus_ph_tiny_pretrain_dyt.yaml", synthetic_genome(tmp_path),
                       "data.max_length=64", "model.d_model=16", "trainer.max_steps=20")
    assert_sigkill_resume_exact(cmd, tmp_path, steps=20)


def test_wav2vec2_pretraining_sigkill_resume_is_exact(tmp_path):
    """Batches by step over several passes, random crops (utterances longer than
    max_sample_size), masks, distractors, Gumbel noise and dropout all continue exactly."""
    from speech.data.synthetic import make_synthetic_speech
    from tests.support.speech_helpers import MICRO_MODEL

    corpus = tmp_path / "speech"
    make_synthetic_speech(corpus, seed=2, num_speakers=3, utterances_per_speaker=4, seconds=(1.1, 1.4),
                          valid_fraction=0.34)
    model = [f"model.{k}={json.dumps(v)}" for k, v in MICRO_MODEL.items()]
    cmd = pretrain_cmd("configs/speech/cpu/wav2vec2_tiny_layernorm.yaml", f"data.path={corpus}", *model,
                       "model.dropout=0.1", "data.max_tokens=32000", "data.max_sample_size=16000",
                       "data.min_sample_size=16000", "optim.warmup_steps=2", "trainer.max_steps=20")
    assert_sigkill_resume_exact(cmd, tmp_path, steps=20)
