"""``dinoseg boxes`` as a batch task: batched forward passes, then each image's boxes and QC.

Per image it does what :func:`headless.boxes.compute.compute_boxes` does (same features, same
:func:`~headless.boxes.compute.boxes_from_features`, float32 as the reference methods), but the
forward pass runs on several images of one padded input shape at once; each image's features
are then exactly those of its own forward pass (zero padding to the same patch multiple). The
merge writes the COCO / VOC / CSV file and its ``.meta.json`` as the interactive command does,
and a QC table (``<out>.qc.csv``: worst first).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from headless.batch.tasks.base import BatchTask, Prepared

DEFAULTS: dict[str, Any] = {
    "method": "lost", "backbone": "dino_vits16", "weights": "official", "size": None,
    "which": "auto", "params": {}, "handling": "auto", "format": None, "project": False,
    "qc": True, "precision": "float32",
}


class BoxesTask(BatchTask):
    name = "boxes"
    defaults = DEFAULTS
    batches = True

    def __init__(self, options: dict[str, Any], out: str) -> None:
        super().__init__(options, out)
        from headless.features.backbones import get_spec

        try:
            self.spec = get_spec(self.options["backbone"])
        except KeyError as exc:
            raise ValueError(str(exc).strip("'\"")) from None
        self.backbone: Any = None
        self.info: dict[str, Any] = {}

    def check(self, images: list[Path]) -> dict[str, Any]:
        from headless.boxes.compute import METHODS, check_choices
        from headless.boxes.localize import METHOD_FUNCTIONS
        from headless.boxes.localize.params import check_params

        o = self.options
        if o["method"] not in METHODS:
            raise ValueError(f"unknown box method {o['method']!r}; choose one of "
                             f"{', '.join(METHODS)}")
        check_choices(o["which"], o["handling"])
        if o["precision"] not in ("float32", "bf16"):
            raise ValueError(f"precision must be float32 or bf16, got {o['precision']!r}")
        if o["method"] in METHOD_FUNCTIONS:
            check_params(o["method"], METHOD_FUNCTIONS[o["method"]], o["params"] or {})
        names = [p.name for p in images]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[0]
            raise ValueError(f"two images are named '{dup}'; boxes are keyed by file name")
        return {}

    def key_settings(self) -> dict[str, Any]:
        o = self.options
        keys = ("method", "backbone", "weights", "size", "which", "params", "handling", "qc")
        out = {k: o[k] for k in keys}
        if o["precision"] != "float32":  # keys of float32 runs stay as they were
            out["precision"] = o["precision"]
        return out

    def memory_estimate(self, images: list[Path], batch_size: int) -> int | None:
        tokens = max_tokens(images, self.spec.patch_size, self.options["size"])
        # live float32 activations of one block (residual, qkv, attention output, 4x MLP) and
        # the captured last-block q/k/v: about 24 x tokens x width per image (the attention
        # kernel never holds the tokens x tokens matrix; measured 22 with DINOv2-S at 4096
        # tokens, batch 2)
        per_image = 4 * tokens * self.spec.embed_dim * 24
        return batch_size * per_image + 2**30  # + the model and the interpreter

    # -- loader processes ----------------------------------------------------------------------
    def prepare(self, path: str) -> Prepared:
        from headless.boxes.compute import image_size
        from headless.features.forward import preprocess
        from headless.images import read_image

        image = read_image(path)
        wh = image_size(image)
        tensor, notes = preprocess(image, self.spec, self.options["size"])
        return Prepared(path, Path(path).name, tensor=tensor,
                        extra={"size": wh, "notes": notes})

    def bucket(self, item: Prepared) -> Any:
        p = self.spec.patch_size
        h, w = item.tensor.shape[-2:]
        return (math.ceil(h / p) * p, math.ceil(w / p) * p)

    # -- the worker ----------------------------------------------------------------------------
    def open(self, device: str, autocast: bool, images: list[Path]) -> None:
        super().open(device, autocast, images)
        from headless.boxes.compute import run_settings
        from headless.features.backbones import load_backbone

        o = self.options
        self.backbone = load_backbone(o["backbone"], weights=o["weights"], device=device)
        self.info = run_settings(self.backbone, o["method"], o["which"], o["handling"],
                                 o["params"])
        self.info["backbone_label"] = (f"{self.backbone.name} "
                                       f"({self.backbone.weights_label})")

    def run_info(self) -> dict[str, Any]:
        return dict(self.info)

    def process(self, items: list[Prepared]) -> list[dict[str, Any]]:
        import torch
        import torch.nn.functional as F

        from headless.boxes.compute import boxes_from_features, qc_for_features
        from headless.features.forward import extract, split_batch

        o = self.options
        hw = self.bucket(items[0])
        batch = torch.stack([
            F.pad(it.tensor, (0, hw[1] - it.tensor.shape[-1], 0, hw[0] - it.tensor.shape[-2]))
            for it in items])
        # float32 by default: the reference methods' seeds; bf16 when asked (AMX CPUs, GPUs)
        amp = "bf16" if o["precision"] == "bf16" else False
        feats = extract(self.backbone, batch, autocast=amp)
        out = []
        for i, it in enumerate(items):
            f = split_batch(feats, i)
            f.input_hw = (int(it.tensor.shape[-2]), int(it.tensor.shape[-1]))
            w, h = it.extra["size"]
            f.orig_hw, f.notes = (h, w), list(it.extra["notes"])
            try:
                boxes = boxes_from_features(f, o["method"], which=o["which"],
                                            params=o["params"], handling=o["handling"])
                qc = (qc_for_features(f, boxes, o["method"], which=o["which"],
                                      handling=o["handling"]) if o["qc"] else None)
            except ValueError as exc:
                out.append({"error": str(exc)})
                continue
            if o["project"]:
                self._save_project(it, boxes, qc)
            out.append({"result": {"boxes": [b.to_dict() for b in boxes], "size": [w, h],
                                   "qc": qc}})
        return out

    def _save_project(self, item: Prepared, boxes: list[Any], qc: dict[str, Any] | None) -> None:
        from headless.qc.store import save_automatic_boxes

        o = self.options
        details = {"backbone": o["backbone"], "which": o["which"], "size": o["size"],
                   "params": o["params"], "settings": self.info}
        save_automatic_boxes(item.path, boxes, tuple(item.extra["size"]), o["method"],
                             details, qc)

    # -- merge ---------------------------------------------------------------------------------
    def merge(self, records: list[dict[str, Any]], images: list[Path]) -> list[Path]:
        from headless.boxes import BoxSet, write_boxes
        from headless.boxes.types import Box
        from headless.cli.boxes import write_settings

        boxset = BoxSet()
        qc_rows = []
        for rec in records:
            res = rec.get("result")
            if not res:
                continue
            boxset.add(rec["name"], [Box.from_dict(b) for b in res["boxes"]],
                       tuple(res["size"]))
            if res.get("qc"):
                qc_rows.append((rec["name"], res["qc"]))
        written = write_boxes(self.out, boxset, self.options["format"])
        settings = {k: v for k, v in self.info.items() if k != "backbone_label"}
        meta = write_settings(self.out, {**settings, "size": self.options["size"],
                                         "n_images": len(boxset.images)})
        outputs = [*written, meta]
        if qc_rows:
            outputs.append(write_qc_table(self.out, qc_rows))
        return outputs


def write_qc_table(out: Path, rows: list[tuple[str, dict[str, Any]]]) -> Path:
    """``<out>.qc.csv``: image, uncertainty, reasons; worst first (ties by name)."""
    import csv
    import io

    from headless.store import atomic_write_text

    rows = sorted(rows, key=lambda r: (-float(r[1].get("uncertainty") or 0.0), r[0]))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "uncertainty", "reasons"])
    for name, qc in rows:
        w.writerow([name, f"{float(qc.get('uncertainty') or 0.0):.4f}",
                    "; ".join(qc.get("reasons") or [])])
    path = Path(out).with_name(Path(out).name.rstrip("/") + ".qc.csv")
    return atomic_write_text(path, buf.getvalue())


def max_tokens(images: list[Path], patch: int, size: int | None, sample: int = 256) -> int:
    """The most patch tokens one image of the run gives the ViT, from the image headers of up to
    ``sample`` images spread over the list (no decoding): at the original size the run's own
    images say what it needs, not the worst case the model allows."""
    from PIL import Image

    from headless.features.forward import DEFAULT_MAX_TOKENS, plan_size

    if size is not None:
        (h, w), _ = plan_size((size, size), patch, size)
        return math.ceil(h / patch) * math.ceil(w / patch)
    step = max(1, len(images) // sample)
    most = 0
    for path in images[::step][:sample]:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (OSError, ValueError):
            continue  # unreadable: it fails alone when its turn comes
        (ph, pw), _ = plan_size((h, w), patch, None)
        most = max(most, math.ceil(ph / patch) * math.ceil(pw / patch))
    return most or DEFAULT_MAX_TOKENS
