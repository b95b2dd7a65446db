"""Segment Anything (SAM): weights, cached image embeddings, masks, boxes, one mask per image.

Built on Meta's ``segment-anything`` package (its real model classes, predictor and automatic
mask generator). What this module adds around it:

- a registry of the official ViT-B/L/H checkpoints (URL, file name, architecture) plus a tiny
  test architecture, loaded from the cache folder or a local file **without executing pickled
  code** (``torch.load(weights_only=True)`` or safetensors);
- :class:`SamModel`: a loaded SAM whose image embedding is computed once per image *content*
  (memory LRU + optional :class:`~headless.store.ProjectStore` cache), so automatic masks,
  box-prompted masks and re-runs with other filter settings share one encoder pass;
- progress generators for automatic masks (SAM's point grid and quality filters, driven batch
  by batch so the GUI can show progress and cancel) and for one mask per box;
- exact conversions masks -> tight boxes and masks -> a labels image;
- seed 000's rule for choosing one mask per image as its pseudo ground truth
  (:func:`choose_mask`).

Heavy imports (torch, segment_anything) happen inside functions: importing this module is cheap.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headless.backbones import WeightsError
from headless.boxes import Box
from headless.progress import Progress, ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from headless.store import ProjectStore

EMBEDDING_CACHE_KIND = "sam-embedding"
_EMBEDDING_VERSION = "v1"


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class SamWeightsError(WeightsError):
    """SAM weights that are not on this machine: the message names the file, URL and cache."""


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be used (unsafe pickle, wrong layout, corrupt)."""


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamSpec:
    """Architecture and official weights of one SAM variant.

    The defaults are those of Meta's ``build_sam.py``; only the encoder differs between
    ViT-B/L/H. The test architecture shrinks everything but keeps the same modules, so its
    state dict has the official key layout.
    """

    name: str
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    filename: str
    url: str | None
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    is_test: bool = False


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

SAM_MODELS: dict[str, SamSpec] = {
    "vit_b": SamSpec(
        "vit_b", 768, 12, 12, (2, 5, 8, 11),
        filename="sam_vit_b_01ec64.pth", url=_SAM_URL + "sam_vit_b_01ec64.pth",
    ),
    "vit_l": SamSpec(
        "vit_l", 1024, 24, 16, (5, 11, 17, 23),
        filename="sam_vit_l_0b3195.pth", url=_SAM_URL + "sam_vit_l_0b3195.pth",
    ),
    "vit_h": SamSpec(
        "vit_h", 1280, 32, 16, (7, 15, 23, 31),
        filename="sam_vit_h_4b8939.pth", url=_SAM_URL + "sam_vit_h_4b8939.pth",
    ),
    # tiny, for tests and benchmarks: 128 px input, 8x8 embedding grid, 32-d everything
    "test_sam_tiny": SamSpec(
        "test_sam_tiny", 32, 2, 2, (1,),
        filename="sam_test_tiny.pth", url=None,
        image_size=128, window_size=4, prompt_embed_dim=32, mask_in_chans=4,
        decoder_depth=2, decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32,
        is_test=True,
    ),
}


def list_sam_models(include_test: bool = False) -> list[str]:
    """Names of the registered SAM variants (the official ones first)."""
    return [n for n, s in SAM_MODELS.items() if include_test or not s.is_test]


def get_spec(name: str) -> SamSpec:
    try:
        return SAM_MODELS[name]
    except KeyError:
        known = ", ".join(SAM_MODELS)
        raise ValueError(f"unknown SAM model {name!r}; known models: {known}") from None


def weights_dir() -> Path:
    """Where official SAM checkpoints are looked for and downloaded to.

    The folder of every official weight file in this project (:func:`headless.backbones.cache_dir`):
    ``$DINOSEG_CACHE`` when set, else torch hub's checkpoint folder
    (``$TORCH_HOME/hub/checkpoints``, usually ``~/.cache/torch/hub/checkpoints``), where other
    tools already put these very files.
    """
    from headless.backbones import cache_dir

    return cache_dir()


def official_weights_path(name: str) -> Path:
    return weights_dir() / get_spec(name).filename


