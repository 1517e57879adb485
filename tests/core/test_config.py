"""Typed configs: YAML + --set overrides, and the errors users see."""
import dataclasses

import pytest

from bio_speech_dyt.config import ConfigError, JobConfig, load_config, parse_overrides, to_dict


@dataclasses.dataclass
class ModelCfg:
    norm: str = "layernorm"
    alpha_init: float | dict = 0.5
    d_model: int = 8


@dataclasses.dataclass
class Cfg(JobConfig):
    model: ModelCfg = dataclasses.field(default_factory=ModelCfg)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("task: x\nmodel:\n  norm: dyt\noptim:\n  lr: 0.001\n  betas: [0.9, 0.98]\n")
    cfg = load_config(Cfg, p, ["model.d_model=16", "optim.lr=3e-4", "trainer.devices=2", "model.alpha_init=1"])
    assert cfg.model.norm == "dyt" and cfg.model.d_model == 16
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.optim.betas == (0.9, 0.98)
    assert cfg.trainer.devices == 2 and cfg.model.alpha_init == 1.0
    cfg2 = load_config(Cfg, p, ["model.alpha_init={attention: 0.8, other: 0.2}"])
    assert cfg2.model.alpha_init == {"attention": 0.8, "other": 0.2}
    p.write_text("model:\n  alpha_init: {attention: 0.8}\n")
    assert load_config(Cfg, p, ["model.alpha_init={}"]).model.alpha_init == {}  # {} clears, not merges
    assert to_dict(cfg)["optim"]["betas"] == [0.9, 0.98]


def test_unknown_key_lists_valid_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  nrom: dyt\n")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) model\.nrom.*valid keys under model: alpha_init, d_model, norm"):
        load_config(Cfg, p)
    with pytest.raises(ConfigError, match="unknown config key.*trainer.max_step"):
        load_config(Cfg, None, ["trainer.max_step=3"])


@dataclasses.dataclass
class SpeechModelCfg:
    alpha_overrides: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SpeechCfg(JobConfig):
    model: SpeechModelCfg = dataclasses.field(default_factory=SpeechModelCfg)


def test_wrong_type_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="trainer.max_steps: expected int, got 'many'"):
        load_config(Cfg, None, ["trainer.max_steps=many"])
    with pytest.raises(ConfigError, match=r"alpha_overrides.encoder: expected float, got \{'x': 2\}"):
        # a dotted --set key inside a mapping field nests; the error says so instead of ignoring it
        load_config(SpeechCfg, None, ["model.alpha_overrides.encoder.x=2"])
    with pytest.raises(ConfigError, match="model.d_model: expected int, got 1.5"):
        load_config(Cfg, None, ["model.d_model=1.5"])
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(Cfg, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Cfg, bad)


def test_parse_overrides_errors():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["a.b"])
    with pytest.raises(ConfigError, match="bad key"):
        parse_overrides(["a..b=1"])
