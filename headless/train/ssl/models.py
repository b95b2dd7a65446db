"""Student and teacher backbones: DINO's ViTs (timm, the official DINO key layout) or ResNet-50.

The ViTs are timm ``VisionTransformer``s with DINO's settings (qkv bias, LayerNorm eps 1e-6,
CLS token after the final norm as the output) and the official position-embedding resize, so a
teacher exported from here is read by :func:`headless.features.backbones.load_backbone` as the
matching ``dino_vit*`` backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from headless.train.ssl.head import DINOHead, MultiCropWrapper

#: arch -> (embed_dim, depth, heads)
VIT_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12),
             "test_vit": (48, 2, 3)}


def features_backbone_name(arch: str, patch_size: int) -> str | None:
    """The :mod:`headless.features.backbones` registry entry this architecture loads as."""
    names = {("vit_tiny", 16): "dino_vitt16", ("vit_tiny", 8): "dino_vitt8",
             ("vit_small", 16): "dino_vits16", ("vit_small", 8): "dino_vits8",
             ("vit_base", 16): "dino_vitb16", ("vit_base", 8): "dino_vitb8",
             ("test_vit", 16): "test_dino_tiny16"}
    return names.get((arch, patch_size))


def build_backbone(arch: str, patch_size: int = 16, drop_path_rate: float = 0.0) -> nn.Module:
    """A randomly initialised backbone whose forward returns one vector per image."""
    if arch == "resnet50":
        import torchvision

        net = torchvision.models.resnet50(weights=None)
        net.fc = nn.Identity()
        net.embed_dim = 2048  # type: ignore[assignment]
        return net
    from timm.models.vision_transformer import VisionTransformer

    from headless.features.posembed import set_pos_resize

    dim, depth, heads = VIT_SIZES[arch]
    net = VisionTransformer(
        patch_size=patch_size, embed_dim=dim, depth=depth, num_heads=heads, num_classes=0,
        dynamic_img_size=True, img_size=224, drop_path_rate=drop_path_rate,
    )
    set_pos_resize(net, "timm" if arch == "test_vit" else "official", "dino", 0)
    return net


def embed_dim(net: nn.Module) -> int:
    return int(net.embed_dim)


@dataclass
class DinoModels:
    student: MultiCropWrapper
    teacher: MultiCropWrapper


def build_student_teacher(cfg: Any) -> DinoModels:
    """Student (drop path) and teacher (none) with the same initial weights; teacher frozen."""
    student_bb = build_backbone(cfg.arch, cfg.patch_size, cfg.drop_path_rate)
    teacher_bb = build_backbone(cfg.arch, cfg.patch_size, 0.0)
    if cfg.init_weights:
        _load_init(student_bb, cfg)
    dim = embed_dim(student_bb)
    sizes = {"hidden_dim": cfg.head_hidden_dim, "bottleneck_dim": cfg.head_bottleneck_dim}
    student = MultiCropWrapper(student_bb, DINOHead(
        dim, cfg.out_dim, use_bn=cfg.use_bn_in_head, norm_last_layer=cfg.norm_last_layer,
        **sizes))
    teacher = MultiCropWrapper(teacher_bb, DINOHead(dim, cfg.out_dim, cfg.use_bn_in_head,
                                                    **sizes))
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    return DinoModels(student, teacher)


def _load_init(net: nn.Module, cfg: Any) -> None:
    from headless.features.layouts import read_state_dict, unwrap

    sd = unwrap(read_state_dict(cfg.init_weights))
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if missing or unexpected:
        from headless.features.layouts import WeightsError

        raise WeightsError(f"model.init_weights {cfg.init_weights} does not fit {cfg.arch}: "
                           f"missing {missing[:5]}, unexpected {unexpected[:5]}")


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """DINO's groups: weight decay on weights, none on biases and norms (ndim 1)."""
    regularized, not_regularized = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith(".bias") or p.ndim == 1:
            not_regularized.append(p)
        else:
            regularized.append(p)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]


def clip_gradients(model: nn.Module, clip: float) -> list[float]:
    """Per-parameter norm clipping of the reference (not a global norm); the norms before."""
    norms = []
    for p in model.parameters():
        if p.grad is not None:
            norm = p.grad.data.norm(2)
            norms.append(float(norm))
            coef = clip / (norm + 1e-6)
            if coef < 1:
                p.grad.data.mul_(coef)
    return norms


def cancel_last_layer_gradients(epoch: int, model: nn.Module, freeze_epochs: int) -> None:
    if epoch >= freeze_epochs:
        return
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None


def ema_update(student: nn.Module, teacher: nn.Module, m: float) -> None:
    """teacher <- m * teacher + (1 - m) * student, parameter by parameter (buffers untouched)."""
    import torch

    with torch.no_grad():
        for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
            pt.data.mul_(m).add_((1 - m) * ps.detach().data)