def _missing_message(spec: SamSpec, path: Path, cause: str = "") -> str:
    where = f"SAM {spec.name} weights not found: {path}"
    if spec.url is None:
        fix = (
            "this test architecture has no official weights; create the file with "
            "headless.sam.save_random_checkpoint() or use weights='random'"
        )
    else:
        fix = (
            f"download {spec.url} into {path.parent} (the cache folder; set DINOSEG_CACHE to "
            "move it), or pass a local checkpoint file as the weights"
        )
    return f"{where}. {cause + '. ' if cause else ''}Fix: {fix}."


def download_weights(name: str, progress: bool = True) -> Path:
    """Download the official checkpoint of ``name`` into :func:`weights_dir` (atomic)."""
    spec = get_spec(name)
    path = official_weights_path(name)
    if path.is_file():
        return path
    if spec.url is None:
        raise SamWeightsError(_missing_message(spec, path))
    import socket

    import torch.hub

    path.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        # writes to a temporary file and renames: an interrupted download leaves no bad file
        torch.hub.download_url_to_file(spec.url, str(path), progress=progress)
    except Exception as exc:  # offline, proxy, disk full: say what and how to fix it
        raise SamWeightsError(
            _missing_message(spec, path, f"Downloading failed ({type(exc).__name__}: {exc})")
        ) from exc
    finally:
        socket.setdefaulttimeout(old)
    return path


def resolve_weights(name: str, weights: str | os.PathLike = "official",
                    download: bool | None = None) -> Path | None:
    """The checkpoint file for ``weights`` (None for ``"random"``); raises if it is missing.

    A missing official checkpoint is downloaded when ``download`` is true; ``None`` (default)
    means "yes unless ``DINOSEG_OFFLINE=1``", as for the DINO backbones.
    """
    spec = get_spec(name)
    if download is None:
        download = os.environ.get("DINOSEG_OFFLINE", "0") != "1"
    w = str(weights)
    if w == "random":
        return None
    if w == "official":
        path = official_weights_path(name)
        if path.is_file():
            return path
        if download and spec.url is not None:
            return download_weights(name)
        cause = "Offline mode (DINOSEG_OFFLINE=1)" if spec.url and not download else ""
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

    from headless.backbones import resolve_device

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


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Any 2D image (grey / RGB / RGBA, any dtype) -> ``(H, W, 3)`` uint8, what SAM eats."""
    from headless.images import to_rgb01

    rgb = to_rgb01(image)
    return np.ascontiguousarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# The loaded model with its embedding cache
# ---------------------------------------------------------------------------------------------
@dataclass
class Embedding:
    """SAM's image embedding of one image, with the sizes the predictor needs to decode."""

    features: Any  # torch.Tensor (1, C, g, g) on the model's device
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    key: str


