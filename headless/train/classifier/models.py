"""The seed-000 classifier's models: a torchvision ResNet or a DINOv2 ViT trunk and a linear head.

ResNets start from random, ImageNet (torchvision's cached files) or file weights; ViTs come from
:mod:`headless.features.backbones` with a frozen backbone or only their CLS token trained.
:func:`check_model` finds a model that cannot be built (unknown type, missing weights, an image
size the patch does not divide) before a worker starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headless.jobs.spec import ClassifierSpec
from headless.train.data.transforms import IMAGENET_MEAN, IMAGENET_STD

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
TINY_RESNET = "test_resnet_tiny"
TORCHVISION_WEIGHTS = {"imagenet": "DEFAULT", "imagenet_v1": "IMAGENET1K_V1",
                       "imagenet_v2": "IMAGENET1K_V2"}


class ModelError(ValueError):
    """A model that cannot be built as asked (unknown type, weights, sizes)."""


class TinyResNet(nn.Module):
    """A three-block ResNet for tests and demos (a few thousand parameters, any input size)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        def down(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False),
                                 nn.BatchNorm2d(cout))

        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            BasicBlock(w, w), BasicBlock(w, 2 * w, stride=2, downsample=down(w, 2 * w)),
            BasicBlock(2 * w, 4 * w, stride=2, downsample=down(2 * w, 4 * w)),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x))).flatten(1)


class Classifier(nn.Module):
    """A feature trunk and a linear head. A frozen trunk stays in eval mode (no BN/dropout
    updates) and runs without gradients unless only its CLS token is trained."""

    def __init__(self, trunk: nn.Module, dim: int, n_classes: int, freeze_trunk: bool = False,
                 cls_only: bool = False) -> None:
        super().__init__()
        self.trunk = trunk
        self.fc = nn.Linear(dim, n_classes)
        self.frozen = freeze_trunk or cls_only
        self.cls_only = cls_only
        if self.frozen:
            trunk.requires_grad_(False)
        else:
            trunk.requires_grad_(True)
        if cls_only:
            trunk.cls_token.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen and not self.cls_only:
            with torch.no_grad():
                feats = self.trunk(x)
        else:
            feats = self.trunk(x)
        return self.fc(feats)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen:
            self.trunk.eval()
        return self


def is_vit(name: str) -> bool:
    from headless.features.backbones import REGISTRY

    return name in REGISTRY


def known_models() -> list[str]:
    from headless.features.backbones import list_backbones

    return [*RESNETS, TINY_RESNET, *list_backbones()]


def _torchvision_weights_file(arch: str, key: str, download: bool | None = None) -> Path:
    """The cached torchvision checkpoint for ``arch`` (hub cache or $DINOSEG_CACHE)."""
    import torchvision

    from headless.features.backbones import WeightsError, cache_dir

    try:
        enum = torchvision.models.get_model_weights(arch)
        weights = enum[TORCHVISION_WEIGHTS[key]] if key in TORCHVISION_WEIGHTS else enum[key]
    except KeyError:
        raise ModelError(f"{arch} has no {key!r} weights in torchvision") from None
    fname = os.path.basename(weights.url)
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / fname, cache_dir() / fname]
    for c in candidates:
        if c.is_file():
            return c
    from headless.downloads import download_to, downloads_allowed

    if download is None:
        download = downloads_allowed()
    reason = "offline mode (DINOSEG_OFFLINE=1)"
    if download:
        try:
            return download_to(weights.url, candidates[0], progress=False)
        except Exception as exc:
            reason = f"download failed ({type(exc).__name__}: {exc})"
    raise WeightsError(
        f"ImageNet weights for {arch} not found: {reason}. Download {weights.url} and save it "
        f"as {candidates[0]} (or in $DINOSEG_CACHE), or give model.weights a local file, or "
        "leave model.weights empty for random initialisation."
    )


def _strip_state_dict(sd: dict[str, Any]) -> dict[str, Any]:
    for key in ("model", "state_dict"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    for prefix in ("module.", "trunk."):
        if sd and all(k.startswith(prefix) or k.startswith("fc.") for k in sd):
            sd = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
    return sd


def _load_resnet_weights(net: nn.Module, arch: str, weights: str) -> str:
    from headless.features.backbones import WeightsError, read_state_dict

    if weights in TORCHVISION_WEIGHTS or weights.startswith("IMAGENET"):
        path = _torchvision_weights_file(arch, weights)
        label = f"imagenet ({path.name})"
    else:
        path = Path(weights).expanduser()
        label = f"file ({path.name})"
    sd = _strip_state_dict(read_state_dict(path))
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}  # the head is ours
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return label


@dataclass
class BuiltModel:
    model: Classifier
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights_label: str
    patch_size: int | None = None


