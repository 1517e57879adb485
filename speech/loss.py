"""wav2vec 2.0 loss in bits per masked frame, with fairseq's definition.

fairseq2's ``Wav2Vec2Model.compute_loss`` gives sums over the masked frames: contrastive
cross-entropy, diversity loss and feature penalty (the last two already scaled by the number of
masked frames). fairseq reports ``(contrastive + 0.1·diversity + 10·penalty) / masked frames /
ln 2``; we optimise that same quantity (bits; Adam is invariant to the constant 1/ln 2) and
report each weighted part in bits so that the parts add up to the total.

Validation draws its masks and distractors from a fixed seed per batch (``eval_seed +
batch index``) inside ``torch.random.fork_rng``: two models, or two evaluations of one
checkpoint, are compared on identical masks, and the training RNG stream is untouched.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from fairseq2.models.wav2vec2 import Wav2Vec2Model
from fairseq2.nn import BatchLayout
from torch import Tensor

from speech.models.wav2vec2 import Wav2Vec2ModelConfig, quantizer_compile

LN2 = math.log(2.0)


@dataclasses.dataclass
class LossOutput:
    """One batch. ``loss`` (differentiable) is bits per masked frame; sums are in nats."""

    loss: Tensor
    num_targets: int  # masked frames
    contrastive: float
    diversity: float  # weighted
    penalty: float  # weighted
    correct: int  # masked frames whose true target scores highest
    code_perplexity: float
    prob_perplexity: float
    temperature: float

    def parts(self) -> dict[str, float]:
        """Per-masked-frame scalars for logging (bits, accuracy, perplexities)."""
        n = self.num_targets * LN2
        return {
            "loss_bits": float(self.loss.detach()),
            "contrastive_bits": self.contrastive / n,
            "diversity_bits": self.diversity / n,
            "penalty_bits": self.penalty / n,
            "contrastive_accuracy": self.correct / self.num_targets,
            "code_perplexity": self.code_perplexity,
            "prob_perplexity": self.prob_perplexity,
            "temperature": self.temperature,
        }


def count_correct(logits: Tensor) -> int:
    """Masked frames whose target (candidate 0) has the highest logit; rows where every
    candidate scores the same (argmax and argmin both 0) do not count, as in fairseq."""
    flat = logits.reshape(-1, logits.shape[-1])
    best, worst = flat.argmax(-1) == 0, flat.argmin(-1) == 0
    return int((best & ~worst).sum())


def forward_loss(model: Wav2Vec2Model, waves: Tensor, cfg: Wav2Vec2ModelConfig) -> LossOutput:
    """Run fairseq2's wav2vec 2.0 on ``(batch, samples)`` waveforms and score it."""
    with quantizer_compile(cfg, waves.device):
        losses, output = model(waves, BatchLayout.of(waves), diversity_weight=cfg.diversity_weight,
                               features_penalty_weight=cfg.penalty_weight)
    n = output.num_targets
    q = output.quantizer_output
    return LossOutput(
        loss=losses.aggregate / (n * LN2),
        num_targets=n,
        contrastive=float(losses.contrastive.detach()),
        diversity=cfg.diversity_weight * float(losses.diversity.detach()),
        penalty=cfg.penalty_weight * float(losses.features_penalty.detach()),
        correct=count_correct(output.logits.detach()),
        code_perplexity=float(q.code_perplexity.detach()),
        prob_perplexity=float(q.prob_perplexity.detach()),
        temperature=float(q.temperature),
    )


def eval_loss(model: Wav2Vec2Model, waves: Tensor, cfg: Wav2Vec2ModelConfig, seed: int) -> LossOutput:
    """``forward_loss`` without gradients, masks and distractors drawn from ``seed``."""
    devices = [waves.device] if waves.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        return forward_loss(model, waves, cfg)


@dataclasses.dataclass
class Totals:
    """Sums over a validation set; :meth:`metrics` gives the ``bsd evaluate speech`` keys."""

    frames: int = 0
    total: float = 0.0  # nats
    contrastive: float = 0.0
    diversity: float = 0.0
    penalty: float = 0.0
    correct: int = 0
    code_perplexity: float = 0.0  # frame-weighted sums
    prob_perplexity: float = 0.0

    def add(self, out: LossOutput) -> None:
        n = out.num_targets
        self.frames += n
        self.total += float(out.loss.detach()) * n * LN2
        self.contrastive += out.contrastive
        self.diversity += out.diversity
        self.penalty += out.penalty
        self.correct += out.correct
        self.code_perplexity += out.code_perplexity * n
        self.prob_perplexity += out.prob_perplexity * n

    def metrics(self, num_distractors: int) -> dict[str, float | int]:
        if not self.frames:
            raise ValueError("no masked frames were scored (empty validation set?)")
        n = self.frames * LN2
        return {
            "valid_loss_bits": self.total / n,
            "contrastive_bits": self.contrastive / n,
            "diversity_bits": self.diversity / n,
            "penalty_bits": self.penalty / n,
            "contrastive_accuracy": self.correct / self.frames,
            "code_perplexity": self.code_perplexity / self.frames,
            "prob_perplexity": self.prob_perplexity / self.frames,
            "num_distractors": num_distractors,
            "chance_accuracy": 1.0 / (num_distractors + 1),
            "chance_contrastive_bits": math.log2(num_distractors + 1),
            "masked_frames": self.frames,
        }
