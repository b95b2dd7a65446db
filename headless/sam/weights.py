"""SAM weights: cache paths, download, safe reading, building, loading (registry: :mod:`.specs`).

Checkpoints are read **without executing pickled code** (``torch.load(weights_only=True)`` or
safetensors). :func:`load_sam` returns a :class:`~headless.sam.model.SamModel`; the tiny test
architecture and :func:`save_random_checkpoint` serve tests and benchmarks.

Heavy imports (torch, segment_anything) happen inside functions: importing this module is cheap.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headless.features.backbones import WeightsError
from headless.sam.model import SamModel
from headless.sam.specs import SamSpec, get_spec

if TYPE_CHECKING:  # pragma: no cover
    import torch


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class SamWeightsError(WeightsError):
    """SAM weights that are not on this machine: the message names the file, URL and cache."""


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be used (unsafe pickle, wrong layout, corrupt)."""


def weights_dir() -> Path:
    """Where official SAM checkpoints are looked for and downloaded to.

    The folder of every official weight file in this project
    (:func:`headless.features.backbones.cache_dir`):
    ``$DINOSEG_CACHE`` when set, else torch hub's checkpoint folder
    (``$TORCH_HOME/hub/checkpoints``, usually ``~/.cache/torch/hub/checkpoints``), where other
    tools already put these very files.
    """
    from headless.features.backbones import cache_dir

    return cache_dir()


def official_weights_path(name: str) -> Path:
    return weights_dir() / get_spec(name).filename


def _missing_message(spec: SamSpec, path: Path, cause: str = "") -> str:
    """One line naming the file, its URL and the cache folder, in the caller's terms."""
    from headless.downloads import missing_weights_message, random_hint

    if spec.url is None:
        return (f"SAM {spec.name} weights not found: {path}. Fix: this test architecture has no "
                "official weights; create the file with headless.sam.save_random_checkpoint() "
                f"or use {random_hint()}.")
    return missing_weights_message(f"SAM {spec.name}", spec.url, path, cause or "not in the cache")


def download_weights(name: str, progress: bool = True) -> Path:
    """Download the official checkpoint of ``name`` into :func:`weights_dir` (atomic)."""
    spec = get_spec(name)
    path = official_weights_path(name)
    if path.is_file():
        return path
    if spec.url is None:
        raise SamWeightsError(_missing_message(spec, path))
    from headless.downloads import download_to

    try:
        download_to(spec.url, path, progress=progress)
    except Exception as exc:  # offline, proxy, disk full: say what and how to fix it
        raise SamWeightsError(_missing_message(spec, path, str(exc))) from exc
    return path


def resolve_weights(name: str, weights: str | os.PathLike = "official",
                    download: bool | None = None) -> Path | None:
    """The checkpoint file for ``weights`` (None for ``"random"``); raises if it is missing.

    A missing official checkpoint is downloaded when ``download`` is true; ``None`` (default)
    means "yes unless ``DINOSEG_OFFLINE=1``", as for the DINO backbones.
    """
    spec = get_spec(name)
    if download is None:
        from headless.downloads import downloads_allowed

        download = downloads_allowed()
    w = str(weights)
    if w == "random":
        return None
    if w == "official":
        path = official_weights_path(name)
        if path.is_file():
            return path
        if download and spec.url is not None:
            return download_weights(name)
        cause = "offline mode (DINOSEG_OFFLINE=1)" if spec.url and not download else ""
        raise SamWeightsError(_missing_message(spec, path, cause))
    path = Path(w).expanduser()
    if not path.is_file():
        raise SamWeightsError(f"SAM checkpoint file not found: {path}")
    return path


# ---------------------------------------------------------------------------------------------
# Building and loading
# ---------------------------------------------------------------------------------------------
def build_sam_model(spec: SamSpec):
    """An untrained ``segment_anything.modeling.Sam`` with ``spec``'s architecture (eval mode)."""
    from functools import partial

    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = spec.image_size // spec.patch_size
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=spec.encoder_depth,
            embed_dim=spec.encoder_embed_dim,
            img_size=spec.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec.encoder_num_heads,
            patch_size=spec.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=spec.encoder_global_attn_indexes,
            window_size=spec.window_size,
            out_chans=spec.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=spec.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(spec.image_size, spec.image_size),
            mask_in_chans=spec.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=spec.decoder_depth,
                embedding_dim=spec.prompt_embed_dim,
                mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_num_heads,
            ),
            transformer_dim=spec.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=spec.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return model.eval()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, never executing code stored in it.

    ``.safetensors`` files hold no code by design; ``.pth``/``.pt`` files are opened with
    ``torch.load(weights_only=True)``, whose unpickler only rebuilds tensors and plain
    containers and refuses any other object. Official SAM files are plain state dicts;
    ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers (fine-tuning scripts) are unwrapped.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise SamWeightsError(f"SAM checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except Exception as exc:
            raise CheckpointError(
                f"{path}: cannot be read as safetensors ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"{path}: refused: the checkpoint contains pickled Python objects other than "
                "tensors, and loading it would execute code from the file. Weights are read "
                "with torch.load(weights_only=True); save a plain state dict "
                "(torch.save(model.state_dict(), ...)) or a .safetensors file. "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from exc
        except Exception as exc:
            raise CheckpointError(
                f"{path}: cannot be read as a PyTorch checkpoint ({type(exc).__name__}: {exc})"
            ) from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    from headless.features.layouts import non_finite_tensors

    bad = non_finite_tensors(obj)
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values (e.g. "
                              f"{bad[0]}): a damaged checkpoint")
    return obj


def _load_into(model, state: dict[str, torch.Tensor], spec: SamSpec, source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with other shapes (e.g. {k}: file {tuple(state[k].shape)}, "
                f"model {tuple(expected[k].shape)})"
            )
        raise CheckpointError(
            f"{source}: not a SAM {spec.name} checkpoint: keys " + "; ".join(parts)
            + ". Pick the model that matches the file (vit_b / vit_l / vit_h)."
        )
    model.load_state_dict(state, strict=True)


def load_sam(name: str = "vit_b", weights: str | os.PathLike = "official", device: str = "cpu",
             *, download: bool | None = None, seed: int = 0, cache_size: int = 8) -> SamModel:
    """Load a SAM variant: ``weights`` = ``"official"`` (cache folder), ``"random"`` or a file.

    A missing official checkpoint is downloaded into the cache folder unless ``download`` is
    false or ``DINOSEG_OFFLINE=1`` (see :func:`resolve_weights`).
    Random weights are seeded (``seed``) so two random models with one seed are identical.
    """
    import torch

    from headless.features.backbones import resolve_device

    spec = get_spec(name)
    device = resolve_device(device)
    path = resolve_weights(name, weights, download=download)
    if path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_sam_model(spec)
        label, tag = "random (untrained)", f"random:{seed}"
    else:
        state = read_state_dict(path)
        model = build_sam_model(spec)
        _load_into(model, state, spec, str(path))
        st = path.stat()
        label, tag = str(path), f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    model = model.to(device).eval()
    return SamModel(model, spec, weights_label=label, weights_tag=tag, cache_size=cache_size)


def save_random_checkpoint(path: str | os.PathLike | None = None, name: str = "test_sam_tiny",
                           seed: int = 0, safetensors: bool = False) -> Path:
    """Save a random-initialised SAM in the official key layout (for tests and benchmarks).

    Default path: the official cache path of ``name``, so ``weights="official"`` finds it.
    """
    import torch

    spec = get_spec(name)
    path = Path(path) if path is not None else official_weights_path(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam_model(spec)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return path
