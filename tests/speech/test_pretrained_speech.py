"""Published wav2vec 2.0 checkpoints in: fairseq .pt files through fairseq2's own conversion (and
the adapter for its two gaps), fairseq2 checkpoints and asset cards; outputs equal fairseq's
formulas; DyT conversion; the run works with `bsd evaluate speech`'s loader."""
from __future__ import annotations

import json

import pytest
import torch
from fairseq2.models.wav2vec2 import convert_wav2vec2_state_dict, create_wav2vec2_model
from fairseq2.nn import BatchLayout
from tests.support.pretrained_helpers import (
    FAIRSEQ_TINY,
    FAIRSEQ_TINY_PRE,
    fairseq_reference,
    fairseq_wav2vec2_state,
    write_fairseq_checkpoint,
)

from bio_speech_dyt.cli import main
from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.pretrained import CheckpointError
from speech.jobs.pretrain import restore
from speech.models.wav2vec2 import fairseq2_arch, model_config_for, quantizer_compile
from speech.pretrained import (
    FAIRSEQ,
    FAIRSEQ2,
    _match_arch,
    convert_fairseq_state_dict,
    detect,
    fairseq2_config_from_fairseq,
    import_checkpoint,
    load_pretrained,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _outputs(model, waves: torch.Tensor) -> dict[str, torch.Tensor]:
    """The imported model's encoder output, final projection and quantized targets (eval, no masking)."""
    with torch.no_grad(), quantizer_compile(model_config_for(fairseq2_arch("base")), waves.device):
        seqs, layout = model.encoder_frontend(waves, BatchLayout.of(waves))
        encoder = model.encoder(seqs, layout)
        features, _, _ = model.encoder_frontend.extract_features(waves, BatchLayout.of(waves))
        targets = model.final_target_proj(model.quantizer(features).quantized_vectors)
    return {"encoder": encoder, "final": model.final_proj(encoder), "targets": targets}


@pytest.mark.parametrize("cfg", [FAIRSEQ_TINY, FAIRSEQ_TINY_PRE], ids=["post-ln", "pre-ln"])
def test_fairseq_checkpoint_imports_and_equals_fairseq_formulas(cfg, tmp_path):
    sd = write_fairseq_checkpoint(tmp_path / "w2v.pt", cfg)
    assert detect(tmp_path / "w2v.pt") == FAIRSEQ
    assert main(["import", str(tmp_path / "w2v.pt"), "--out", str(tmp_path / "run")]) == 0
    info = json.loads((tmp_path / "run" / "import.json").read_text())
    assert set(info["mapped"]) | set(info["ignored"]) == set(sd) and not info["ignored"]
    assert info["mapped"]["mask_emb"] == "masker.temporal_mask_embed"
    assert info["mapped"]["encoder.pos_conv.0.weight_g"] == "encoder_frontend.pos_encoder.conv.weight_g"
    norm_key = "encoder_frontend.layer_norm.weight" if not cfg["layer_norm_first"] else "encoder.layer_norm.weight"
    assert info["mapped"]["encoder.layer_norm.weight"] == norm_key
    model = load_pretrained(tmp_path / "w2v.pt")
    waves = torch.randn(2, 2000, generator=torch.Generator().manual_seed(0))
    ours, ref = _outputs(model, waves), fairseq_reference(sd, cfg, waves)
    for key in ("encoder", "final", "targets"):
        assert ours[key].shape == ref[key].shape
        assert float((ours[key].double() - ref[key]).abs().max() / ref[key].abs().max()) <= 1e-4, key
    run_cfg, restored = restore(tmp_path / "run" / "checkpoints" / "last.ckpt")  # what `bsd evaluate speech` loads
    assert run_cfg.model.norm_order == ("pre" if cfg["layer_norm_first"] else "post")
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), model.state_dict().values()))


def test_adapter_recognises_fairseqs_mask_emb():
    """fairseq2 0.8.1 takes its fairseq branch only when `mask_emb.weight` exists; fairseq stores `mask_emb`."""
    sd = fairseq_wav2vec2_state(FAIRSEQ_TINY)
    arch = fairseq2_config_from_fairseq(FAIRSEQ_TINY, "cfg")
    untouched = convert_wav2vec2_state_dict(dict(sd), arch)
    assert "mask_emb" in untouched and "feature_extractor.conv_layers.0.0.weight" in untouched  # nothing converted
    converted = convert_fairseq_state_dict(dict(sd), arch)
    assert torch.equal(converted["masker.temporal_mask_embed"], sd["mask_emb"])
    assert "encoder_frontend.feature_extractor.layers.0.conv.weight" in converted
    assert "masker.temporal_mask_embed.weight" not in converted and "mask_emb.weight" not in converted


