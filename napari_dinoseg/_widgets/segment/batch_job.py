"""The scribble dock's "Run as job": the probe applied to every image of the image's folder.

The twin of ``dinoseg segment FOLDER --probe FILE --out DIR --runner R``. The dock's probe (in
memory) is saved as ``<out>/probe.npz`` in the worker thread just before the run starts, so the
labels folder says which probe made it; the outputs go by default to ``<folder>/dinoseg_segment``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_OUT = "dinoseg_segment"
PROBE_NAME = "probe.npz"


def segment_job_request(panel: Any, out: str = "") -> tuple[str, list[Path], Path, dict, str]:
    """``(task, images, out, options, device)``; ``options["probe"]`` is the probe object
    until :func:`save_probe` replaces it with its file."""
    from napari_dinoseg._widgets.common.batch_runs import image_folder

    img = panel.image_layer()
    if img is None:
        raise ValueError("Choose an image of the folder first.")
    if panel.probe is None:
        raise ValueError("No probe yet: paint scribbles of two classes (or load a probe) first.")
    folder = image_folder(img)
    options: dict[str, Any] = {
        "probe": panel.probe, "weights": panel.weights_edit.text().strip() or "official",
        "probs": panel.probs_check.isChecked(), "crf": panel.crf_group.values()}
    return "segment", [folder], Path(out) if out else folder / DEFAULT_OUT, options, "auto"


def save_probe(options: dict[str, Any], images: list[Path], out: Path) -> dict[str, Any]:
    """Write the probe into the output folder (a worker thread) and pass its path on."""
    probe = options.get("probe")
    if probe is not None and not isinstance(probe, (str, Path)):
        out.mkdir(parents=True, exist_ok=True)
        options = {**options, "probe": str(probe.save(out / PROBE_NAME))}
    return options


def attach_segment_job(panel: Any) -> Any:
    """Build the group for ``panel`` (kept as ``panel.batch_job``); returns its section."""
    from napari_dinoseg._widgets.common.batch_job import BatchJobBox
    from napari_dinoseg._widgets.common.batch_runs import outputs_line
    from napari_dinoseg._widgets.common.notices import notify

    def done(manifest: dict) -> None:
        notify("info", f"segment job done: {outputs_line(manifest)}")

    box = BatchJobBox("segment", lambda: segment_job_request(panel, box.output()), done,
                      out_hint=f"<image folder>/{DEFAULT_OUT}", prepare=save_probe)
    panel.batch_job = box
    return box.section()
