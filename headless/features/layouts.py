"""Checkpoint key layouts: reading files safely and converting them to the official layout.

Three layouts of the same DINO / DINOv2 weights are in circulation:

- **official** (facebookresearch): ``cls_token``, ``pos_embed``, ``patch_embed.proj.*``,
  ``blocks.N.attn.qkv.*``, ``blocks.N.ls1.gamma``, ``norm.*`` (``register_tokens``,
  ``mask_token`` in DINOv2; the giant's SwiGLU as ``mlp.w12`` / ``mlp.w3``);
- **timm** (its ``vit_*_dinov2`` ports): the same names, registers as ``reg_token``, no CLS slot
  in ``pos_embed`` for register models; timm's ``checkpoint_filter_fn`` maps official to timm;
- **Hugging Face transformers** (``facebook/dinov2-*``): ``embeddings.*``,
  ``encoder.layer.N.attention.attention.{query,key,value}.*``, ``layer_scale1.lambda1``,
  ``layernorm.*``, optionally under a ``dinov2.`` prefix.

:func:`to_official` turns any of them into the official layout; the loader then applies timm's
filter, so every layout goes through one path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


class WeightsError(FileNotFoundError):
    """Weights that cannot be found or read; the message says which file, from where, to where."""


def is_safetensors(path: Path) -> bool:
    """True for a safetensors file whatever its name: 8-byte header length, then a JSON dict."""
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    size = int.from_bytes(head[:8], "little")
    return 2 <= size <= path.stat().st_size - 8


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Tensors of a checkpoint file without executing pickled code."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if is_safetensors(path):
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"cannot read weights file {path}: {type(exc).__name__}: {exc}. Checkpoints are "
            "loaded without executing pickled code; save a plain state dict of tensors."
        ) from exc
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    bad = non_finite_tensors(obj)
    if bad:
        raise WeightsError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values (e.g. "
                           f"{bad[0]}): a damaged or diverged checkpoint; its outputs would be "
                           "NaN")
    return obj


def non_finite_tensors(obj: Any, prefix: str = "", limit: int = 20) -> list[str]:
    """Names of floating-point tensors with NaN / inf anywhere in a (nested) checkpoint."""
    import torch

    out: list[str] = []
    stack = [(prefix, obj)]
    while stack and len(out) < limit:
        name, value = stack.pop()
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                out.append(name or "<tensor>")
        elif isinstance(value, dict):
            stack += [(f"{name}.{k}" if name else str(k), v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            stack += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return out


def unwrap(sd: dict[str, Any]) -> dict[str, Any]:
    """Official training checkpoints nest the backbone: {'teacher': {'module.backbone.x': ...}}."""
    for key in ("teacher", "model", "state_dict"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if sd and all(k.startswith("module.") for k in sd):  # DistributedDataParallel wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if any(k.startswith("backbone.") for k in sd):  # MultiCropWrapper: backbone + head
        sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    # drop heads of DINO training checkpoints (projection heads live outside the backbone)
    return {k: v for k, v in sd.items() if not k.startswith(("head.", "dino_head.", "ibot_head."))}


def is_hf_layout(sd: dict[str, Any]) -> bool:
    """True for the transformers layout (``embeddings.*`` / ``encoder.layer.*``)."""
    return any(k.startswith(("embeddings.", "dinov2.embeddings.")) for k in sd)


_HF_BLOCK = {
    "norm1": "norm1", "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    "mlp.weights_in": "mlp.w12", "mlp.weights_out": "mlp.w3",
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
    "embeddings.register_tokens": "register_tokens", "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$")


def hf_to_official(sd: dict[str, Any]) -> dict[str, Any]:
    """transformers' Dinov2(WithRegisters)Model keys -> facebookresearch keys (q, k, v stacked)."""
    import torch

    sd = {k[len("dinov2."):] if k.startswith("dinov2.") else k: v for k, v in sd.items()}
    out: dict[str, Any] = {}
    qkv: dict[tuple[int, str], dict[str, Any]] = {}
    unknown = []
    for key, value in sd.items():
        if key.startswith("classifier."):
            continue  # an image-classification head is not part of the backbone
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
            continue
        m = _LAYER.match(key)
        if m is None:
            unknown.append(key)
            continue
        i, mid, leaf = int(m.group(1)), m.group(2), m.group(3)
        if mid.startswith("attention.attention."):
            qkv.setdefault((i, leaf), {})[mid.rsplit(".", 1)[-1]] = value
        elif leaf == "lambda1" and f"{mid}.lambda1" in _HF_BLOCK:
            out[f"blocks.{i}.{_HF_BLOCK[f'{mid}.lambda1']}"] = value
        elif mid in _HF_BLOCK:
            out[f"blocks.{i}.{_HF_BLOCK[mid]}.{leaf}"] = value
        else:
            unknown.append(key)
    for (i, leaf), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise WeightsError(f"layer {i}: attention {leaf} lacks one of query / key / value")
        out[f"blocks.{i}.attn.qkv.{leaf}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0)
    if unknown:
        raise WeightsError(f"unrecognised keys in a transformers-layout checkpoint: "
                           f"{unknown[:4]}{'...' if len(unknown) > 4 else ''}")
    return out


def official_to_hf(sd: dict[str, Any]) -> dict[str, Any]:
    """facebookresearch keys -> transformers keys (the inverse of :func:`hf_to_official`)."""
    top = {v: k for k, v in _HF_TOP.items()}
    block = {v: k for k, v in _HF_BLOCK.items()}
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key in top:
            out[top[key]] = value
            continue
        m = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias|gamma)$", key)
        if m is None:
            raise WeightsError(f"not an official DINOv2 key: {key}")
        i, mid, leaf = m.groups()
        pre = f"encoder.layer.{i}."
        if mid == "attn.qkv":
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[f"{pre}attention.attention.{name}.{leaf}"] = part.contiguous()
        elif leaf == "gamma":
            out[pre + block[f"{mid}.gamma"]] = value
        else:
            out[f"{pre}{block[mid]}.{leaf}"] = value
    return out


def to_official(sd: dict[str, Any]) -> dict[str, Any]:
    """Any supported layout (official, timm, transformers, training checkpoint) -> official.

    timm-layout dicts pass unchanged: timm's own filter, applied next, accepts them.
    """
    sd = unwrap(dict(sd))
    return hf_to_official(sd) if is_hf_layout(sd) else sd

