"""``bsd import`` for wav2vec 2.0: fairseq2 checkpoints (a file, or an asset card ``fairseq2:CARD``:
``wav2vec2_base``, ``wav2vec2_large``, ``wav2vec2_large_lv60k``) and fairseq ``.pt`` files, into the
fairseq2 model our speech jobs train.

Keys go through fairseq2's own interop conversion (``convert_wav2vec2_state_dict``), never a map
of ours. fairseq2 0.8.1's conversion does not take a fairseq checkpoint as shipped; the adapter
:func:`convert_fairseq_state_dict` closes its two gaps. The architecture of a fairseq checkpoint is
rebuilt from its ``cfg["model"]`` (or old ``args``) with fairseq's field names, that of a fairseq2
one comes from its asset card (a bare file: the registered architecture its tensors fit); either
is then expressed as our ``Wav2Vec2ModelConfig`` (refused if ours cannot express it exactly).

Files load with ``weights_only=True``. Real fairseq checkpoints keep their config as omegaconf
objects (or an argparse ``Namespace``), which only ``--trust-pickle`` (and the omegaconf package)
can read.
"""
from __future__ import annotations

import ast
import pickletools
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch
from fairseq2.models.transformer import TransformerNormOrder
from fairseq2.models.wav2vec2 import Wav2Vec2Config, convert_wav2vec2_state_dict, create_wav2vec2_model
from torch import Tensor, nn

from bio_speech_dyt.config import to_dict
from bio_speech_dyt.pretrained import (
    HF_PREFIX,
    LAST_CKPT,
    CheckpointError,
    CheckpointNotFoundError,
    Imported,
    MappedState,
    load_mapped,
    load_torch_file,
    num_parameters,
    refuse_existing,
)
from speech.models.wav2vec2 import Wav2Vec2ModelConfig, build_wav2vec2, fairseq2_arch, model_config_for

CARD_PREFIX = "fairseq2:"
FAIRSEQ, FAIRSEQ2, FAIRSEQ2_CARD = "wav2vec2-fairseq", "wav2vec2-fairseq2", "wav2vec2-fairseq2-card"
FAIRSEQ2_ARCHS = ("base", "large", "large_lv60k")
POS_CONV_FAIRSEQ, POS_CONV_FAIRSEQ2 = "encoder.pos_conv.0.", "encoder_frontend.pos_encoder.conv."
MASK_EMB_MARKER = "mask_emb.weight"  # the key fairseq2 0.8.1 looks for to recognise fairseq
CALIBRATION_SAMPLES = 400_000  # waveform samples in the --alpha-init fit batch


# -- detection ------------------------------------------------------------------------------------


