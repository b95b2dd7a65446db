"""The boxes dock's "Run as job": boxes for every image of the open folder, as a batch run.

The twin of ``dinoseg boxes FOLDER --method M --out FILE --runner R``, with ``project`` on: each
image's boxes are saved to the folder's project as automatic boxes (never replacing boxes the
user edited or verified), and the merged COCO file goes to ``<folder>/dinoseg_boxes/boxes.json``
unless another is chosen. When the run ends the dock reloads the statuses from the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_OUT = ("dinoseg_boxes", "boxes.json")


def boxes_job_request(panel: Any, out: str = "") -> tuple[str, list[Path], Path, dict, str]:
    """``(task, images, out, options, device)`` from the boxes dock's settings."""
    c = panel.controller
    if not c.images or c.folder is None:
        raise ValueError("Open a folder of images first: the job runs on every image of it.")
    opts = panel.settings.options()
    backbone, weights, device = panel.settings.key()
    options = {"method": opts["method"], "backbone": backbone, "weights": weights,
               "size": opts["size"], "which": opts["which"], "format": "coco",
               "project": True}
    target = Path(out) if out else Path(c.folder, *DEFAULT_OUT)
    return "boxes", list(c.images), target, options, device


def refresh_after_job(panel: Any) -> None:
    """The project changed under the dock: statuses, and the shown image's saved boxes."""
    panel.refresh_list()
    if panel.controller.current is not None and panel.controller.curation is not None:
        panel._show_saved()


def attach_boxes_job(panel: Any) -> Any:
    """Build the group for ``panel`` (kept as ``panel.batch_job``); returns its section."""
    from napari_dinoseg._widgets.common.batch_job import BatchJobBox
    from napari_dinoseg._widgets.common.batch_runs import outputs_line
    from napari_dinoseg._widgets.common.notices import notify

    def done(manifest: dict) -> None:
        refresh_after_job(panel)  # edited / verified boxes were kept by the job
        notify("info", f"boxes job done: {outputs_line(manifest)}")

    box = BatchJobBox("boxes", lambda: boxes_job_request(panel, box.output()), done,
                      out_hint="<folder>/dinoseg_boxes/boxes.json", out_is_file=True)
    panel.batch_job = box
    return box.section()
