"""``dinoseg attention-maps`` as a batch task: the dataset's attention cache, in shards.

The same cache the command writes (:mod:`headless.train.attention_maps.compute`), through its own
per-image functions: the header size (``_image_hw``), the grid-aligned input shape
(:func:`~headless.train.attention_maps.compute.grid_shape`), the resized, normalised input
(``_load_resized``, here in the loader's processes), and
:meth:`~headless.train.attention_maps.store.AttentionMapStore.put` under the store's key (image
path, mtime, size, backbone fingerprint, size). Images of one grid shape share a forward pass
(``bucket``), as in the command, and the forward is the command's: ``extract(...).attn``
averaged over heads. Images already cached are skipped unless ``overwrite``; the merge has
nothing to write (the cache is the result), so it returns the cache folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headless.batch.tasks.base import BatchTask, Prepared
from headless.batch.tasks.sam import weights_identity

DEFAULTS: dict[str, Any] = {"backbone": "dinov2_vits14", "weights": "official", "size": 224,
                            "cache_dir": None, "overwrite": False}
_CACHED = "cached"


class AttentionMapsTask(BatchTask):
    name = "attention-maps"
    defaults = DEFAULTS
    batches = True

    def __init__(self, options: dict[str, Any], out: str) -> None:
        super().__init__(options, out)
        from headless.features.backbones import get_spec

        o = self.options
        if int(o["size"]) < 1:
            raise ValueError(f"size must be at least 1, got {o['size']}")
        try:
            self.spec = get_spec(o["backbone"])
        except KeyError as exc:
            raise ValueError(str(exc).strip("'\"")) from None
        self.backbone: Any = None
        self.store: Any = None  # the AttentionMapStore, from open() (picklable: paths, strings)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["backbone"] = None  # loader processes never run the model
        return state

    def key_settings(self) -> dict[str, Any]:
        o = self.options
        return {"backbone": o["backbone"], "weights": weights_identity(o["weights"]),
                "size": o["size"], "cache_dir": self._cache_dir(), "overwrite": o["overwrite"]}

    def _cache_dir(self) -> str:
        return str(self.options["cache_dir"] or self.out)

    # -- loader processes ----------------------------------------------------------------------
    def prepare(self, path: str) -> Prepared:
        from headless.train.attention_maps.compute import _image_hw, _load_resized, grid_shape

        name = Path(path).name
        if self.store is not None and not self.options["overwrite"] and self.store.has(path):
            return Prepared(path, name, extra={_CACHED: True})
        hw = _image_hw(Path(path))
        shape = grid_shape(hw[0], hw[1], int(self.options["size"]), self.spec.patch_size)
        tensor = _load_resized(Path(path), shape, self.spec.mean, self.spec.std)
        return Prepared(path, name, tensor=tensor, extra={"hw": hw, "shape": shape})

    def bucket(self, item: Prepared) -> Any:
        return _CACHED if item.extra.get(_CACHED) else tuple(item.extra["shape"])

    # -- the worker ----------------------------------------------------------------------------
    def open(self, device: str, autocast: bool, images: list[Path]) -> None:
        super().open(device, autocast, images)
        from headless.features.backbones import load_backbone
        from headless.train.attention_maps.store import AttentionMapStore, backbone_key

        o = self.options
        self.backbone = load_backbone(o["backbone"], weights=o["weights"], device=device)
        self.store = AttentionMapStore(self._cache_dir(), backbone_key(self.backbone),
                                       int(o["size"]))

    def run_info(self) -> dict[str, Any]:
        return {"backbone_key": self.store.backbone_key, "cache": str(self.store.folder)}

    def process(self, items: list[Prepared]) -> list[dict[str, Any]]:
        import torch

        from headless.features.forward import extract

        out: dict[str, dict[str, Any]] = {}
        todo = [it for it in items if not it.extra.get(_CACHED)]
        for it in items:
            if it.extra.get(_CACHED):
                out[it.path] = {"result": {"cached": True}}
        if todo:
            batch = torch.stack([it.tensor for it in todo]).to(self.device)
            with torch.inference_mode():
                attn = extract(self.backbone, batch, autocast=self.autocast).attn
            maps = torch.as_tensor(attn).float().mean(dim=1).cpu().numpy()
            for it, m in zip(todo, maps):
                self.store.put(it.path, m, tuple(it.extra["hw"]))
                out[it.path] = {"result": {"cached": False, "grid": list(m.shape),
                                           "size": list(it.extra["hw"])}}
        return [out[it.path] for it in items]

    def close(self) -> None:
        self.backbone = None

    # -- merge ---------------------------------------------------------------------------------
    def merge(self, records: list[dict[str, Any]], images: list[Path]) -> list[Path]:
        """The maps are in the cache already; the result is the cache folder."""
        from headless.train.attention_maps.store import CACHE_KIND

        return [Path(self._cache_dir()) / CACHE_KIND]
