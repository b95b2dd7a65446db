"""Registry of DINO / DINOv2 vision transformers on top of timm, and their weights.

Each entry carries what must travel with the weights: patch size, normalisation, the timm
architecture and the official download address. Weights come from one of three places:

``"official"``
    The facebookresearch checkpoint, looked up in the cache folder (``$DINOSEG_CACHE`` or torch
    hub's ``checkpoints`` folder, where ``torch.hub`` puts them) and in the Hugging Face cache of
    the timm port; downloaded into the cache when missing and a network is reachable.
a file path
    A local ``.pth`` / ``.pt`` / ``.safetensors`` in the official facebookresearch layout (also a
    full training checkpoint with a ``teacher`` entry) or in timm's layout.
``"random"``
    Explicitly untrained, for tests and demos; every output names it "random (untrained)".

Checkpoints are read with ``torch.load(weights_only=True)`` or safetensors: loading never runs
pickled code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_URL = "https://dl.fbaipublicfiles.com/dino"
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"


class WeightsError(FileNotFoundError):
    """Weights that cannot be found or read; the message says which file, from where, to where."""


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build a backbone and feed it images."""

    name: str
    family: str  # "dino", "dinov2" or "test"
    timm_arch: str
    patch_size: int
    embed_dim: int
    num_heads: int
    depth: int
    num_registers: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    url: str | None = None
    hf_hub_id: str | None = None  # timm's port on the Hugging Face hub (looked up in its cache)
    img_size: int = 224  # size of the pretrained position-embedding grid
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str | None:
        return self.url.rsplit("/", 1)[-1] if self.url else None


def _dino(name: str, arch: str, size: str, patch: int, dim: int, heads: int) -> BackboneSpec:
    stem = f"dino_{'deitsmall' if size == 's' else 'vitbase'}{patch}_pretrain"
    return BackboneSpec(
        name=name, family="dino", timm_arch=arch, patch_size=patch, embed_dim=dim,
        num_heads=heads, depth=12, url=f"{DINO_URL}/{stem}/{stem}.pth",
        hf_hub_id=f"timm/{arch}.dino", img_size=224,
    )


def _dinov2(size: str, dim: int, heads: int, depth: int, reg: bool) -> BackboneSpec:
    long = {"s": "small", "b": "base", "l": "large", "g": "giant"}[size]
    arch = f"vit_{long}_patch14_{'reg4_' if reg else ''}dinov2"
    stem = f"dinov2_vit{size}14"
    fname = f"{stem}_{'reg4_' if reg else ''}pretrain.pth"
    return BackboneSpec(
        name=f"{stem}{'_reg' if reg else ''}", family="dinov2", timm_arch=arch, patch_size=14,
        embed_dim=dim, num_heads=heads, depth=depth, num_registers=4 if reg else 0,
        url=f"{DINOV2_URL}/{stem}/{fname}", hf_hub_id=f"timm/{arch}.lvd142m", img_size=518,
    )


def _build_registry() -> dict[str, BackboneSpec]:
    specs = [
        _dino("dino_vits16", "vit_small_patch16_224", "s", 16, 384, 6),
        _dino("dino_vits8", "vit_small_patch8_224", "s", 8, 384, 6),
        _dino("dino_vitb16", "vit_base_patch16_224", "b", 16, 768, 12),
        _dino("dino_vitb8", "vit_base_patch8_224", "b", 8, 768, 12),
    ]
    for reg in (False, True):
        specs += [
            _dinov2("s", 384, 6, 12, reg),
            _dinov2("b", 768, 12, 12, reg),
            _dinov2("l", 1024, 16, 24, reg),
            _dinov2("g", 1536, 24, 40, reg),
        ]
    # Tiny architectures of the real families, for tests and demos (random or local weights).
    specs += [
        BackboneSpec(
            name="test_dino_tiny16", family="test", timm_arch="vit_tiny_custom", patch_size=16,
            embed_dim=48, num_heads=3, depth=2, img_size=224,
        ),
        BackboneSpec(
            name="test_dinov2_tiny14_reg", family="test", timm_arch="vit_tiny_custom",
            patch_size=14, embed_dim=48, num_heads=3, depth=2, num_registers=4, img_size=224,
            model_kwargs={"init_values": 1e-5, "reg_tokens": 4, "no_embed_class": True},
        ),
    ]
    return {s.name: s for s in specs}


