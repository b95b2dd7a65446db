"""``dinoseg sam`` as a batch task: each image through :func:`headless.sam.outputs.sam_image`.

Per image the very function the interactive command calls (automatic masks or one mask per box
prompt, ``--choose attention``, the QC record, ``NAME_sam_labels.tif`` / ``NAME_sam_masks.tif``
/ ``NAME_sam.json`` written straight into the output folder, named by
:func:`headless.images.output_stems` over the run's whole image list). Images go one at a time:
SAM's encoder runs once per image and its embedding is cached per image. The merge builds
``sam_boxes`` (and ``pseudo_gt``) from the records with the command's own
:func:`~headless.sam.outputs.add_to_boxsets` / :func:`~headless.sam.outputs.write_sam_boxes`.

QC records go into the images' projects as in the command, except with ``no_cache`` (the
command's ``--no-cache``: leave the image folder's project alone).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from headless.batch.tasks.base import BatchTask, Prepared

DEFAULTS: dict[str, Any] = {
    "model": "vit_b", "weights": "official", "format": "coco", "no_cache": False,
    "boxes": None, "params": {}, "choose": "none", "backbone": "dino_vits16",
    "backbone_weights": "official", "keep": 0.6, "size": None,
}


def file_digest(path: str | Path | None) -> str | None:
    """Content digest of a small settings file (box prompts), None without one."""
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def weights_identity(weights: Any) -> Any:
    """A weights setting plus, for a file, its size and modification time (a new checkpoint
    at the same path makes every image pending again)."""
    p = Path(str(weights)).expanduser()
    if str(weights) in ("official", "random") or not p.is_file():
        return weights
    st = p.stat()
    return [str(weights), st.st_size, st.st_mtime_ns]


class SamTask(BatchTask):
    name = "sam"
    defaults = DEFAULTS
    batches = False  # one encoder pass per image, cached per image

    def __init__(self, options: dict[str, Any], out: str) -> None:
        super().__init__(options, out)
        from headless.sam import AutoMaskParams, list_sam_models
        from headless.sam.outputs import FORMAT_SUFFIX

        o = self.options
        if o["model"] not in list_sam_models(include_test=True):
            raise ValueError(f"unknown SAM model {o['model']!r}; choose one of "
                             f"{', '.join(list_sam_models(include_test=True))}")
        if o["format"] not in FORMAT_SUFFIX:
            raise ValueError(f"format must be one of {', '.join(FORMAT_SUFFIX)}")
        if o["choose"] not in ("none", "attention"):
            raise ValueError(f"choose must be 'none' or 'attention', got {o['choose']!r}")
        if not 0.0 < float(o["keep"]) <= 1.0:
            raise ValueError(f"keep must lie in (0, 1], got {o['keep']}")
        try:
            self.params = AutoMaskParams(**(o["params"] or {}))
        except TypeError as exc:
            raise ValueError(f"SAM generator settings: {exc}") from None
        self.params.validate()
        self.sam: Any = None
        self.backbone: Any = None
        self.prompts: dict[str, Any] | None = None
        self.stems: dict[str, str] = {}

    # -- in the caller -------------------------------------------------------------------------
    def check(self, images: list[Path]) -> dict[str, Any]:
        names = [p.name for p in images]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[0]
            raise ValueError(f"two inputs share the file name {dup}; outputs are named by it")
        for key in ("weights", "backbone_weights"):
            w = str(self.options[key])
            if w not in ("official", "random") and not Path(w).expanduser().is_file():
                raise ValueError(f"{w}: no such weights file")
        warnings: list[str] = []
        if self.options["boxes"] is not None:
            from headless.sam.outputs import prompt_boxes

            prompts, warnings = prompt_boxes(self.options["boxes"], names)
            absent = [n for n, b in prompts.items() if b is None]
            if absent:
                warnings.append(f"{len(absent)} image(s) have no boxes in "
                                f"{self.options['boxes']} (e.g. {absent[0]}): no masks")
        return {"warnings": warnings}

    def key_settings(self) -> dict[str, Any]:
        o = self.options
        keys = {"model": o["model"], "weights": weights_identity(o["weights"]),
                "boxes": o["boxes"], "boxes_digest": file_digest(o["boxes"]),
                "params": None if o["boxes"] is not None else asdict(self.params),
                "choose": o["choose"]}
        if o["choose"] == "attention":
            keys.update(backbone=o["backbone"],
                        backbone_weights=weights_identity(o["backbone_weights"]),
                        keep=o["keep"], size=o["size"])
        return keys

    # -- the worker ----------------------------------------------------------------------------
    def open(self, device: str, autocast: bool, images: list[Path]) -> None:
        super().open(device, autocast, images)
        from headless.images import output_stems
        from headless.sam import load_sam

        o = self.options
        self.stems = dict(zip((str(p) for p in images), output_stems(images)))
        if o["boxes"] is not None:
            from headless.sam.outputs import prompt_boxes

            self.prompts, _ = prompt_boxes(o["boxes"], [p.name for p in images])
        self.sam = load_sam(o["model"], o["weights"], device=device)
        if o["choose"] == "attention":
            from headless.features.backbones import load_backbone

            self.backbone = load_backbone(o["backbone"], o["backbone_weights"], device=device)
        self.out.mkdir(parents=True, exist_ok=True)

    def run_info(self) -> dict[str, Any]:
        return {"model": self.sam.name, "weights": self.sam.weights_label}

    def process(self, items: list[Prepared]) -> list[dict[str, Any]]:
        from headless.images import ImageError
        from headless.progress import run
        from headless.sam.outputs import sam_image
        from headless.store import ProjectStore

        o = self.options
        out = []
        for it in items:
            store = None if o["no_cache"] else ProjectStore.for_image(it.path)
            boxes = None
            if self.prompts is not None:
                boxes = self.prompts.get(it.name) or []
            try:
                result = run(sam_image(
                    self.sam, it.image, it.path, self.out, self.stems[it.path], boxes=boxes,
                    params=self.params, store=store, backbone=self.backbone, keep=o["keep"],
                    size=o["size"], save_qc=store is not None))
            except (ImageError, ValueError) as exc:
                out.append({"error": str(exc)})
                continue
            out.append({"result": result})
        return out

    # -- merge ---------------------------------------------------------------------------------
    def merge(self, records: list[dict[str, Any]], images: list[Path]) -> list[Path]:
        from headless.boxes import BoxSet
        from headless.sam.outputs import add_to_boxsets, write_sam_boxes

        all_boxes = BoxSet()
        chosen = BoxSet() if self.options["choose"] == "attention" else None
        for rec in records:
            if rec.get("result"):
                add_to_boxsets(rec["name"], rec["result"], all_boxes, chosen)
        return write_sam_boxes(self.out, all_boxes, chosen, self.options["format"])
