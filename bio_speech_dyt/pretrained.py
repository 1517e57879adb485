"""The domain-free half of ``bsd import`` / ``bsd export``: reading published checkpoint files
safely, mapping their keys onto our models with every key accounted for, converting a pretrained
model's norms to DyT (optionally fitted to measured norm maps), and writing a run directory.

The domains (``genomics.pretrained``, ``speech.pretrained``) know the layouts; each exposes
``detect(src)`` and ``import_checkpoint(src, out, ...)`` built on these helpers.

Files the user did not make are read with ``torch.load(weights_only=True)`` or safetensors; a
file that needs arbitrary unpickling is refused unless ``trust_pickle``. A run directory is
written into a staging folder beside ``out`` and renamed at the end: a failed import leaves
nothing in ``out``, and an existing non-empty ``out`` is never touched.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import re
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import yaml
from torch import Tensor, nn

from bio_speech_dyt.checkpoints import CheckpointError
from bio_speech_dyt.convert import classify_norm, convert_norms
from bio_speech_dyt.io import atomic_path, write_json, write_text

HF_PREFIX = "hf:"
CONFIG, LAST_CKPT, WEIGHTS, IMPORT_JSON = "config.yaml", "checkpoints/last.ckpt", "model.safetensors", "import.json"
_CALIBRATION_ROWS = 2048  # measured (input, output) rows kept per norm for --alpha-init fit


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint file or folder that is not there."""


def _listing(keys: Iterable[str], most: int = 6) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - most} more)" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


# -- sources and files ----------------------------------------------------------------------------


