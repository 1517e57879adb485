"""Equality evidence for ``bsd import``: published-layout checkpoints with random weights (the test
suite's builders, tests/support/pretrained_helpers.py), imported and run in fp32, against the published
forward passes written out as float64 formulas. Prints the largest relative error per model,
``max |ours - reference| / max |reference|`` over several seeds and lengths.

    PYTHONPATH=. python scripts/pretrained_equality.py [--seeds 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from genomics.pretrained import load_pretrained
from tests.support import pretrained_helpers as H


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref).abs().max() / ref.abs().max())


def genomics_cases(root: Path, seed: int):
    """(model, length, relative error) for every DNA layout at the published sizes."""
    hyena = [("HyenaDNA tiny-1k, -hf layout", H.write_hyena_hf, H.HYENA_HF_CONFIG, True),
             ("HyenaDNA tiny-1k, original layout", H.write_hyena_original, H.HYENA_ORIGINAL_CONFIG, False)]
    for name, write, cfg, hf in hyena:
        sd = write(root / f"{name}-{seed}", cfg, seed=seed)
        model = load_pretrained(root / f"{name}-{seed}")
        for length in (64, 1024):
            ids = torch.randint(7, 12, (2, length), generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                yield name, length, _rel(model(ids), H.hyena_reference_logits(sd, cfg, hf, ids))
    for name, cfg in [("Caduceus-Ph d118x4", H.caduceus_config(False)),
                      ("Caduceus-PS d118x4, fused_add_norm: true", H.caduceus_config(True)),
                      ("Caduceus-PS d118x4, fused_add_norm: false", H.caduceus_config(True, fused_add_norm=False))]:
        sd = H.write_caduceus(root / f"{name}-{seed}", cfg, seed=seed)
        model = load_pretrained(root / f"{name}-{seed}")
        ids = torch.randint(7, 12, (2, 128), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            yield name, 128, _rel(model(ids), H.caduceus_reference_logits(sd, cfg, ids))


def speech_cases(root: Path, seed: int):
    from fairseq2.nn import BatchLayout

    from speech.models.wav2vec2 import Wav2Vec2ModelConfig, quantizer_compile
    from speech.pretrained import load_pretrained as load_w2v

    for name, cfg in [("wav2vec 2.0 (fairseq .pt, post-LN)", H.FAIRSEQ_TINY),
                      ("wav2vec 2.0 (fairseq .pt, pre-LN, LN extractor)", H.FAIRSEQ_TINY_PRE)]:
        sd = H.write_fairseq_checkpoint(root / f"w2v-{seed}-{cfg['layer_norm_first']}.pt", cfg, seed=seed)
        model = load_w2v(root / f"w2v-{seed}-{cfg['layer_norm_first']}.pt")
        waves = torch.randn(2, 16_000, generator=torch.Generator().manual_seed(seed))
        ref = H.fairseq_reference(sd, cfg, waves)
        with torch.no_grad(), quantizer_compile(Wav2Vec2ModelConfig(compile_quantizer="never"), waves.device):
            seqs, layout = model.encoder_frontend(waves, BatchLayout.of(waves))
            final = model.final_proj(model.encoder(seqs, layout))
            features, _, _ = model.encoder_frontend.extract_features(waves, BatchLayout.of(waves))
            targets = model.final_target_proj(model.quantizer(features).quantized_vectors)
        yield name + ": final_proj(encoder)", 16_000, _rel(final, ref["final"])
        yield name + ": quantized targets", 16_000, _rel(targets, ref["targets"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    worst: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, length, err in [*genomics_cases(Path(tmp), seed), *speech_cases(Path(tmp), seed)]:
                if err >= worst.get(name, (-1.0, 0))[0]:
                    worst[name] = (err, length)
    print("| model | largest relative error (fp32 vs float64 formulas) | at length |\n|---|---|---|")
    for name, (err, length) in worst.items():
        print(f"| {name} | {err:.2e} | {length} |")
    print(json.dumps({k: v[0] for k, v in worst.items()}))


if __name__ == "__main__":
    main()