class SamModel:
    """A loaded SAM plus an embedding cache: the encoder runs once per image content.

    The cache key is a hash of the uint8 RGB pixels, the model name and the weights' identity
    (file, size, mtime; or the random seed), so an edited image or other weights never reuse a
    stale embedding. Embeddings live in a small in-memory LRU and, when a
    :class:`~headless.store.ProjectStore` is passed, in its ``sam-embedding`` cache on disk.

    Not thread-safe: run one computation at a time per instance (the GUI disables its buttons
    while a worker runs).
    """

    def __init__(self, model, spec: SamSpec, weights_label: str, weights_tag: str,
                 cache_size: int = 8) -> None:
        from segment_anything import SamPredictor

        self.model = model
        self.spec = spec
        self.weights_label = weights_label
        self.weights_tag = weights_tag
        self.predictor = SamPredictor(model)
        self.cache_size = max(1, int(cache_size))
        self._memory: OrderedDict[str, Embedding] = OrderedDict()
        self._lock = threading.Lock()
        self.encoder_passes = 0  # how many times the image encoder really ran

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self):
        return self.model.device

    @property
    def is_random(self) -> bool:
        return self.weights_tag.startswith("random:")

    def embedding_key(self, rgb: np.ndarray) -> str:
        from headless.store import array_hash

        return array_hash(rgb, self.spec.name, self.weights_tag, _EMBEDDING_VERSION)

    def embed(self, image: np.ndarray, store: ProjectStore | None = None) -> Embedding:
        """The embedding of ``image``: from memory, from ``store``, or one encoder pass."""
        import torch

        image = np.asarray(image)
        rgb = image if (image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3) \
            else to_uint8_rgb(image)
        key = self.embedding_key(rgb)
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        emb = None
        if store is not None:
            cached = store.cache_get(EMBEDDING_CACHE_KIND, key)
            if cached is not None and {"features", "original_size", "input_size"} <= set(cached):
                emb = Embedding(
                    torch.from_numpy(cached["features"]).to(self.device),
                    tuple(int(v) for v in cached["original_size"]),
                    tuple(int(v) for v in cached["input_size"]),
                    key,
                )
        if emb is None:
            self.predictor.set_image(rgb)  # SAM's own resize + normalise + pad + encoder
            self.encoder_passes += 1
            emb = Embedding(
                self.predictor.features, tuple(self.predictor.original_size),
                tuple(self.predictor.input_size), key,
            )
            if store is not None:
                try:
                    store.cache_put(
                        EMBEDDING_CACHE_KIND, key,
                        features=emb.features.detach().float().cpu().numpy(),
                        original_size=np.asarray(emb.original_size),
                        input_size=np.asarray(emb.input_size),
                    )
                except OSError:  # read-only folder, full disk: the cache is an optimisation
                    pass
        with self._lock:
            self._memory[key] = emb
            while len(self._memory) > self.cache_size:
                self._memory.popitem(last=False)
        return emb

    def set_image(self, image: np.ndarray, store: ProjectStore | None = None) -> Embedding:
        """Make the predictor ready to decode prompts on ``image`` (cached embedding)."""
        emb = self.embed(image, store)
        p = self.predictor
        p.reset_image()
        p.features = emb.features
        p.original_size = emb.original_size
        p.input_size = emb.input_size
        p.is_image_set = True
        return emb

    def clear_cache(self) -> None:
        with self._lock:
            self._memory.clear()


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass
class MaskSet:
    """SAM masks of one image with their quality scores.

    ``masks[i]`` has label ``i + 1`` in :meth:`labels`. Automatic masks are sorted by area,
    largest first; box-prompted masks follow the order of the boxes (``prompts`` holds each
    mask's point ``(x, y)`` or box ``(x0, y0, x1, y1)``). ``empty_prompts`` lists boxes that lay
    entirely outside the image (their masks are empty). ``classes`` holds a class name per mask
    (the prompt box's label; "object" for automatic masks).
    """

    masks: np.ndarray  # (N, H, W) bool
    predicted_iou: np.ndarray  # (N,) float32, the decoder's own quality estimate
    stability_score: np.ndarray  # (N,) float32, IoU of masks at logit thresholds +-offset
    prompts: np.ndarray  # (N, 2) points or (N, 4) boxes, image pixels
    kind: str  # "automatic" | "boxes"
    model: str = ""
    empty_prompts: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.classes) != self.n:
            self.classes = ["object"] * self.n

    @property
    def n(self) -> int:
        return int(self.masks.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.masks.shape[1]), int(self.masks.shape[2]))

    @property
    def areas(self) -> np.ndarray:
        return self.masks.sum(axis=(1, 2)).astype(np.int64)

    def labels(self) -> np.ndarray:
        return labels_from_masks(self.masks)

    def boxes(self, source: str = "sam") -> list[Box | None]:
        """Tight box of each mask (None for an empty mask), scored by predicted IoU."""
        return [
            mask_to_box(m, label=c, score=float(s), source=source)
            for m, s, c in zip(self.masks, self.predicted_iou, self.classes)
        ]

    def table(self) -> dict[str, np.ndarray]:
        """One row per label (``label`` = value in :meth:`labels`), for layers and files."""
        boxes = self.boxes()
        nan = float("nan")
        return {
            "label": np.arange(1, self.n + 1, dtype=np.int64),
            "predicted_iou": self.predicted_iou.astype(np.float32),
            "stability_score": self.stability_score.astype(np.float32),
            "area": self.areas,
            "x0": np.array([b.x0 if b else nan for b in boxes], np.float64),
            "y0": np.array([b.y0 if b else nan for b in boxes], np.float64),
            "x1": np.array([b.x1 if b else nan for b in boxes], np.float64),
            "y1": np.array([b.y1 if b else nan for b in boxes], np.float64),
        }

    @classmethod
    def empty(cls, shape: tuple[int, int], kind: str, model: str = "") -> MaskSet:
        return cls(
            np.zeros((0, *shape), bool), np.zeros(0, np.float32), np.zeros(0, np.float32),
            np.zeros((0, 4 if kind == "boxes" else 2), np.float32), kind, model,
        )


