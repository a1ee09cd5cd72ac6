"""Read an upstream Lightning checkpoint safely: `torch.load(weights_only=True)` with only the OmegaConf types
that upstream's `save_hyperparameters(cfg)` pickles allowed in, so a foreign or hostile file cannot run code.

Where the weights are (slim-diff 1.0.0, `EMACallback`):
* `state_dict`: the raw weights, keys `model.*` (U-Net), `_anatomical_encoder.*`, `criterion.*`, `alphas_cumprod`;
* `ema_state_dict`: the EMA of `model` (keys relative to the U-Net), when the callback exported it;
* `callbacks["EMACallback"]["ema"]`: the same EMA, kept for resuming, in every checkpoint with EMA on.
"""

from __future__ import annotations

import collections
import pickle
import typing
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf import nodes as omegaconf_nodes
from omegaconf.base import ContainerMetadata, Metadata

from slimdiff.errors import SlimdiffInputError

# What an upstream hyper_parameters pickle may contain besides tensors and plain containers.
_NODE_TYPES = [
    getattr(omegaconf_nodes, name)
    for name in (
        "AnyNode",
        "StringNode",
        "IntegerNode",
        "FloatNode",
        "BooleanNode",
        "EnumNode",
        "BytesNode",
        "PathNode",
    )
    if hasattr(omegaconf_nodes, name)
]
SAFE_GLOBALS = [
    DictConfig,
    ListConfig,
    ContainerMetadata,
    Metadata,
    *_NODE_TYPES,
    typing.Any,
    collections.defaultdict,
    collections.OrderedDict,
    dict,
    list,
    int,
    float,
    bool,
    str,
]
MODEL_PREFIX = "model."


class UpstreamImportError(SlimdiffInputError):
    """An upstream checkpoint or config that cannot be imported as asked."""


@dataclass
class UpstreamCheckpoint:
    path: Path
    config: dict | None  # upstream's training config (hyper_parameters), plain containers
    raw: dict[str, torch.Tensor]  # U-Net weights, keys relative to the U-Net
    ema: dict[str, torch.Tensor] | None
    ema_source: str | None  # "ema_state_dict" or "callbacks.EMACallback.ema"
    other_modules: list[str]  # top-level modules of state_dict besides the U-Net (e.g. _anatomical_encoder)
    info: dict  # epoch, global_step, lightning version


def read_upstream_checkpoint(path: str | Path) -> UpstreamCheckpoint:
    path = Path(path)
    payload = _load(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise UpstreamImportError(f"{path}: not a Lightning checkpoint (no state_dict)")
    state = payload["state_dict"]
    raw = {k[len(MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}
    if not raw:
        raise UpstreamImportError(
            f"{path}: no `model.*` weights in its state_dict: not an upstream SLIM-Diff checkpoint"
        )
    others = sorted(
        {k.split(".")[0] for k in state if not k.startswith(MODEL_PREFIX)} - {"alphas_cumprod", "criterion"}
    )
    ema, source = _ema(payload)
    return UpstreamCheckpoint(
        path=path,
        config=_plain_config(payload.get("hyper_parameters"), path),
        raw=raw,
        ema=ema,
        ema_source=source,
        other_modules=others,
        info={
            "epoch": payload.get("epoch"),
            "global_step": payload.get("global_step"),
            "lightning_version": payload.get("pytorch-lightning_version"),
        },
    )


def _load(path: Path):
    if not path.is_file():
        raise UpstreamImportError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UpstreamImportError(
            f"{path}: holds objects that are not weights or configs, refused without running them ({first})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UpstreamImportError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def _ema(payload: dict) -> tuple[dict | None, str | None]:
    exported = payload.get("ema_state_dict")
    if isinstance(exported, dict) and exported:
        return exported, "ema_state_dict"
    state = (payload.get("callbacks") or {}).get("EMACallback") or {}
    if isinstance(state.get("ema"), dict) and state["ema"]:
        return state["ema"], "callbacks.EMACallback.ema"
    return None, None


def _plain_config(hparams, path: Path) -> dict | None:
    if hparams is None:
        return None
    try:
        plain = OmegaConf.to_container(hparams, resolve=True) if OmegaConf.is_config(hparams) else dict(hparams)
    except Exception as exc:  # an interpolation that does not resolve, say
        raise UpstreamImportError(f"{path}: its hyper_parameters cannot be read ({exc}); give --config") from None
    # save_hyperparameters(cfg) stores the config itself; some Lightning versions nest it under the argument name
    if "model" not in plain and isinstance(plain.get("cfg"), dict):
        plain = plain["cfg"]
    return plain
