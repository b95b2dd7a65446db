"""Registry of DINO / DINOv2 vision transformers on top of timm, and their weights.

Each entry carries what must travel with the weights: patch size, normalisation, the timm
architecture and the official download address. Weights come from one of three places:

``"official"``
    The facebookresearch checkpoint, looked up in the cache folder (``$DINOSEG_CACHE`` or torch
    hub's ``checkpoints`` folder, where ``torch.hub`` puts them) and in the Hugging Face cache of
    the timm and transformers ports (``models--facebook--dinov2-small/snapshots/<rev>/``);
    downloaded into the cache when missing and a network is reachable.
a file path
    A local ``.pth`` / ``.pt`` / ``.safetensors`` in the official facebookresearch layout (also a
    full training checkpoint with a ``teacher`` entry), timm's layout or transformers' layout
    (:mod:`headless.features.layouts`).

Position embeddings follow the official resizing by default (:mod:`headless.features.posembed`).
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

from headless.downloads import random_hint
from headless.features.layouts import WeightsError, read_state_dict, to_official
from headless.features.posembed import POS_RESIZE, set_pos_resize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_URL = "https://dl.fbaipublicfiles.com/dino"
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"


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
    hf_model_id: str | None = None  # transformers' port (facebook/dinov2-*), also looked up
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
        hf_model_id=f"facebook/dinov2-{'with-registers-' if reg else ''}{long}",
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
    # ViT-tiny as DINO pre-trains it (``dinoseg train`` job dino, model.arch vit_tiny): no
    # official weights exist; a dino run folder or its exported file loads here
    for patch in (16, 8):
        specs.append(BackboneSpec(
            name=f"dino_vitt{patch}", family="dino", timm_arch="vit_tiny_patch16_224",
            patch_size=patch, embed_dim=192, num_heads=3, depth=12, img_size=224,
            model_kwargs={} if patch == 16 else {"patch_size": patch},
        ))
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
    def pos_resize(self) -> str:
        """How position embeddings are resized: ``"official"`` or ``"timm"``."""
        from headless.features.posembed import pos_resize_of

        return pos_resize_of(self.model)

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


def load_state_dict_into(model: Any, sd: dict[str, Any], source: str) -> None:
    """Load an official, timm or transformers-layout state dict into a timm ViT."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        sd = checkpoint_filter_fn(to_official(sd), model)
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


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    hf_home = Path(os.environ.get("HF_HOME", Path("~/.cache/huggingface").expanduser()))
    return Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))


def _hf_cached_file(spec: BackboneSpec) -> Path | None:
    """Weights of the timm or transformers port in the Hugging Face cache (no network).

    The snapshot named by ``refs/main`` wins; otherwise the most recently written one.
    """
    for repo_id in (spec.hf_hub_id, spec.hf_model_id):
        if not repo_id:
            continue
        repo = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
        snaps = repo / "snapshots"
        if not snaps.is_dir():
            continue
        ref = repo / "refs" / "main"
        order = sorted(snaps.iterdir(), key=lambda d: d.stat().st_mtime, reverse=True)
        if ref.is_file():
            main = snaps / ref.read_text().strip()
            order = [main] + [d for d in order if d != main]
        for snap in order:
            for fname in ("model.safetensors", "pytorch_model.bin"):
                if (snap / fname).is_file():
                    return snap / fname
    return None


def official_weights_path(spec: BackboneSpec, download: bool | None = None) -> Path:
    """Path of the official checkpoint, downloading it into the cache when allowed.

    ``download`` defaults to true unless ``DINOSEG_OFFLINE=1``. Raises :class:`WeightsError`
    naming the file, its address and the cache folder when the weights cannot be had.
    """
    from headless.downloads import download_to, downloads_allowed, missing_weights_message

    if not spec.url:
        raise WeightsError(
            f"{spec.name} has no official weights; use {random_hint()} or a local file"
        )
    target = cache_dir() / spec.filename
    if target.is_file():
        return target
    hf = _hf_cached_file(spec)
    if hf is not None:
        return hf
    if download is None:
        download = downloads_allowed()
    reason = "offline mode (DINOSEG_OFFLINE=1)"
    if download:
        try:
            return download_to(spec.url, target)
        except Exception as exc:
            reason = f"download failed ({type(exc).__name__}: {exc})"
    raise WeightsError(missing_weights_message(spec.name, spec.url, target, reason))