def test_adapter_maps_the_weight_normed_positional_conv():
    """fairseq2 0.8.1 has no rule for encoder.pos_conv.0.{weight_g,weight_v,bias} (depth 1)."""
    sd = fairseq_wav2vec2_state(FAIRSEQ_TINY)
    arch = fairseq2_config_from_fairseq(FAIRSEQ_TINY, "cfg")
    fs2_only = convert_wav2vec2_state_dict({**sd, "mask_emb.weight": sd["mask_emb"]}, arch)
    assert "encoder.pos_conv.0.weight_g" in fs2_only  # left unconverted by fairseq2 alone
    converted = convert_fairseq_state_dict(dict(sd), arch)
    for part in ("weight_g", "weight_v", "bias"):
        assert torch.equal(converted[f"encoder_frontend.pos_encoder.conv.{part}"], sd[f"encoder.pos_conv.0.{part}"])
    create_wav2vec2_model(arch).load_state_dict(converted)  # strict


def test_old_args_namespace_needs_trust_pickle(tmp_path, capsys):
    write_fairseq_checkpoint(tmp_path / "old.pt", old_args=True)
    assert main(["import", str(tmp_path / "old.pt"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "old.pt: holds the object argparse.Namespace" in err and "--trust-pickle" in err
    assert not (tmp_path / "run").exists()
    assert import_checkpoint(tmp_path / "old.pt", tmp_path / "run", trust_pickle=True)["layout"] == FAIRSEQ


def test_unsupported_fairseq_settings_are_named(tmp_path):
    write_fairseq_checkpoint(tmp_path / "w2v.pt", {**FAIRSEQ_TINY, "quantize_targets": False})
    with pytest.raises(CheckpointError, match=r"w2v\.pt: cfg model\.quantize_targets = False"):
        import_checkpoint(tmp_path / "w2v.pt", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _fairseq2_checkpoint(path, seed: int = 0):
    """A fairseq2-layout checkpoint ({"model": fairseq2 state dict}) of the tiny architecture."""
    arch = fairseq2_config_from_fairseq(FAIRSEQ_TINY, "cfg")
    torch.manual_seed(seed)
    model = create_wav2vec2_model(arch).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save({"model": model.state_dict()}, path)
    return arch, model


def test_fairseq2_asset_card(tmp_path, monkeypatch):
    import speech.pretrained as sp

    arch, original = _fairseq2_checkpoint(tmp_path / "fs2.pt")
    monkeypatch.setattr(sp, "_card_checkpoint", lambda name: (tmp_path / "fs2.pt", arch))  # the download
    assert detect(tmp_path / "fs2.pt") == FAIRSEQ2
    info = import_checkpoint("fairseq2:wav2vec2_tiny", tmp_path / "run")
    assert info["layout"] == "wav2vec2-fairseq2-card" and info["num_parameters"] == sum(p.numel() for p in original.parameters())
    waves = torch.randn(1, 1600)
    ours, theirs = _outputs(load_pretrained("fairseq2:wav2vec2_tiny"), waves), _outputs(original, waves)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_bare_fairseq2_file_takes_the_architecture_its_tensors_fit(tmp_path):
    with torch.device("meta"):
        base = create_wav2vec2_model(fairseq2_arch("base")).state_dict()
    assert _match_arch(base, tmp_path / "x.pt")[0] == "base"
    _fairseq2_checkpoint(tmp_path / "fs2.pt")
    with pytest.raises(CheckpointError, match=r"fs2\.pt: its tensors fit none of fairseq2's .*fairseq2:CARD"):
        import_checkpoint(tmp_path / "fs2.pt", tmp_path / "run")


def test_norm_dyt_swaps_every_layernorm(tmp_path):
    write_fairseq_checkpoint(tmp_path / "w2v.pt", FAIRSEQ_TINY_PRE)
    info = import_checkpoint(tmp_path / "w2v.pt", tmp_path / "run", norm="dyt", alpha_init=0.7)
    # 2 per layer, the encoder's final norm, the post-extraction norm, one per extractor layer
    assert info["norm_conversion"]["num_swapped"] == 2 * 2 + 1 + 1 + 3
    cfg, model = restore(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert cfg.model.norm == "dyt"
    from bio_speech_dyt.convert import classify_norm

    assert not any(classify_norm(m)[0] == "layernorm" for m in model.modules())
    assert sum(isinstance(m, DyT) for m in model.modules()) == 9


def test_fit_on_librispeech_manifests(tmp_path):
    from speech.data.prepare import prepare_librispeech
    from tests.support.speech_helpers import librispeech_tree

    root = librispeech_tree(tmp_path / "in", {"dev-clean": ["100", "200", "300", "400"]})
    prepare_librispeech(root=root, valid_fraction=0.25, seed=0, out=tmp_path / "manifests")
    write_fairseq_checkpoint(tmp_path / "w2v.pt", FAIRSEQ_TINY)
    info = import_checkpoint(tmp_path / "w2v.pt", tmp_path / "run", norm="dyt", alpha_init="fit",
                             calibrate=tmp_path / "manifests")
    fits = info["norm_conversion"]["fits"]
    assert len(fits) == 2 * 2 + 2 and all(0 <= f["rel_error"] < 1 and f["rows"] > 10 for f in fits)
    cfg, model = restore(tmp_path / "run" / "checkpoints" / "last.ckpt")
    alphas = {f["path"]: f["alpha"] for f in fits}
    assert model.get_submodule(fits[0]["path"]).alpha.item() == pytest.approx(alphas[fits[0]["path"]], rel=1e-6)