def _pickle_strings(path: Path) -> set[str]:
    """The strings in a torch file's pickle (its state-dict keys among them), read with pickletools,
    which parses opcodes without unpickling anything: the zip format, or the legacy one (three small
    pickles, then the object's)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
                if name is None:
                    return set()
                with z.open(name) as fh:
                    return {arg for _, arg, _ in pickletools.genops(fh) if isinstance(arg, str)}
        with open(path, "rb") as fh:
            for _ in range(3):  # magic number, protocol version, system info
                for _ in pickletools.genops(fh):
                    pass
            return {arg for _, arg, _ in pickletools.genops(fh) if isinstance(arg, str)}
    except (ValueError, EOFError, OSError, zipfile.BadZipFile):  # not a pickle at all
        return set()


def detect(src: str | Path) -> str | None:
    """``fairseq2:CARD``, or a torch file whose keys are fairseq's or fairseq2's wav2vec 2.0."""
    text = str(src)
    if text.startswith(CARD_PREFIX):
        return FAIRSEQ2_CARD
    if text.startswith(HF_PREFIX):
        return None
    path = Path(text)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    strings = _pickle_strings(path) if path.is_file() else set()
    if "mask_emb" in strings and "feature_extractor.conv_layers.0.0.weight" in strings:
        return FAIRSEQ
    if any(s.startswith("encoder_frontend.feature_extractor.") for s in strings):
        return FAIRSEQ2
    return None


# -- fairseq -> fairseq2 --------------------------------------------------------------------------


def convert_fairseq_state_dict(state: dict[str, Any], config: Wav2Vec2Config) -> dict[str, Any]:
    """fairseq2's ``convert_wav2vec2_state_dict`` on a fairseq wav2vec 2.0 state dict as fairseq ships
    it. fairseq2 0.8.1 has two gaps, both closed here and nothing else done:

    1. it takes its fairseq branch only when a key ``mask_emb.weight`` exists, but fairseq stores the
       mask embedding as ``mask_emb``: a marker key under that name is added (its renamed copy,
       ``masker.temporal_mask_embed.weight``, is dropped again);
    2. it has no rule for the weight-normed positional convolution of depth 1,
       ``encoder.pos_conv.0.{weight_g,weight_v,bias}`` (its rule ``encoder.pos_conv.N.0.`` is for
       stacked convolutions): those keys are renamed to ``encoder_frontend.pos_encoder.conv.*`` first.

    Values pass through untouched, so the keys alone can be converted (a dict of names) to see the map.
    """
    renamed = {(POS_CONV_FAIRSEQ2 + k[len(POS_CONV_FAIRSEQ):] if k.startswith(POS_CONV_FAIRSEQ) else k): v
               for k, v in state.items()}
    if MASK_EMB_MARKER in renamed:
        raise CheckpointError(f"unexpected key {MASK_EMB_MARKER} in a fairseq wav2vec 2.0 state dict")
    renamed[MASK_EMB_MARKER] = MASK_EMB_MARKER
    out = convert_wav2vec2_state_dict(renamed, config)
    del out["masker.temporal_mask_embed.weight"]
    return out


def _literal(value: Any, path: Path, key: str) -> Any:
    """fairseq keeps ``conv_feature_layers`` (and sometimes ``latent_temp``) as Python source, e.g.
    ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``: evaluated here for number/list/tuple literals, + and *."""
    if not isinstance(value, str):
        return value

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = ev(node.left), ev(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(ast.dump(node))

    try:
        return ev(ast.parse(value, mode="eval"))
    except (SyntaxError, ValueError, TypeError):
        raise CheckpointError(f"{path}: cfg model.{key} {value!r} is not a list/number expression") from None


FAIRSEQ_UNSUPPORTED = {  # fairseq field: (value we support, what else means)
    "quantize_targets": (True, "no quantizer (fairseq2's wav2vec 2.0 always quantizes its targets)"),
    "quantize_input": (False, "a quantized encoder input"), "target_glu": (False, "a GLU on the targets"),
    "negatives_from_everywhere": (False, "distractors from unmasked frames"),
    "cross_sample_negatives": (0, "cross-sample distractors"), "codebook_negatives": (0, "codebook distractors"),
    "quantizer_depth": (1, "a deeper quantizer projection"), "layer_type": ("transformer", "conformer layers"),
    "activation_fn": ("gelu", "another FFN activation"), "pos_conv_depth": (1, "a stacked positional convolution"),
    "pos_enc_type": ("abs", "another positional encoding"),
}


def fairseq2_config_from_fairseq(model: Mapping[str, Any], path: Path) -> Wav2Vec2Config:
    """fairseq2's ``Wav2Vec2Config`` for a fairseq checkpoint's ``cfg["model"]`` (fairseq's field
    names and defaults: fairseq/models/wav2vec/wav2vec2.py ``Wav2Vec2Config``)."""
    if model.get("_name", "wav2vec2") != "wav2vec2":
        raise CheckpointError(f"{path}: a fairseq {model.get('_name')!r} model, not wav2vec 2.0 pretraining")
    for key, (ok, what) in FAIRSEQ_UNSUPPORTED.items():
        if key in model and model[key] != ok:
            raise CheckpointError(f"{path}: cfg model.{key} = {model[key]!r} ({what}) is not supported")
    extractor = model.get("extractor_mode", "default")
    if extractor not in ("default", "layer_norm"):
        raise CheckpointError(f"{path}: cfg model.extractor_mode {extractor!r} is not supported")
    layers = [tuple(int(v) for v in layer) for layer in _literal(
        model.get("conv_feature_layers", "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"), path, "conv_feature_layers")]
    dim = int(model.get("encoder_embed_dim", 768))
    final_dim = int(model.get("final_dim", 0)) or dim
    pre = bool(model.get("layer_norm_first", False))
    cfg = fairseq2_arch("base")
    enc = cfg.encoder_config
    enc.model_dim, enc.feature_dim, enc.feature_extractor_layer_descs = dim, layers[-1][0], layers
    enc.num_encoder_layers = int(model.get("encoder_layers", 12))
    enc.num_encoder_attn_heads = int(model.get("encoder_attention_heads", 12))
    enc.ffn_inner_dim = int(model.get("encoder_ffn_embed_dim", 3072))
    enc.first_pass_dropout_p = float(model.get("dropout_input", 0.0))
    enc.layer_norm_features = not pre
    enc.norm_order = TransformerNormOrder.PRE if pre else TransformerNormOrder.POST
    enc.feature_extractor_bias = bool(model.get("conv_bias", False))
    enc.feature_extractor_layer_norm_convs = extractor == "layer_norm"
    enc.feature_grad_scale = float(model.get("feature_grad_mult", 1.0))
    enc.pos_conv_kernel_size, enc.num_pos_conv_groups = int(model.get("conv_pos", 128)), int(model.get("conv_pos_groups", 16))
    enc.dropout_p, enc.attn_dropout_p = float(model.get("dropout", 0.1)), float(model.get("attention_dropout", 0.1))
    enc.ffn_inner_dropout_p, enc.layer_drop_p = float(model.get("activation_dropout", 0.0)), float(model.get("encoder_layerdrop", 0.0))
    cfg.final_dim, cfg.quantized_dim = final_dim, int(model.get("latent_dim", 0)) or final_dim
    cfg.num_codebooks, cfg.num_codebook_entries = int(model.get("latent_groups", 2)), int(model.get("latent_vars", 320))
    cfg.codebook_sampling_temperature = tuple(float(v) for v in _literal(model.get("latent_temp", (2, 0.5, 0.999995)), path, "latent_temp"))
    cfg.temporal_mask_span_len, cfg.max_temporal_mask_prob = int(model.get("mask_length", 10)), float(model.get("mask_prob", 0.65))
    cfg.spatial_mask_span_len = int(model.get("mask_channel_length", 10))
    cfg.max_spatial_mask_prob = float(model.get("mask_channel_prob", 0.0))
    cfg.num_distractors, cfg.logit_temp = int(model.get("num_negatives", 100)), float(model.get("logit_temp", 0.1))
    return cfg


def _fairseq_model_cfg(data: Mapping, path: Path) -> dict[str, Any]:
    """The model section of a fairseq checkpoint: ``cfg["model"]`` (fairseq ≥ 0.10, omegaconf) or
    the attributes of the old ``args`` namespace."""
    cfg = data.get("cfg")
    if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
        model = cfg["model"]
    elif data.get("args") is not None:
        model = vars(data["args"])
    else:
        raise CheckpointError(f"{path}: a fairseq checkpoint needs cfg['model'] (or args) to rebuild its architecture")
    return {key: model[key] for key in model}


def _match_arch(state: dict[str, Tensor], path: Path) -> tuple[str, Wav2Vec2Config]:
    """The registered fairseq2 architecture whose tensors (names and shapes) ``state`` has."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for name in FAIRSEQ2_ARCHS:
        arch = fairseq2_arch(name)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in create_wav2vec2_model(arch).state_dict().items()}
        if expected == shapes:
            return name, arch
    raise CheckpointError(f"{path}: its tensors fit none of fairseq2's wav2vec 2.0 architectures "
                          f"({', '.join(FAIRSEQ2_ARCHS)}); import it through its asset card (fairseq2:CARD)")