def local_source(src: str | Path) -> Path:
    """A local path for ``src``: ``hf:REPO_ID`` is downloaded with ``huggingface_hub`` (cached)."""
    text = str(src)
    if text.startswith(HF_PREFIX):
        repo = text[len(HF_PREFIX):]
        if not repo:
            raise CheckpointError(f"{text}: hf: needs a repository id, e.g. hf:LongSafari/hyenadna-tiny-1k-seqlen-hf")
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(repo_id=repo))
        except Exception as e:  # offline, unknown repository, gated, HTTP errors: one line for the user
            raise CheckpointError(f"{text}: download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    path = Path(text)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    return path


def load_torch_file(path: Path, trust_pickle: bool = False) -> Any:
    """``torch.load`` on CPU, ``weights_only=True`` unless ``trust_pickle``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if trust_pickle:
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({e})") from None
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f"the object {found.group(1)}" if found else "objects beyond tensors and plain containers"
        raise CheckpointError(
            f"{path}: holds {what}, which only arbitrary unpickling can load, and unpickling can run code "
            f"from the file; refused (weights_only=True). If you trust its source, pass --trust-pickle"
        ) from None
    except ModuleNotFoundError as e:
        raise CheckpointError(f"{path}: unpickling it needs the Python package {e.name!r}; install it") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[0]})") from None


def load_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own SafetensorError (truncated, bad header)
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def first_file(folder: Path, names: Iterable[str], what: str) -> Path:
    """The first of ``names`` present in ``folder`` (so safetensors is preferred when listed first)."""
    names = list(names)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointNotFoundError(f"{folder}: no {what} ({' or '.join(names)})")


# -- key maps -------------------------------------------------------------------------------------


class KeyMap:
    """Ordered ``(ours, theirs)`` key-prefix pairs, ``*`` standing for a layer index; the first
    matching pair renames a key, in either direction."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.pairs = list(pairs)
        self._to_ours = [self._compile(theirs, ours) for ours, theirs in self.pairs]
        self._to_theirs = [self._compile(ours, theirs) for ours, theirs in self.pairs]

    @staticmethod
    def _compile(source: str, target: str) -> tuple[re.Pattern, str]:
        pattern = "^" + re.escape(source).replace(r"\*", r"(\d+)")
        template = target.replace("\\", "\\\\")
        count = 0
        while "*" in template:
            count += 1
            template = template.replace("*", f"\\{count}", 1)
        return re.compile(pattern), template

    @staticmethod
    def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
        for pattern, template in rules:
            if pattern.match(key):
                return pattern.sub(template, key, count=1)
        return None

    def to_ours(self, key: str) -> str | None:
        return self._rename(key, self._to_ours)

    def to_theirs(self, key: str) -> str | None:
        return self._rename(key, self._to_theirs)

    def table(self) -> list[dict[str, str]]:
        return [{"ours": o, "theirs": t} for o, t in self.pairs]


@dataclasses.dataclass
class MappedState:
    """A published state dict renamed to ours, with every one of its keys accounted for."""

    state: dict[str, Tensor]  # our key -> tensor
    mapped: dict[str, str]  # their key -> our key
    ignored: dict[str, str]  # their key -> why it is not loaded
    filled: dict[str, str] = dataclasses.field(default_factory=dict)  # our key -> where its value came from

    def report(self) -> dict[str, Any]:
        return {"mapped": self.mapped, "ignored": self.ignored, "filled": self.filled}


def map_state_dict(theirs: dict[str, Tensor], keymap: KeyMap, file: Path, *, copies: dict[str, str] | None = None,
                   ignore: Iterable[tuple[str, str]] = ()) -> MappedState:
    """Rename ``theirs`` through ``keymap``. ``copies``: their keys that hold a copy of one of ours
    (a tied LM head) — loaded when ours is absent, else checked equal; ``ignore``: ``(regex, why)``
    for keys that are not model weights. Any other key that does not map is an error naming ``file``."""
    copies = copies or {}
    ignore = [(re.compile(p), why) for p, why in ignore]
    out = MappedState({}, {}, {})
    unknown = []
    for key, value in theirs.items():
        if key in copies:
            continue
        why = next((w for p, w in ignore if p.search(key)), None)
        if why is not None:
            out.ignored[key] = why
            continue
        ours = keymap.to_ours(key)
        if ours is None:
            unknown.append(key)
            continue
        out.state[ours], out.mapped[key] = value, ours
    if unknown:
        raise CheckpointError(f"{file}: keys that fit no rule of this layout: {_listing(unknown)}")
    for key, ours in copies.items():
        if key not in theirs:
            continue
        if ours in out.state:
            if not torch.equal(out.state[ours], theirs[key]):
                raise CheckpointError(f"{file}: {key} should be tied to the embedding but differs from it")
            out.ignored[key] = f"tied to {ours} in the model (equal in the file)"
        else:
            out.state[ours], out.mapped[key] = theirs[key], ours
    return out


def load_mapped(model: nn.Module, mapped: MappedState, file: Path, config_file: Path | None = None) -> None:
    """Load ``mapped`` into ``model`` strictly. Tensors shared in the model (a filter's ``Sin``
    frequency, tied projections) may be stored once: the other names are filled from it (and
    recorded in ``mapped.filled``); stored twice, the copies must agree."""
    expected = model.state_dict(keep_vars=True)
    groups: dict[int, list[str]] = defaultdict(list)
    for key, tensor in expected.items():
        groups[id(tensor)].append(key)
    state, theirs_of = dict(mapped.state), {v: k for k, v in mapped.mapped.items()}
    missing = []
    for names in groups.values():
        present = [k for k in names if k in state]
        if not present:
            missing += names
            continue
        for other in present[1:]:
            if not torch.equal(state[other], state[present[0]]):
                raise CheckpointError(f"{file}: {theirs_of.get(other, other)} and {theirs_of.get(present[0], present[0])} "
                                      f"are one tensor in the model but differ in the file")
        for name in names:
            if name not in state:
                state[name] = state[present[0]]
                mapped.filled[name] = f"shared in the model with {present[0]} (stored once)"
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        parts = [f"missing {_listing(missing)}" if missing else "", f"unexpected {_listing(unexpected)}" if unexpected else ""]
        raise CheckpointError(f"{file}: does not fit the model its config describes: {'; '.join(p for p in parts if p)}")
    described = f"{config_file} describes" if config_file else "the model has"
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{file}: {theirs_of.get(key, key)} has shape {tuple(tensor.shape)}, but {described} "
                                  f"{tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=True)


# -- norm conversion ------------------------------------------------------------------------------


def parse_alpha_init(value: str | float) -> float | str:
    """``"fit"`` or a number (the CLI's ``--alpha-init``)."""
    if value == "fit":
        return "fit"
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"--alpha-init takes a number or 'fit', got {value!r}") from None