def build_model(cfg: Any, n_classes: int) -> BuiltModel:
    """The classifier of ``cfg`` (:class:`~headless.jobs.spec.ModelConfig`) with ``n_classes``."""
    name = cfg.type
    weights = cfg.weights if cfg.weights not in ("", "none", "None") else None
    if name in RESNETS:
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        label = "random (untrained)"
        if weights and weights != "random":
            label = _load_resnet_weights(net, name, weights)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        model = Classifier(net, dim, n_classes, freeze_trunk=cfg.freeze_backbone)
        built = BuiltModel(model, IMAGENET_MEAN, IMAGENET_STD, label)
    elif name == TINY_RESNET:
        net = TinyResNet()
        label = "random (untrained)"
        if weights and weights != "random":
            label = _load_resnet_weights(net, name, weights)
        model = Classifier(net, net.num_features, n_classes, freeze_trunk=cfg.freeze_backbone)
        built = BuiltModel(model, IMAGENET_MEAN, IMAGENET_STD, label)
    elif is_vit(name):
        from headless.features.backbones import load_backbone

        rng = torch.get_rng_state()
        backbone = load_backbone(name, weights=weights or "official", device="cpu")
        torch.set_rng_state(rng)  # loading must not change the run's random stream
        vit = backbone.model
        model = Classifier(vit, int(vit.num_features), n_classes,
                           freeze_trunk=cfg.freeze_backbone, cls_only=cfg.train_cls)
        built = BuiltModel(model, tuple(backbone.spec.mean), tuple(backbone.spec.std),
                           backbone.weights_label, backbone.patch_size)
    else:
        raise ModelError(f"model.type: unknown model {name!r}; known: {', '.join(known_models())}")
    nn.init.trunc_normal_(built.model.fc.weight, std=0.01)
    nn.init.zeros_(built.model.fc.bias)
    if cfg.resumed_model:
        _load_classifier_weights(built.model, cfg.resumed_model)
        built.weights_label += f" + {Path(cfg.resumed_model).name}"
    return built


def _load_classifier_weights(model: Classifier, path: str) -> None:
    from headless.features.backbones import WeightsError, read_state_dict

    sd = read_state_dict(path)
    for key in ("model", "state_dict"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[7:]: v for k, v in sd.items()}
    head = model.fc.weight.shape
    if "fc.weight" in sd and tuple(sd["fc.weight"].shape) != tuple(head):
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}  # other classes: new head
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsError(f"model.resumed_model {path} does not fit this model: missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]}")


def check_model(spec: ClassifierSpec) -> None:
    """Cheap checks before a run starts: known model, weights at hand, sizes that fit."""
    from headless.features.backbones import WeightsError, get_spec, official_weights_path

    cfg = spec.model
    if cfg.type not in (*RESNETS, TINY_RESNET) and not is_vit(cfg.type):
        raise ModelError(
            f"model.type: unknown model {cfg.type!r}; known: {', '.join(known_models())}"
        )
    w = cfg.weights
    if is_vit(cfg.type):
        bspec = get_spec(cfg.type)
        if spec.data.image_size % bspec.patch_size:
            k = max(1, round(spec.data.image_size / bspec.patch_size)) * bspec.patch_size
            raise ModelError(
                f"data.image_size={spec.data.image_size} is not a multiple of {cfg.type}'s patch "
                f"size {bspec.patch_size} (use {k})"
            )
        if not w or w == "official":
            if bspec.family == "test":
                raise WeightsError(f"{cfg.type} has no official weights: set model.weights: random")
            official_weights_path(bspec)
        elif w != "random" and not Path(w).expanduser().is_file():
            raise WeightsError(f"model.weights: file {w} does not exist")
    else:
        if cfg.train_cls:
            raise ModelError("model.train_cls needs a ViT backbone (a ResNet has no CLS token)")
        if w and w != "random":
            if w in TORCHVISION_WEIGHTS:
                if cfg.type == TINY_RESNET:
                    raise ModelError(f"{TINY_RESNET} has no ImageNet weights")
                _torchvision_weights_file(cfg.type, w)
            elif not Path(w).expanduser().is_file():
                raise WeightsError(
                    f"model.weights: {w!r} is neither a file nor one of "
                    f"{', '.join(TORCHVISION_WEIGHTS)}"
                )
    if cfg.resumed_model and not Path(cfg.resumed_model).expanduser().is_file():
        raise WeightsError(f"model.resumed_model: file {cfg.resumed_model} does not exist")
    if spec.crop.type == "attention":
        aspec = get_spec(spec.crop.attention_backbone)
        aw = spec.crop.attention_weights
        if aw == "official":
            official_weights_path(aspec)
        elif aw != "random" and not Path(aw).expanduser().is_file():
            raise WeightsError(f"crop.attention_weights: file {aw} does not exist")