# ---------------------------------------------------------------------------------------------
# Masks <-> boxes <-> labels (exact, pure numpy)
# ---------------------------------------------------------------------------------------------
def mask_to_box(mask: np.ndarray, label: str = "object", score: float | None = None,
                source: str = "sam") -> Box | None:
    """The tightest box holding every pixel of ``mask`` (``x1``/``y1`` exclusive); None if empty."""
    m = np.asarray(mask, bool)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return Box(float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1),
               label=label, score=score, source=source)


def masks_to_boxes(masks: np.ndarray | Sequence[np.ndarray], scores: Sequence[float] | None = None,
                   label: str = "object", source: str = "sam") -> list[Box]:
    """Tight boxes of the non-empty masks, in order (empty masks give no box)."""
    out = []
    for i, m in enumerate(masks):
        b = mask_to_box(m, label=label, score=None if scores is None else float(scores[i]),
                        source=source)
        if b is not None:
            out.append(b)
    return out


def boxes_from_labels(labels: np.ndarray, scores: dict[int, float] | None = None,
                      label: str = "object", source: str = "sam") -> list[Box]:
    """Tight box of every label value > 0 of a labels image, by increasing label value.

    This is what "boxes from masks" uses on a Labels layer, so hand edits count.
    """
    from scipy import ndimage

    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"expected a 2D labels image, got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {lab.dtype}")
    values = np.unique(lab)
    values = values[values > 0]
    out = []
    if values.size == 0:
        return out
    # relabel to 1..K so find_objects stays small for sparse label values
    dense = np.searchsorted(values, lab)
    dense = np.where(lab > 0, dense + 1, 0)
    for v, sl in zip(values, ndimage.find_objects(dense)):
        if sl is None:
            continue
        s = None if scores is None else scores.get(int(v))
        out.append(Box(float(sl[1].start), float(sl[0].start), float(sl[1].stop),
                       float(sl[0].stop), label=label,
                       score=None if s is None or not np.isfinite(s) else float(s), source=source))
    return out


def labels_from_masks(masks: np.ndarray) -> np.ndarray:
    """Labels image with value ``i + 1`` for mask ``i``; where masks overlap the smaller wins.

    Painting larger masks first keeps parts (small masks inside large ones) visible, as SAM's
    automatic masks nest. A mask entirely covered by smaller ones has no visible pixel.
    """
    m = np.asarray(masks, bool)
    if m.ndim != 3:
        raise ValueError(f"expected masks of shape (N, H, W), got {m.shape}")
    n = m.shape[0]
    dtype = np.uint16 if n < np.iinfo(np.uint16).max else np.uint32
    out = np.zeros(m.shape[1:], dtype)
    areas = m.sum(axis=(1, 2))
    for i in np.argsort(-areas, kind="stable"):
        out[m[i]] = i + 1
    return out


def masks_from_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, masks): one boolean mask per label value > 0 of a labels image."""
    lab = np.asarray(labels)
    values = np.unique(lab)
    values = values[values > 0]
    if values.size == 0:
        return values, np.zeros((0, *lab.shape), bool)
    return values, np.stack([lab == v for v in values])


# ---------------------------------------------------------------------------------------------
# Automatic masks
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoMaskParams:
    """SAM's automatic mask generator settings (defaults = SAM's, chosen for ViT-H).

    ``pred_iou_thresh``: drop masks whose predicted IoU is not above it.
    ``stability_score_thresh``: drop masks less stable than this under a +-offset logit cut.
    ``box_nms_thresh``: box IoU above which duplicate masks are suppressed.
    ``min_mask_region_area``: fill holes and remove islands smaller than this (pixels).
    ``crop_n_layers``: > 0 also runs on 4, 16, ... overlapping crops (each crop = one encoder
    pass, cached like the full image).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def validate(self) -> None:
        if self.points_per_side < 1:
            raise ValueError(f"points_per_side must be >= 1, got {self.points_per_side}")
        if self.points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {self.points_per_batch}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh",
                     "crop_nms_thresh", "crop_overlap_ratio"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")
        if self.crop_n_layers < 0 or self.min_mask_region_area < 0:
            raise ValueError("crop_n_layers and min_mask_region_area must be >= 0")
        if self.crop_n_points_downscale_factor < 1:
            raise ValueError("crop_n_points_downscale_factor must be >= 1")


