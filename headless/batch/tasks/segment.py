"""``dinoseg segment --probe FILE`` as a batch task: a saved probe applied to many images.

Per image the functions apply-to-all uses (:mod:`headless.segment.workflow.outputs`): every
slice through :meth:`~headless.segment.workflow.segmenter.Segmenter.predict` (features, probe,
optional dense CRF), ``NAME_labels.tif`` (and ``NAME_proba.tif`` with ``probs``) written straight
into the output folder under the stem :func:`headless.images.output_stems` gives it in the whole
run, and the image's QC record (in the record and in the image's project ``qc.json``). Nothing
is left to merge: the output folder is the result. Images go one at a time (features and the
CRF are per image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headless.batch.tasks.base import BatchTask, Prepared
from headless.batch.tasks.sam import file_digest, weights_identity

DEFAULTS: dict[str, Any] = {"probe": "", "weights": "official", "crf": None, "probs": False,
                            "qc": True}


class SegmentTask(BatchTask):
    name = "segment"
    defaults = DEFAULTS
    batches = False

    def __init__(self, options: dict[str, Any], out: str) -> None:
        super().__init__(options, out)
        from headless.segment.crf import CRFParams

        o = self.options
        if not o["probe"]:
            raise ValueError("a segment batch run applies a saved probe: give its file")
        try:
            self.crf = None if o["crf"] is None else CRFParams(**o["crf"])
        except TypeError as exc:
            raise ValueError(f"dense CRF settings: {exc}") from None
        self.probe: Any = None
        self.segmenter: Any = None
        self.stems: dict[str, str] = {}

    def _settings(self, probe: Any) -> Any:
        from headless.segment.workflow.feature_source import FeatureSpec
        from headless.segment.workflow.segmenter import SegmentSettings

        spec = FeatureSpec.from_probe(probe, weights=self.options["weights"])
        return SegmentSettings(features=spec, crf=self.crf)

    # -- in the caller -------------------------------------------------------------------------
    def check(self, images: list[Path]) -> dict[str, Any]:
        from headless.segment.probe.files import load_probe

        probe = load_probe(self.options["probe"])  # a bad file fails here, in one line
        settings = self._settings(probe)
        spec = settings.features
        probe.check_compatible(spec.mode, spec.backbone_name, None, spec.options())
        w = str(self.options["weights"])
        if spec.uses_vit and w not in ("official", "random") and not Path(w).is_file():
            raise ValueError(f"{w}: no such weights file")
        return {}

    def key_settings(self) -> dict[str, Any]:
        o = self.options
        return {"probe": o["probe"], "probe_digest": file_digest(o["probe"]),
                "weights": weights_identity(o["weights"]), "crf": o["crf"], "probs": o["probs"]}

    # -- the worker ----------------------------------------------------------------------------
    def open(self, device: str, autocast: bool, images: list[Path]) -> None:
        super().open(device, autocast, images)
        from headless.images import output_stems
        from headless.segment.probe.files import load_probe
        from headless.segment.workflow.feature_source import FeatureSource
        from headless.segment.workflow.segmenter import Segmenter

        self.stems = dict(zip((str(p) for p in images), output_stems(images)))
        self.probe = load_probe(self.options["probe"])
        settings = self._settings(self.probe)
        spec = settings.features
        backbone = None
        if spec.uses_vit:  # on the job's device (the command's FeatureSource loads on the CPU)
            from headless.features.backbones import load_backbone

            backbone = load_backbone(spec.backbone_name, weights=spec.weights, device=device)
        self.segmenter = Segmenter(settings, FeatureSource(spec, backbone=backbone))
        self.out.mkdir(parents=True, exist_ok=True)

    def run_info(self) -> dict[str, Any]:
        m = self.probe.meta
        return {"classifier": self.probe.kind, "class_values": list(m.class_values),
                "weights": self.segmenter.source.weights_label}

    def process(self, items: list[Prepared]) -> list[dict[str, Any]]:
        from headless.progress import run
        from headless.segment.workflow.outputs import (
            save_segment_qc,
            segment_slices,
            segmentation_qc,
            write_segmentation,
        )

        out = []
        for it in items:
            try:
                segs = run(segment_slices(self.segmenter, self.probe, it.image, True, it.name))
            except (ValueError, OSError) as exc:  # as apply-to-all: this image is skipped
                out.append({"error": str(exc)})
                continue
            labels, proba = write_segmentation(self.out, self.stems[it.path], segs,
                                               self.options["probs"])
            result: dict[str, Any] = {"labels": labels.name, "slices": len(segs),
                                      "proba": None if proba is None else proba.name}
            if self.options["qc"]:
                result["qc"] = segmentation_qc(segs)
                save_segment_qc(it.path, result["qc"])
            out.append({"result": result})
        return out

    # -- merge ---------------------------------------------------------------------------------
    def merge(self, records: list[dict[str, Any]], images: list[Path]) -> list[Path]:
        """Every file is written per image; the output folder is the result."""
        return [self.out]