def _capture_norm_io(model: nn.Module, forward: Callable[[nn.Module], Any]) -> dict[str, tuple[Tensor, Tensor]]:
    """Every LayerNorm/RMSNorm's (input, output) rows, flattened to (N, C), over one forward."""
    seen: dict[str, list[tuple[Tensor, Tensor]]] = defaultdict(list)
    hooks = []
    for path, module in model.named_modules():
        if classify_norm(module)[0] in ("layernorm", "rmsnorm"):
            def hook(mod, inputs, output, path=path):
                c = output.shape[-1]
                seen[path].append((inputs[0].detach().reshape(-1, c).double(), output.detach().reshape(-1, c).double()))
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            forward(model)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = {}
    for path, pairs in seen.items():
        x, y = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
        keep = torch.linspace(0, x.shape[0] - 1, min(x.shape[0], _CALIBRATION_ROWS)).round().long()
        out[path] = (x[keep], y[keep])
    return out


def _fit_dyts(model: nn.Module, paths: Iterable[str], io: dict[str, tuple[Tensor, Tensor]]) -> list[dict]:
    """Set each converted DyT's alpha, weight and bias to the least-squares fit of its norm's map."""
    from bio_speech_dyt.report.fit import fit_dyt

    rows = []
    for path in paths:
        if path not in io:
            raise ValueError(f"--alpha-init fit: the calibration forward pass never reached the norm {path}")
        dyt, (x, y) = model.get_submodule(path), io[path]
        fit = fit_dyt(x.numpy(), y.numpy(), bias=dyt.bias is not None)
        with torch.no_grad():
            dyt.alpha.fill_(fit.alpha)
            dyt.weight.copy_(torch.from_numpy(fit.weight))
            if dyt.bias is not None:
                dyt.bias.copy_(torch.from_numpy(fit.bias))
            pred = dyt(x.to(dyt.weight.dtype)).double()
        measured = float((pred - y).norm() / y.norm())
        rows.append({"path": path, "alpha": fit.alpha, "r2": fit.r2, "rel_error": measured, "rows": int(x.shape[0]),
                     "regime": fit.regime})
    return rows


def convert_pretrained_norms(model: nn.Module, norm: str | None, alpha_init: float | str, native: str,
                             calibrate: Callable[[nn.Module], Any] | None = None) -> dict | None:
    """``--norm dyt``: every LayerNorm/RMSNorm of ``model`` becomes DyT (in place). ``alpha_init``
    is alpha0, or ``"fit"``: ``calibrate(model)`` runs a calibration batch through the original
    model and each DyT's alpha, weight and bias are fitted to its norm's measured input→output map
    (fit quality per layer in the report). Returns the conversion report (None: nothing converted)."""
    if norm is None or norm == native:
        if alpha_init != 0.5 or calibrate is not None:
            raise ValueError("--alpha-init and --calibrate apply to a norm conversion (--norm dyt)")
        return None
    if norm != "dyt":
        raise ValueError(f"--norm converts the model's {native} to dyt; got {norm!r}")
    fit = alpha_init == "fit"
    if fit and calibrate is None:
        raise ValueError("--alpha-init fit needs calibration data (--calibrate DATA_DIR)")
    if not fit and calibrate is not None:
        raise ValueError("--calibrate goes with --alpha-init fit")
    io = _capture_norm_io(model, calibrate) if fit else {}
    _, report = convert_norms(model, alpha_init=0.5 if fit else float(alpha_init))
    out = {"from": native, "to": "dyt", "alpha_init": alpha_init, **report.to_dict()}
    if fit:
        out["fits"] = _fit_dyts(model, (r.path for r in report.swapped), io)
    return out