def automatic_masks(sam: SamModel, image: np.ndarray, params: AutoMaskParams | None = None,
                    store: ProjectStore | None = None) -> ProgressGen[MaskSet]:
    """SAM's automatic mask generation on ``image``, as a progress generator.

    Same algorithm and filters as ``SamAutomaticMaskGenerator.generate`` (point grid, predicted
    IoU and stability filters, box NMS, crop layers), with two differences: every crop's
    embedding comes from :meth:`SamModel.embed` (the generator itself would re-run the encoder
    on every call), and the loop is driven batch by batch to report progress. Small-region
    clean-up is done with scipy (SAM's needs OpenCV). Empty masks are dropped; the result is
    sorted by area, largest first.
    """
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import (
        MaskData,
        batch_iterator,
        generate_crop_boxes,
        rle_to_mask,
        uncrop_boxes_xyxy,
        uncrop_points,
    )
    from torchvision.ops import batched_nms, box_area

    params = params or AutoMaskParams()
    params.validate()
    rgb = to_uint8_rgb(image)
    orig_size = rgb.shape[:2]
    gen = SamAutomaticMaskGenerator(
        sam.model,
        points_per_side=params.points_per_side,
        points_per_batch=params.points_per_batch,
        pred_iou_thresh=params.pred_iou_thresh,
        stability_score_thresh=params.stability_score_thresh,
        stability_score_offset=params.stability_score_offset,
        box_nms_thresh=params.box_nms_thresh,
        crop_n_layers=params.crop_n_layers,
        crop_nms_thresh=params.crop_nms_thresh,
        crop_overlap_ratio=params.crop_overlap_ratio,
        crop_n_points_downscale_factor=params.crop_n_points_downscale_factor,
        min_mask_region_area=0,  # done below without OpenCV
        output_mode="binary_mask",
    )
    gen.predictor = sam.predictor  # decode on our cached embeddings

    crop_boxes, layer_idxs = generate_crop_boxes(
        orig_size, params.crop_n_layers, params.crop_overlap_ratio
    )
    n_batches = [
        math.ceil(len(gen.point_grids[li]) / params.points_per_batch) for li in layer_idxs
    ]
    total = sum(n_batches) + len(crop_boxes) + 1
    done = 0
    data = MaskData()
    for ci, (crop_box, li) in enumerate(zip(crop_boxes, layer_idxs)):
        yield Progress(done, total, f"embedding crop {ci + 1}/{len(crop_boxes)}")
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        sam.set_image(crop, store)
        done += 1
        crop_hw = crop.shape[:2]
        points = gen.point_grids[li] * np.array(crop_hw)[None, ::-1]
        crop_data = MaskData()
        for bi, (pts,) in enumerate(batch_iterator(params.points_per_batch, points)):
            yield Progress(done, total, f"crop {ci + 1}: points batch {bi + 1}/{n_batches[ci]}")
            with torch.no_grad():
                crop_data.cat(gen._process_batch(pts, crop_hw, crop_box, orig_size))
            done += 1
        sam.predictor.reset_image()
        if len(crop_data["rles"]):
            keep = batched_nms(
                crop_data["boxes"].float(), crop_data["iou_preds"],
                torch.zeros(len(crop_data["boxes"])), iou_threshold=params.box_nms_thresh,
            )
            crop_data.filter(keep)
        crop_data["boxes"] = uncrop_boxes_xyxy(crop_data["boxes"], crop_box)
        crop_data["points"] = uncrop_points(crop_data["points"], crop_box)
        crop_data["crop_boxes"] = torch.tensor(
            [crop_box for _ in range(len(crop_data["rles"]))], dtype=torch.int64
        ).reshape(-1, 4)
        data.cat(crop_data)

    yield Progress(done, total, "filtering masks")
    if len(crop_boxes) > 1 and len(data["rles"]):
        scores = 1.0 / box_area(data["crop_boxes"]).float()  # prefer masks from smaller crops
        keep = batched_nms(data["boxes"].float(), scores, torch.zeros(len(data["boxes"])),
                           iou_threshold=params.crop_nms_thresh)
        data.filter(keep)
    data.to_numpy()

    masks = [rle_to_mask(r) for r in data["rles"]]
    ious = np.asarray(data["iou_preds"], np.float32).reshape(-1)
    stab = np.asarray(data["stability_score"], np.float32).reshape(-1)
    pts = np.asarray(data["points"], np.float32).reshape(-1, 2)
    if params.min_mask_region_area > 0 and masks:
        masks, keep_idx = _clean_small_regions(
            masks, params.min_mask_region_area, max(params.box_nms_thresh, params.crop_nms_thresh)
        )
        ious, stab, pts = ious[keep_idx], stab[keep_idx], pts[keep_idx]
    if not masks:
        return MaskSet.empty(orig_size, "automatic", sam.name)
    stack = np.stack(masks).astype(bool)
    areas = stack.reshape(len(stack), -1).sum(1)
    order = [i for i in np.argsort(-areas, kind="stable") if areas[i] > 0]
    return MaskSet(stack[order], ious[order], stab[order], pts[order], "automatic", sam.name)