REGISTRY: dict[str, BackboneSpec] = _build_registry()


def list_backbones(include_test: bool = True) -> list[str]:
    """Names of the known backbones (test architectures last)."""
    names = [n for n, s in REGISTRY.items() if s.family != "test"]
    if include_test:
        names += [n for n, s in REGISTRY.items() if s.family == "test"]
    return names


def get_spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown backbone {name!r}; known: {', '.join(list_backbones())}"
        ) from None


def cache_dir() -> Path:
    """Where official weights are looked for and downloaded.

    ``$DINOSEG_CACHE`` moves it; otherwise torch hub's checkpoint folder (``$TORCH_HOME``), so
    weights that ``torch.hub.load('facebookresearch/dinov2', ...)`` already fetched are reused.
    """
    env = os.environ.get("DINOSEG_CACHE")
    if env:
        return Path(env).expanduser()
    torch_home = os.environ.get("TORCH_HOME", os.path.join("~", ".cache", "torch"))
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


@dataclass
class Backbone:
    """A loaded ViT with the spec that describes it and where its weights came from."""

    spec: BackboneSpec
    model: Any  # timm VisionTransformer, eval mode, dynamic image size
    device: str
    weights_label: str

    @property
    def patch_size(self) -> int:
        return self.spec.patch_size

    @property
    def is_random(self) -> bool:
        return self.weights_label.startswith("random")

    @property
    def name(self) -> str:
        return self.spec.name


def create_model(spec: BackboneSpec) -> Any:
    """The timm architecture of ``spec`` with random weights, no head, any input size."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    common = dict(num_classes=0, dynamic_img_size=True, img_size=spec.img_size)
    if spec.family == "test":
        return VisionTransformer(
            patch_size=spec.patch_size, embed_dim=spec.embed_dim, depth=spec.depth,
            num_heads=spec.num_heads, **common, **spec.model_kwargs,
        )
    return timm.create_model(spec.timm_arch, pretrained=False, **common, **spec.model_kwargs)


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Tensors of a checkpoint file without executing pickled code."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
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
    return obj


def _unwrap(sd: dict[str, Any]) -> dict[str, Any]:
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


def load_state_dict_into(model: Any, sd: dict[str, Any], source: str) -> None:
    """Load an official or timm-layout state dict, resampling position embeddings as needed."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        sd = checkpoint_filter_fn(_unwrap(dict(sd)), model)
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except (RuntimeError, ValueError, KeyError) as exc:  # shape mismatches
        raise WeightsError(
            f"{source} does not fit this architecture ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}). Is it a checkpoint of another backbone?"
        ) from exc
    missing = [k for k in missing if not k.startswith("head")]
    if missing or unexpected:
        raise WeightsError(
            f"{source} does not fit this architecture: missing {missing[:6]}"
            f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
            f"{'...' if len(unexpected) > 6 else ''}. Is it a checkpoint of another backbone?"
        )


def _hf_cached_file(spec: BackboneSpec) -> Path | None:
    """The timm port's weights in the Hugging Face cache, if they are there (no network)."""
    if not spec.hf_hub_id:
        return None
    hf_home = Path(os.environ.get("HF_HOME", Path("~/.cache/huggingface").expanduser()))
    hub = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
    repo = hub / ("models--" + spec.hf_hub_id.replace("/", "--")) / "snapshots"
    if not repo.is_dir():
        return None
    for snap in sorted(repo.iterdir(), reverse=True):
        for fname in ("model.safetensors", "pytorch_model.bin"):
            if (snap / fname).is_file():
                return snap / fname
    return None