def check_rebuilt(model: nn.Module, rebuilt: nn.Module) -> None:
    """A converted model must be what its new config builds (its config.yaml would lie otherwise)."""
    def shapes(m: nn.Module) -> dict[str, tuple]:
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    if shapes(model) != shapes(rebuilt):
        differ = set(shapes(model).items()) ^ set(shapes(rebuilt).items())
        raise ValueError(f"the converted model is not what norm: dyt builds ({_listing(k for k, _ in differ)}); "
                         f"conversion refused")


@dataclasses.dataclass
class Imported:
    """A published checkpoint read into our model. ``model_cfg``: the domain's model config
    dataclass (it has ``norm`` and ``alpha_init``); ``info``: import.json's account of the files."""

    layout: str
    model_cfg: Any
    model: nn.Module
    info: dict[str, Any]

    def convert(self, norm: str | None, alpha_init: float | str, build: Callable[[Any], nn.Module],
                calibrate: Callable[[nn.Module], Any] | None = None) -> dict | None:
        """``--norm dyt`` in place (:func:`convert_pretrained_norms`); ``model_cfg`` follows, and must
        ``build`` the converted model. Returns the conversion report (None: nothing converted)."""
        report = convert_pretrained_norms(self.model, norm, alpha_init, self.model_cfg.norm, calibrate)
        if report is not None:
            alpha0 = 0.5 if alpha_init == "fit" else float(alpha_init)  # fitted alphas live in the weights
            self.model_cfg = dataclasses.replace(self.model_cfg, norm="dyt", alpha_init=alpha0)
            check_rebuilt(self.model, build(self.model_cfg))
        return report

    def write(self, src: str | Path, out: Path, job_config: dict, conversion: dict | None) -> dict:
        """RUN_DIR ``out`` (staged, renamed at the end); returns import.json's contents."""
        from bio_speech_dyt.config import to_dict

        info = {"source": str(src), **self.info, "norm_conversion": conversion, "model": to_dict(self.model_cfg)}
        with staged_dir(out) as stage:
            write_run(stage, self.model, job_config, info)
        return info


# -- run directories ------------------------------------------------------------------------------


def refuse_existing(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; nothing is overwritten: pass a new --out")


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A staging folder beside ``out``, renamed to ``out`` when the block succeeds (removed if not)."""
    out = Path(out)
    refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield stage
        refuse_existing(out)
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def lightning_checkpoint(model: nn.Module, config: dict, extra: dict | None = None) -> dict:
    """What ``--checkpoint`` readers take from a Lightning checkpoint: the weights under ``model.``
    and the resolved job config in ``hyper_parameters``."""
    import lightning

    hparams = {"config": config, **(extra or {})}
    return {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "hyper_parameters": hparams,
            "epoch": 0, "global_step": 0, "pytorch-lightning_version": lightning.__version__}


def write_run(stage: Path, model: nn.Module, config: dict, info: dict) -> None:
    """RUN_DIR: ``config.yaml``, ``checkpoints/last.ckpt``, ``model.safetensors``, ``import.json``."""
    from bio_speech_dyt.train.runner import export_weights

    write_text(stage / CONFIG, yaml.safe_dump(config, sort_keys=False))
    conversion = info.get("norm_conversion")
    summary = {"source": info["source"], "layout": info["layout"],
               "norm_conversion": {k: conversion[k] for k in ("from", "to", "alpha_init")} if conversion else None}
    with atomic_path(stage / LAST_CKPT) as tmp:
        torch.save(lightning_checkpoint(model, config, {"import": summary}), tmp)
    export_weights(model, stage / WEIGHTS)
    write_json(stage / IMPORT_JSON, info)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