def remove_small_regions(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    """Fill holes and remove islands smaller than ``min_area`` pixels (8-connected).

    As SAM's post-processing: if every island is small, the largest one is kept.
    Returns the cleaned mask and whether it changed.
    """
    from scipy import ndimage

    eight = np.ones((3, 3), bool)
    m = np.asarray(mask, bool).copy()
    changed = False
    lab, n = ndimage.label(~m, structure=eight)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        small = np.flatnonzero(sizes < min_area) + 1
        if small.size:
            m |= np.isin(lab, small)
            changed = True
    lab, n = ndimage.label(m, structure=eight)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        keep = sizes >= min_area
        if not keep.all():
            if not keep.any():
                keep[int(np.argmax(sizes))] = True
            if not keep.all():
                m = np.isin(lab, np.flatnonzero(keep) + 1)
                changed = True
    return m, changed


def _clean_small_regions(masks: list[np.ndarray], min_area: int,
                         nms_thresh: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Clean every mask, then drop duplicates by box NMS preferring unchanged masks."""
    import torch
    from torchvision.ops import nms

    cleaned, scores, boxes = [], [], []
    for m in masks:
        c, changed = remove_small_regions(m, min_area)
        cleaned.append(c)
        scores.append(0.0 if changed else 1.0)
        b = mask_to_box(c)
        # inclusive corners, like SAM's batched_mask_to_box
        boxes.append([0, 0, 0, 0] if b is None else [b.x0, b.y0, b.x1 - 1, b.y1 - 1])
    keep = nms(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), nms_thresh)
    keep_idx = np.sort(keep.numpy())
    return [cleaned[i] for i in keep_idx], keep_idx


# ---------------------------------------------------------------------------------------------
# Box-prompted masks
# ---------------------------------------------------------------------------------------------
def masks_from_boxes(sam: SamModel, image: np.ndarray, boxes: Sequence[Box],
                     store: ProjectStore | None = None, *, batch_size: int = 16,
                     multimask: bool = False,
                     stability_score_offset: float = 1.0) -> ProgressGen[MaskSet]:
    """One SAM mask per box, in the order of ``boxes``, as a progress generator.

    Boxes are clipped to the image first; a box entirely outside the image gets an empty mask
    (and its index in ``empty_prompts``). No boxes -> an empty :class:`MaskSet` without running
    the encoder. ``multimask=True`` lets SAM propose three masks per box and keeps the one with
    the highest predicted IoU (SAM's advice for a box prompt is a single mask, the default).
    """
    import torch
    from segment_anything.utils.amg import calculate_stability_score

    rgb = to_uint8_rgb(image)
    h, w = rgb.shape[:2]
    n = len(boxes)
    if n == 0:
        return MaskSet.empty((h, w), "boxes", sam.name)
    clipped = [b.clip(w, h) for b in boxes]
    valid = [i for i, b in enumerate(clipped) if b.width > 0 and b.height > 0]
    xyxy = np.array([b.xyxy() for b in clipped], np.float32).reshape(n, 4)
    masks = np.zeros((n, h, w), bool)
    ious = np.zeros(n, np.float32)
    stab = np.zeros(n, np.float32)
    n_batches = math.ceil(len(valid) / max(1, batch_size))
    total = 1 + n_batches
    if valid:
        yield Progress(0, total, "embedding image")
        sam.set_image(rgb, store)
        thr = sam.model.mask_threshold
        for bi in range(n_batches):
            yield Progress(1 + bi, total, f"boxes batch {bi + 1}/{n_batches}")
            idx = valid[bi * batch_size:(bi + 1) * batch_size]
            tb = sam.predictor.transform.apply_boxes_torch(
                torch.as_tensor(xyxy[idx], device=sam.device), (h, w)
            )
            with torch.no_grad():
                logits, iou, _ = sam.predictor.predict_torch(
                    None, None, boxes=tb, multimask_output=multimask, return_logits=True
                )
                best = iou.argmax(dim=1)
                rows = torch.arange(len(idx), device=iou.device)
                logits, iou = logits[rows, best], iou[rows, best]
                s = calculate_stability_score(logits, thr, stability_score_offset)
            masks[idx] = (logits > thr).cpu().numpy()
            ious[idx] = iou.float().cpu().numpy()
            stab[idx] = s.float().cpu().numpy()
    empty = [i for i in range(n) if i not in set(valid)]
    return MaskSet(masks, ious, stab, xyxy, "boxes", sam.name, empty_prompts=empty,
                   classes=[b.label for b in boxes])


# ---------------------------------------------------------------------------------------------
# One mask per image (seed 000)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskChoice:
    """The mask chosen as an image's pseudo ground truth, and why.

    ``scores`` holds each mask's score under ``rule`` (the class logit, or the IoU with the
    thresholded attention); ``tiebreak`` the mean attention inside each mask (attention rule).
    """

    index: int
    rule: str  # "classifier" | "attention"
    scores: np.ndarray
    tiebreak: np.ndarray | None
    box: Box | None


def mask_crops(image: np.ndarray, masks: np.ndarray) -> list[np.ndarray | None]:
    """The image cropped to each mask's tight box, RGB float32 in [0, 1] (None if empty)."""
    from headless.images import to_rgb01

    rgb = to_rgb01(image)
    crops: list[np.ndarray | None] = []
    for m in masks:
        b = mask_to_box(m)
        crops.append(None if b is None else
                     rgb[int(b.y0):int(b.y1), int(b.x0):int(b.x1)].copy())
    return crops


def crop_classifier(module, size: int = 224,
                    mean: Sequence[float] = (0.485, 0.456, 0.406),
                    std: Sequence[float] = (0.229, 0.224, 0.225), device: str = "cpu",
                    batch_size: int = 32) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Wrap an image classifier (e.g. a torchvision ResNet-50) as ``crops -> logits``.

    Each crop is resized to ``size x size`` (bilinear, antialiased), normalised with
    ``mean``/``std`` and run through ``module`` in eval mode, in batches; the result is the
    ``(N, C)`` logits :func:`choose_mask` expects. Seed 000 scored SAM mask crops this way with
    its trained ResNet-50.
    """
    import torch
    import torch.nn.functional as F

    m = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def classify(crops: list[np.ndarray]) -> np.ndarray:
        module.eval()
        out = []
        for start in range(0, len(crops), batch_size):
            batch = []
            for c in crops[start:start + batch_size]:
                t = torch.from_numpy(np.ascontiguousarray(c, np.float32)).permute(2, 0, 1)[None]
                batch.append(F.interpolate(t, size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=True))
            x = ((torch.cat(batch) - m) / s).to(device)
            with torch.no_grad():
                out.append(module(x).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    return classify


def choose_mask(masks: np.ndarray | MaskSet, image: np.ndarray | None = None, *,
                classifier: Callable[[list[np.ndarray]], Any] | None = None,
                class_index: int | None = None,
                attention: np.ndarray | None = None,
                attention_mask: np.ndarray | None = None,
                keep: float = 0.6) -> MaskChoice:
    """Pick one mask per image as its pseudo ground truth, by seed 000's rule.

    With a classifier (``classifier(crops) -> logits`` of shape ``(N, C)``, one row per crop;
    crops are the image cut to each mask's tight box, RGB float32 in [0, 1]): the mask whose
    crop gets the highest logit for ``class_index``, the image's class.

    Without one, the mask that best agrees with the DINO attention map: highest IoU between
    the mask and the thresholded attention mask (``attention_mask``; if not given, ``attention``
    thresholded with DINO's rule of keeping the smallest set of pixels that holds ``keep`` of
    the attention mass); ties broken by the highest mean attention inside the mask. Both maps
    are at image resolution (see :func:`attention_for_image`).

    Remaining ties go to the lowest index (the largest mask for automatic masks). Empty masks
    are never chosen.
    """
    m = masks.masks if isinstance(masks, MaskSet) else np.asarray(masks, bool)
    if m.ndim != 3 or m.shape[0] == 0:
        raise ValueError("no masks to choose from")
    n = m.shape[0]
    nonempty = m.reshape(n, -1).any(1)
    if not nonempty.any():
        raise ValueError("every mask is empty; nothing to choose")

    if classifier is not None:
        if image is None or class_index is None:
            raise ValueError("the classifier rule needs the image and the image's class index")
        crops = mask_crops(image, m)
        idx = [i for i, c in enumerate(crops) if c is not None]
        logits = classifier([crops[i] for i in idx])
        if hasattr(logits, "detach"):
            logits = logits.detach().float().cpu().numpy()
        logits = np.asarray(logits, np.float64)
        if logits.ndim == 1:
            logits = logits[:, None]
            if class_index != 0:
                raise ValueError("the classifier returned one score per crop; use class_index=0")
        if logits.shape[0] != len(idx):
            raise ValueError(
                f"the classifier returned {logits.shape[0]} rows for {len(idx)} crops"
            )
        if not 0 <= class_index < logits.shape[1]:
            raise ValueError(
                f"class index {class_index} out of range for {logits.shape[1]} classes"
            )
        scores = np.full(n, -np.inf)
        scores[idx] = logits[:, class_index]
        best = int(np.argmax(scores))
        return MaskChoice(best, "classifier", scores, None, mask_to_box(m[best], source="sam"))

    if attention is None and attention_mask is None:
        raise ValueError("give a classifier or a DINO attention map to choose a mask")
    if attention is not None:
        attention = np.asarray(attention, np.float64)
        if attention.shape != m.shape[1:]:
            raise ValueError(
                f"attention map has shape {attention.shape}, the masks {m.shape[1:]}"
            )
    if attention_mask is None:
        attention_mask = threshold_attention(attention, keep)
    att = np.asarray(attention_mask, bool)
    if att.shape != m.shape[1:]:
        raise ValueError(f"attention mask has shape {att.shape}, the masks {m.shape[1:]}")
    flat = m.reshape(n, -1)
    a = att.reshape(-1)
    inter = (flat & a).sum(1)
    union = (flat | a).sum(1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    iou = np.where(nonempty, iou, -np.inf)
    if attention is not None:
        areas = flat.sum(1)
        mean_att = np.where(nonempty, (flat * attention.reshape(1, -1)).sum(1)
                            / np.maximum(areas, 1), -np.inf)
    else:
        mean_att = np.zeros(n)
    # highest IoU, then highest mean attention, then lowest index
    order = np.lexsort((np.arange(n), -mean_att, -iou))
    best = int(order[0])
    return MaskChoice(best, "attention", iou, mean_att if attention is not None else None,
                      mask_to_box(m[best], source="sam"))


def threshold_attention(attention: np.ndarray, keep: float = 0.6) -> np.ndarray:
    """DINO's rule: the smallest set of pixels holding ``keep`` of the attention mass.

    Delegates to :func:`headless.features.attention_mask` so the whole project thresholds
    attention one way.
    """
    from headless.features import attention_mask

    return np.asarray(attention_mask(np.asarray(attention, np.float32), keep), bool)


def attention_for_image(backbone, image: np.ndarray, keep: float = 0.6,
                        size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DINO attention at image resolution: (head-mean map float32, thresholded bool mask).

    The map is the last layer's CLS attention averaged over heads; it is thresholded on the
    patch grid with DINO's keep-mass rule (:func:`headless.features.attention_mask`), then both
    are brought to the image's pixels with :func:`headless.features.grid_to_image` (nearest:
    each patch covers its block of pixels).
    """
    from headless import features

    feats = features.extract_image(backbone, np.asarray(image), size=size)
    attn = feats.attn[0].float().mean(0).cpu().numpy().astype(np.float32)  # (h, w)
    mask = np.asarray(features.attention_mask(attn, keep), bool)
    return (features.grid_to_image(attn, feats).astype(np.float32),
            features.grid_to_image(mask, feats).astype(bool))