def _card_checkpoint(name: str) -> tuple[Path, Wav2Vec2Config]:
    """An asset card's checkpoint (downloaded by fairseq2's asset store, cached) and model config."""
    import fairseq2
    from fairseq2.assets import AssetCardError, AssetNotFoundError, get_asset_download_manager, get_asset_store
    from fairseq2.error import InvalidOperationError
    from fairseq2.models.wav2vec2 import get_wav2vec2_model_hub

    try:
        fairseq2.init_fairseq2()
    except InvalidOperationError:  # already initialised in this process
        pass
    try:
        card = get_asset_store().retrieve_card(name)
        config = get_wav2vec2_model_hub().get_model_config(card)
    except AssetNotFoundError:
        raise CheckpointError(f"{CARD_PREFIX}{name}: fairseq2 knows no asset card of that name") from None
    except AssetCardError as e:  # e.g. a card of another model family
        raise CheckpointError(f"{CARD_PREFIX}{name}: {e}") from None
    uri = card.field("checkpoint").as_uri()
    return (uri.to_path() if uri.scheme == "file" else get_asset_download_manager().download_model(uri)), config


def _mapped(state: dict[str, Tensor], config: Wav2Vec2Config, fairseq: bool) -> MappedState:
    """The converted state dict, with each original key's fate: converting the names alone gives the map."""
    convert = convert_fairseq_state_dict if fairseq else convert_wav2vec2_state_dict
    out = MappedState({}, {}, {})
    for new, old in convert({k: k for k in state}, config).items():
        if isinstance(old, str):
            out.state[new], out.mapped[old] = state[old], new
        else:
            out.state[new] = old
            out.filled[new] = "added by fairseq2's conversion (the Gumbel schedule's update count, 0)"
    for old in set(state) - set(out.mapped):
        out.ignored[old] = "fairseq bookkeeping, dropped by fairseq2's conversion"
    return out