def default_pos_resize(spec: BackboneSpec) -> str:
    """``"official"`` for the DINO / DINOv2 backbones, ``"timm"`` for the test architectures."""
    return "timm" if spec.family == "test" else "official"


def _weights_name(path: Path) -> str:
    """``dinov2_vits14_pretrain.pth``, or ``facebook/dinov2-small`` for a Hugging Face snapshot."""
    parts = path.parts
    if "snapshots" in parts:
        repo = parts[parts.index("snapshots") - 1]
        if repo.startswith("models--"):
            return repo[len("models--"):].replace("--", "/")
    return path.name


def load_backbone(
    name: str, weights: str | Path | None = "official", device: str = "cpu",
    pos_resize: str | None = None,
) -> Backbone:
    """Build ``name`` and load its weights (``"official"``, ``"random"`` or a file path).

    ``pos_resize`` picks how position embeddings follow the image size: ``"official"`` (the
    facebookresearch code; default for DINO / DINOv2) or ``"timm"`` (default for the test
    architectures); see :mod:`headless.features.posembed`.
    """
    spec = get_spec(name)
    pos_resize = pos_resize or default_pos_resize(spec)
    if pos_resize not in POS_RESIZE:
        raise ValueError(f"unknown position-embedding resize {pos_resize!r}; choose "
                         f"{' or '.join(POS_RESIZE)}")
    # Find the weights before importing torch or building anything: a missing file or an
    # offline machine fails in a blink, not after the model is built.
    path: Path | None = None
    if weights is None or str(weights) == "official":
        if spec.family == "test":
            raise WeightsError(
                f"{name} is a test architecture without official weights; use {random_hint()} "
                "or a local file"
            )
        path = official_weights_path(spec)
        label = f"official ({_weights_name(path)})"
    elif str(weights) != "random":
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsError(f"{path}: no such weights file (give a checkpoint, 'official' or "
                               f"{random_hint()})")
        label = f"file ({path.name})"
        if path.is_dir():
            path = run_folder_weights(path, name)
            label = f"dino run ({path.parent.name})"
    device = resolve_device(device)
    import torch

    if path is None:
        torch.manual_seed(0)  # same untrained model every time: results are reproducible
        model = create_model(spec)
        label = "random (untrained)"
    else:
        model = create_model(spec)
        load_state_dict_into(model, read_state_dict(path), str(path))
    set_pos_resize(model, pos_resize, spec.family, spec.num_registers)
    model.eval().requires_grad_(False).to(device)
    return Backbone(spec=spec, model=model, device=device, weights_label=label)


def run_folder_weights(folder: Path, name: str) -> Path:
    """The exported teacher of a ``dino`` pre-training run folder, for backbone ``name``.

    The run writes ``export.json`` (architecture, the backbone it loads as) beside
    ``teacher_backbone.pth`` when it completes; another backbone name is a clear error.
    """
    import json

    meta_file = folder / "export.json"
    if not meta_file.is_file():
        raise WeightsError(f"{folder} is a folder without export.json: not a finished dino run "
                           "(wait for it to complete, or give a weights file)")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{meta_file}: cannot be read ({exc})") from None
    trained_as = meta.get("features_backbone")
    if not trained_as:
        raise WeightsError(f"{folder} holds a {meta.get('arch', '?')} teacher, which the "
                           "feature docks cannot load (ResNet-50: use it as a classifier's "
                           "model.weights)")
    if trained_as != name:
        raise WeightsError(f"{folder} was pre-trained as {trained_as}, not {name}: use "
                           f"--backbone {trained_as}")
    path = folder / str(meta.get("weights") or "teacher_backbone.pth")
    if not path.is_file():
        raise WeightsError(f"{path}: the run's exported teacher is missing")
    return path


def resolve_device(device: str | None) -> str:
    """``"auto"`` -> CUDA when available; asking for CUDA without a GPU is a clear error."""
    import torch

    device = (device or "auto").strip().lower()
    if not (device in ("auto", "cpu", "cuda", "mps") or
            (device.startswith("cuda:") and device[5:].isdigit())):
        raise ValueError(f"unknown device {device!r}: choose auto, cpu, cuda, cuda:N or mps")
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