def official_weights_path(spec: BackboneSpec, download: bool | None = None) -> Path:
    """Path of the official checkpoint, downloading it into the cache when allowed.

    ``download`` defaults to true unless ``DINOSEG_OFFLINE=1``. Raises :class:`WeightsError`
    naming the file, its address and the cache folder when the weights cannot be had.
    """
    if not spec.url:
        raise WeightsError(
            f"{spec.name} has no official weights; use weights='random' or a local file"
        )
    target = cache_dir() / spec.filename
    if target.is_file():
        return target
    hf = _hf_cached_file(spec)
    if hf is not None:
        return hf
    from headless.downloads import download_to, downloads_allowed

    if download is None:
        download = downloads_allowed()
    reason = "offline mode (DINOSEG_OFFLINE=1)"
    if download:
        try:
            return download_to(spec.url, target)
        except Exception as exc:
            reason = f"download failed ({type(exc).__name__}: {exc})"
    raise WeightsError(
        f"weights for {spec.name} not found: {reason}. Download {spec.url} and save it as "
        f"{target} (set DINOSEG_CACHE to use another folder), or pass a local checkpoint file, "
        "or use weights='random' for an untrained model."
    )


def load_backbone(
    name: str, weights: str | Path | None = "official", device: str = "cpu"
) -> Backbone:
    """Build ``name`` and load its weights (``"official"``, ``"random"`` or a file path)."""
    import torch

    spec = get_spec(name)
    device = resolve_device(device)
    model = create_model(spec)
    if weights is None or str(weights) == "official":
        if spec.family == "test":
            raise WeightsError(
                f"{name} is a test architecture without official weights; use weights='random' "
                "or a local file"
            )
        path = official_weights_path(spec)
        load_state_dict_into(model, read_state_dict(path), str(path))
        label = f"official ({path.name})"
    elif str(weights) == "random":
        torch.manual_seed(0)  # same untrained model every time: results are reproducible
        model = create_model(spec)
        label = "random (untrained)"
    else:
        path = Path(weights).expanduser()
        load_state_dict_into(model, read_state_dict(path), str(path))
        label = f"file ({path.name})"
    model.eval().requires_grad_(False).to(device)
    return Backbone(spec=spec, model=model, device=device, weights_label=label)


def resolve_device(device: str | None) -> str:
    """``"auto"`` -> CUDA when available; asking for CUDA without a GPU is a clear error."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but no CUDA GPU is available here")
    return device


def to_official_state_dict(model: Any, spec: BackboneSpec) -> dict[str, Any]:
    """The model's weights in the facebookresearch key layout (the inverse of timm's filter).

    DINO's official layout equals timm's. DINOv2's adds ``mask_token``; with registers, it keeps
    the CLS position in ``pos_embed`` and calls the registers ``register_tokens``.
    """
    import torch

    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    dinov2_like = spec.family == "dinov2" or "init_values" in spec.model_kwargs
    if not dinov2_like:
        return sd
    sd["mask_token"] = torch.zeros(1, spec.embed_dim)
    if "reg_token" in sd:
        sd["register_tokens"] = sd.pop("reg_token")
        cls = sd.pop("cls_token")
        pos = sd.pop("pos_embed")
        cls_pos = torch.zeros_like(cls)
        sd["cls_token"] = cls - cls_pos
        sd["pos_embed"] = torch.cat([cls_pos, pos], dim=1)
    for k in list(sd):
        if spec.timm_arch.startswith("vit_giant") and ".mlp.fc1." in k:
            sd[k.replace("fc1", "w12")] = sd.pop(k)
        elif spec.timm_arch.startswith("vit_giant") and ".mlp.fc2." in k:
            sd[k.replace("fc2", "w3")] = sd.pop(k)
    return sd
