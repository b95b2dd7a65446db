"""The SAM dock's "Run as job": automatic masks on every image of the current image's folder.

The twin of ``dinoseg sam FOLDER --out DIR --runner R``: the options are the command's own
(model, weights, the automatic-mask settings), read from the dock's fields when Start is
pressed; the outputs go to the folder chosen in the group, by default ``<folder>/dinoseg_sam``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

DEFAULT_OUT = "dinoseg_sam"


def sam_job_request(panel: Any, out: str = "") -> tuple[str, list[Path], Path, dict, str]:
    """``(task, images, out, options, device)`` from the SAM dock's fields."""
    from napari_dinoseg._widgets.common.batch_runs import image_folder

    layer = panel._image_layer()
    params = panel.auto_params()
    params.validate()
    folder = image_folder(layer)
    name, weights, device = panel.model_key()
    options = {"model": name, "weights": weights, "format": "coco",
               "no_cache": not panel.cache_check.isChecked(), "params": asdict(params)}
    return "sam", [folder], Path(out) if out else folder / DEFAULT_OUT, options, device


def attach_sam_job(panel: Any) -> Any:
    """Build the group for ``panel`` (kept as ``panel.batch_job``); returns its section."""
    from napari_dinoseg._widgets.common.batch_job import BatchJobBox
    from napari_dinoseg._widgets.common.batch_runs import outputs_line
    from napari_dinoseg._widgets.common.notices import notify

    def done(manifest: dict) -> None:
        notify("info", f"SAM job done: {outputs_line(manifest)}")

    box = BatchJobBox("sam", lambda: sam_job_request(panel, box.output()), done,
                      out_hint=f"<image folder>/{DEFAULT_OUT}")
    panel.batch_job = box
    return box.section()
