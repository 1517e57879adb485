"""Sequence classification on top of a DNA backbone (GenomicBenchmarks fine-tuning).

Hidden states after the final norm are mean-pooled over positions (padding masked by
default; ``mask_padding=False`` pools over padding too, as the HyenaDNA/Caduceus decoders
do), the backbone merges its strands (Caduceus-PS: RC-invariant features) and a linear layer
gives the logits. ``conjoin=True`` is Caduceus-Ph's post-hoc conjoining: in eval mode the
logits of ``x`` and of its reverse complement are averaged.
"""
from __future__ import annotations

from torch import Tensor, nn

from genomics.tokenizer import PAD_ID, reverse_complement_ids


def mean_pool(h: Tensor, mask: Tensor | None) -> Tensor:
    """(B, L, H) -> (B, H): mean over positions where ``mask`` (B, L) is true (all if None)."""
    if mask is None:
        return h.mean(dim=1)
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class SequenceClassifier(nn.Module):
    """``backbone`` provides ``hidden(ids) -> (B, L, H)``, ``merge_strands(pooled) -> (B, feature_dim)``
    and ``feature_dim``."""

    def __init__(self, backbone: nn.Module, num_classes: int, mask_padding: bool = True, conjoin: bool = False):
        super().__init__()
        self.backbone = backbone
        self.mask_padding = mask_padding
        self.conjoin = conjoin
        self.head = nn.Linear(backbone.feature_dim, num_classes)

    def _logits(self, input_ids: Tensor) -> Tensor:
        mask = input_ids != PAD_ID if self.mask_padding else None
        pooled = mean_pool(self.backbone.hidden(input_ids), mask)
        return self.head(self.backbone.merge_strands(pooled))

    def forward(self, input_ids: Tensor) -> Tensor:
        logits = self._logits(input_ids)
        if self.conjoin and not self.training:
            logits = (logits + self._logits(reverse_complement_ids(input_ids))) / 2
        return logits
