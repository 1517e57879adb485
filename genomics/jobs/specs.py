"""One spec per genomics model kind: its config class, builder, pretraining objective and
dataset, and how a GenomicBenchmarks task sizes it. The jobs look a kind up here instead of
switching on config types; adding a model means adding one spec.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from torch import nn
from torch.utils.data import Dataset

from genomics.models.caduceus import Caduceus, CaduceusConfig
from genomics.models.hyena import HyenaDNA, HyenaDNAConfig


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str  # task-name prefix: "hyenadna" -> hyenadna_pretrain, hyenadna_gb
    config_class: type
    build: Callable[[Any], nn.Module]
    #: pretraining targets: "targets" (next token) or "labels" (masked tokens)
    target_key: str
    #: ``dataset(data_cfg, split, seed, model_cfg)`` for pretraining
    pretrain_dataset: Callable[[Any, str, int, Any], Dataset]
    #: ``sized_for(model_cfg, max_length, checkpoint)``: the model config for GenomicBenchmarks
    #: sequences of ``max_length`` (from scratch, or the pretrained ``checkpoint``'s, which must fit)
    sized_for: Callable[[Any, int, Any], Any] = lambda cfg, max_length, checkpoint: cfg
    default_rc_prob: float = 0.0


def _hyena_windows(d, split: str, seed: int, model_cfg: HyenaDNAConfig) -> Dataset:
    from genomics.data.pretrain import HyenaPretrainDataset

    if d.max_length > model_cfg.l_max:
        raise ValueError(f"data.max_length {d.max_length} exceeds model.l_max {model_cfg.l_max}; raise model.l_max")
    return HyenaPretrainDataset(d.path, split, d.max_length, rc_prob=d.rc_prob if split == "train" else 0.0, seed=seed)


def _caduceus_windows(d, split: str, seed: int, model_cfg: CaduceusConfig) -> Dataset:
    from genomics.data.pretrain import CaduceusMLMDataset

    return CaduceusMLMDataset(d.path, split, d.max_length, mlm_probability=d.mlm_probability,
                              rc_prob=d.rc_prob if split == "train" else 0.0, seed=seed)


def _hyena_sized(cfg: HyenaDNAConfig, max_length: int, checkpoint) -> HyenaDNAConfig:
    """From scratch the implicit filter spans the task's sequences (+2, as the Caduceus
    repository's ``model/hyena.yaml``); a checkpoint's filter keeps its own ``l_max``."""
    if checkpoint is None:
        return dataclasses.replace(cfg, l_max=max_length + 2)
    if max_length > cfg.l_max:
        from bio_speech_dyt.config import ConfigError

        raise ConfigError(f"{checkpoint}: its filters serve sequences up to l_max {cfg.l_max}, "
                          f"the task's are {max_length} long")
    return cfg


SPECS: dict[str, ModelSpec] = {
    s.name: s for s in (
        ModelSpec("hyenadna", HyenaDNAConfig, HyenaDNA, "targets", _hyena_windows, sized_for=_hyena_sized),
        ModelSpec("caduceus", CaduceusConfig, Caduceus, "labels", _caduceus_windows, default_rc_prob=0.5),
    )
}


def spec_for(model_cfg: Any) -> ModelSpec:
    for spec in SPECS.values():
        if type(model_cfg) is spec.config_class:
            return spec
    raise TypeError(f"no genomics model spec for {type(model_cfg).__name__}")


def build_model(model_cfg: Any) -> nn.Module:
    """The model a genomics model config describes."""
    return spec_for(model_cfg).build(model_cfg)