def read_pretrained(src: str | Path, trust_pickle: bool = False) -> Imported:
    """fairseq2's wav2vec 2.0 with the weights of ``src``, loaded strictly (eval mode)."""
    layout = detect(src)
    text = str(src)
    if layout == FAIRSEQ2_CARD:
        path, arch = _card_checkpoint(text[len(CARD_PREFIX):])
    elif layout is None:
        raise CheckpointError(f"{src}: not a wav2vec 2.0 checkpoint of fairseq or fairseq2")
    else:
        path = Path(text)
    data = load_torch_file(path, trust_pickle)
    state = data.get("model", data) if isinstance(data, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict (or a checkpoint holding one under 'model')")
    state, fairseq = dict(state), "mask_emb" in state
    if layout == FAIRSEQ2_CARD:
        notes = [f"architecture: the asset card {text[len(CARD_PREFIX):]!r}"]
    elif fairseq:
        arch = fairseq2_config_from_fairseq(_fairseq_model_cfg(data, path), path)
        notes = ["architecture: rebuilt from the checkpoint's fairseq config (cfg['model'] or args)"]
    else:
        name, arch = _match_arch(convert_wav2vec2_state_dict(dict(state), fairseq2_arch("base")), path)
        notes = [f"architecture: fairseq2's {name!r} (the one its tensors fit)"]
    try:
        model_cfg = model_config_for(arch)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    mapped = _mapped(state, arch, fairseq)
    model, _ = build_wav2vec2(model_cfg)
    load_mapped(model, mapped, path)
    info = {"layout": layout, "files": {"weights": str(path)}, "num_parameters": num_parameters(model),
            **mapped.report(), "notes": notes}
    return Imported(layout, model_cfg, model.eval(), info)


def _calibration(cfg: Wav2Vec2ModelConfig, data_dir: Path) -> Callable[[nn.Module], Tensor]:
    """A forward pass (feature extractor, frontend, encoder; no masking) over the first validation
    batch of prepared LibriSpeech manifests, for ``--alpha-init fit``."""
    from fairseq2.nn import BatchLayout

    from speech.data.prepare import read_prepared
    from speech.jobs.pretrain import SpeechDataConfig, Wav2Vec2PretrainConfig, loaders

    read_prepared(data_dir)
    job = Wav2Vec2PretrainConfig(model=cfg, data=SpeechDataConfig(path=str(data_dir), max_tokens=CALIBRATION_SAMPLES))
    _, valid = loaders(job, None, data_dir / job.data.valid_manifest)
    waves = next(iter(valid))

    def forward(model: nn.Module) -> Tensor:
        seqs, layout = model.encoder_frontend(waves, BatchLayout.of(waves))
        return model.encoder(seqs, layout)

    return forward


def _build(cfg: Wav2Vec2ModelConfig) -> nn.Module:
    return build_wav2vec2(cfg)[0]


def load_pretrained(src: str | Path, norm: str | None = None, alpha_init: float = 0.5, *,
                    trust_pickle: bool = False) -> nn.Module:
    """fairseq2's ``Wav2Vec2Model`` with ``src``'s weights (eval); ``norm="dyt"``: DyT, alpha0 ``alpha_init``."""
    imported = read_pretrained(src, trust_pickle)
    imported.convert(norm, alpha_init, _build)
    return imported.model.eval()


def import_checkpoint(src: str | Path, out: str | Path, *, norm: str | None = None, alpha_init: float | str = 0.5,
                      calibrate: str | Path | None = None, trust_pickle: bool = False) -> dict:
    """Write RUN_DIR ``out`` (``bsd pretrain`` config, ``checkpoints/last.ckpt`` for ``bsd evaluate
    speech``, ``model.safetensors``, ``import.json``); returns import.json's contents."""
    from speech.jobs.pretrain import Wav2Vec2PretrainConfig

    out = Path(out)
    refuse_existing(out)
    imported = read_pretrained(src, trust_pickle)
    forward = _calibration(imported.model_cfg, Path(calibrate)) if calibrate is not None else None
    conversion = imported.convert(norm, alpha_init, _build, forward)
    job = Wav2Vec2PretrainConfig(model=imported.model_cfg, init_checkpoint=str(out.resolve() / LAST_CKPT))
    info = imported.write(src, out, to_dict(job), conversion)
    print(f"{imported.layout}: wav2vec 2.0, {info['num_parameters']:,} parameters; run directory: {out}")
    return info
