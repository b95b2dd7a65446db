"""A loaded SAM with its image-embedding cache, and the image conversion SAM eats.

Heavy imports (torch, segment_anything) happen inside functions: importing this module is cheap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from headless.sam.specs import SamSpec
    from headless.store import ProjectStore

EMBEDDING_CACHE_KIND = "sam-embedding"
_EMBEDDING_VERSION = "v1"


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
