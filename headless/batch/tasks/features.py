"""``dinoseg features`` as a batch task: per image the command's own views and files.

Each image goes through :func:`headless.features.views.feature_views` with the command's
settings (:func:`headless.cli.features.view_kwargs`) and
:func:`headless.cli.features.write_feature_outputs`, which writes ``STEM.npz`` and the PNG views
straight into the output folder (stems from :func:`headless.images.output_stems` over the run's
whole image list). The merge writes ``summary.json`` as the command does, from the records in the
run's order. Images go one at a time (the views are per image: PCA, foreground, clusters).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from headless.batch.tasks.base import BatchTask, Prepared
from headless.batch.tasks.sam import weights_identity

DEFAULTS: dict[str, Any] = {
    "backbone": "dinov2_vits14", "weights": "official", "pos_resize": None, "size": None,
    "keep": 0.6, "pca_foreground": False, "mode": "patch",
    "dense": {"shifts": 4, "dist": 1, "flips": False, "stride": None},
    "foreground": None, "crf": False, "clusters": 0, "colour_weight": 0.0,
    "position_weight": 0.0, "foreground_only": False,
}


class FeaturesTask(BatchTask):
    name = "features"
    defaults = DEFAULTS
    batches = False

    def __init__(self, options: dict[str, Any], out: str) -> None:
        super().__init__(options, out)
        from headless.cli.features import check_options
        from headless.features.backbones import get_spec
        from headless.features.views import MODES

        o = self.options
        check_options(SimpleNamespace(**o))
        if o["mode"] not in MODES:
            raise ValueError(f"unknown feature mode {o['mode']!r}; choose one of "
                             f"{', '.join(MODES)}")
        try:
            get_spec(o["backbone"])
        except KeyError as exc:
            raise ValueError(str(exc).strip("'\"")) from None
        self.backbone: Any = None
        self.stems: dict[str, str] = {}
        self.keys: dict[str, str] = {}

    def key_settings(self) -> dict[str, Any]:
        return {**self.options, "weights": weights_identity(self.options["weights"])}

    # -- loader processes ----------------------------------------------------------------------
    def prepare(self, path: str) -> Prepared:
        from headless.cli.features import first_slice
        from headless.images import read_image

        image, depth = first_slice(read_image(path))
        return Prepared(path, Path(path).name, image=image, extra={"depth": depth})

    # -- the worker ----------------------------------------------------------------------------
    def open(self, device: str, autocast: bool, images: list[Path]) -> None:
        super().open(device, autocast, images)
        from headless.cli.features import summary_keys
        from headless.features.backbones import load_backbone
        from headless.images import output_stems

        o = self.options
        self.stems = dict(zip((str(p) for p in images), output_stems(images)))
        self.keys = {str(p): k for p, k in summary_keys(images).items()}
        self.backbone = load_backbone(o["backbone"], o["weights"], device=device,
                                      pos_resize=o["pos_resize"])
        self.out.mkdir(parents=True, exist_ok=True)

    def run_info(self) -> dict[str, Any]:
        b = self.backbone
        return {"backbone": b.name, "weights": b.weights_label, "pos_resize": b.pos_resize}

    def process(self, items: list[Prepared]) -> list[dict[str, Any]]:
        from headless.cli.features import view_kwargs, write_feature_outputs
        from headless.features.views import feature_views
        from headless.progress import run

        out = []
        for it in items:
            try:
                views = run(feature_views(self.backbone, it.image, **view_kwargs(self.options)))
            except ValueError as exc:  # ImageError included: this image fails, not the run
                out.append({"error": str(exc)})
                continue
            entry = write_feature_outputs(self.out, self.stems[it.path], views, self.backbone)
            out.append({"result": {"key": self.keys[it.path], "entry": entry,
                                   "stack": it.extra.get("depth")}})
        return out

    # -- merge ---------------------------------------------------------------------------------
    def merge(self, records: list[dict[str, Any]], images: list[Path]) -> list[Path]:
        from headless.cli.features import summary_keys, write_summary

        keys = summary_keys(images)  # for failed images (their records hold no key)
        summary = {"backbone": self.info.get("backbone", self.options["backbone"]),
                   "weights": self.info.get("weights", ""), "mode": self.options["mode"],
                   "pos_resize": self.info.get("pos_resize"), "images": {}, "failed": {}}
        for path, rec in zip(images, records):
            res = rec.get("result")
            if res:
                summary["images"][res["key"]] = res["entry"]
            elif rec.get("error"):
                summary["failed"][keys[path]] = str(rec["error"])
        self.out.mkdir(parents=True, exist_ok=True)
        return [write_summary(self.out, summary)]
