"""Position-embedding resizing: the official DINO / DINOv2 convention, or timm's.

A ViT pretrained on a ``M x M`` grid sees other image sizes through a resized position table.
The two conventions differ:

``official`` (default for the DINO and DINOv2 backbones)
    What ``interpolate_pos_encoding`` does in facebookresearch/dino and the original
    facebookresearch/dinov2 models: bicubic, **no antialiasing**, driven by the *scale factor*
    ``(n + 0.1) / M`` per axis for an ``n``-patch side (the "+0.1" guards against float
    rounding, dino issue #8), and the table unchanged on the pretraining grid. The DINOv2
    models *with registers* are built with ``interpolate_offset=0`` and
    ``interpolate_antialias=True`` in the official hub code: bicubic to the exact size with
    antialiasing, which is timm's rule, so for them both conventions agree.
``timm``
    ``timm.layers.resample_abs_pos_embed``: bicubic to the exact size, with antialiasing.

They agree on the pretraining grid; elsewhere the tables differ by a few percent of their range
when shrinking (antialiasing) and slightly when enlarging (scale factor vs size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

POS_RESIZE = ("official", "timm")


def resize_official(
    posemb: torch.Tensor, new_size: tuple[int, int], old_size: tuple[int, int],
    num_prefix_tokens: int, offset: float = 0.1, antialias: bool = False,
) -> torch.Tensor:
    """The official ``interpolate_pos_encoding`` on a ``(1, prefix + M*M, D)`` table.

    ``offset > 0``: ``scale_factor = (n + offset) / M`` (DINO, DINOv2); ``offset == 0``:
    ``size = (n_rows, n_cols)`` (DINOv2 with registers, with ``antialias=True``).
    """
    import torch
    import torch.nn.functional as F

    rows, cols = int(new_size[0]), int(new_size[1])
    m0, m1 = int(old_size[0]), int(old_size[1])
    if (rows, cols) == (m0, m1):
        return posemb  # the official code returns the table as is on the pretraining grid
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    g = grid.float().reshape(1, m0, m1, dim).permute(0, 3, 1, 2)
    if offset:
        kwargs: dict[str, Any] = {"scale_factor": ((rows + offset) / m0, (cols + offset) / m1)}
    else:
        kwargs = {"size": (rows, cols)}
    g = F.interpolate(g, mode="bicubic", antialias=antialias, align_corners=False, **kwargs)
    if tuple(g.shape[-2:]) != (rows, cols):  # the official code asserts the same
        raise RuntimeError(f"position table resized to {tuple(g.shape[-2:])}, not {rows, cols}")
    g = g.permute(0, 2, 3, 1).reshape(1, rows * cols, dim).to(posemb.dtype)
    return torch.cat([prefix, g], dim=1) if num_prefix_tokens else g


def _official_pos_embed(self: Any, x: torch.Tensor) -> torch.Tensor:
    """timm's ``VisionTransformer._pos_embed`` with the official resize (``x``: B, H, W, C)."""
    import torch

    to_cat = []
    if self.cls_token is not None:
        to_cat.append(self.cls_token.expand(x.shape[0], -1, -1))
    if self.reg_token is not None:
        to_cat.append(self.reg_token.expand(x.shape[0], -1, -1))
    b, h, w, c = x.shape
    prefix = 0 if self.no_embed_class else self.num_prefix_tokens
    offset, antialias = self.dinoseg_pos_resize
    pos = resize_official(self.pos_embed, (h, w), tuple(self.patch_embed.grid_size), prefix,
                          offset=offset, antialias=antialias)
    x = x.reshape(b, -1, c)
    if self.no_embed_class:
        x = x + pos
        if to_cat:
            x = torch.cat(to_cat + [x], dim=1)
    else:
        if to_cat:
            x = torch.cat(to_cat + [x], dim=1)
        x = x + pos
    return self.pos_drop(x)


_CLASSES: dict[type, type] = {}


def _official_class(base: type) -> type:
    """A subclass of timm's ViT whose ``_pos_embed`` follows the official code (picklable)."""
    if base not in _CLASSES:
        cls = type(f"Official{base.__name__}", (base,), {"_pos_embed": _official_pos_embed})
        cls.__module__ = __name__
        _CLASSES[base] = cls
        globals()[cls.__name__] = cls
    return _CLASSES[base]


def official_rule(family: str, num_registers: int) -> tuple[float, bool]:
    """``(offset, antialias)`` of the official code for a backbone family."""
    if family == "dinov2" and num_registers:
        return 0.0, True
    return 0.1, False


def set_pos_resize(model: Any, method: str, family: str = "dinov2", num_registers: int = 0) -> Any:
    """Make ``model`` (a timm ViT with ``dynamic_img_size``) resize positions by ``method``."""
    if method not in POS_RESIZE:
        raise ValueError(f"unknown position-embedding resize {method!r}; choose "
                         f"{' or '.join(POS_RESIZE)}")
    base = type(model)
    if base in _CLASSES.values():
        base = base.__mro__[1]
    if method == "timm":
        model.__class__ = base
        model.__dict__.pop("dinoseg_pos_resize", None)
        return model
    model.dinoseg_pos_resize = official_rule(family, num_registers)
    model.__class__ = _official_class(base)
    return model


def pos_resize_of(model: Any) -> str:
    """``"official"`` or ``"timm"``: the rule a loaded model follows."""
    return "official" if hasattr(model, "dinoseg_pos_resize") else "timm"


def __getattr__(name: str) -> Any:
    """Rebuild ``OfficialVisionTransformer`` on demand, so pickled models load in a new process."""
    if name == "OfficialVisionTransformer":
        from timm.models.vision_transformer import VisionTransformer

        return _official_class(VisionTransformer)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
