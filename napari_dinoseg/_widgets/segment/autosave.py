"""Saving the dock's user work in the image's project folder, and reading it back.

Scribbles, segmentation, class names and probe go to :class:`headless.store.ProjectStore`
(temporary file + rename, so a crash never leaves half a file). Saves run on one background
writer so they land in the order they were made, and the GUI never waits on the disk; a failed
save (full disk, read-only folder) is kept and told on the next save. No Qt or napari here.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SCRIBBLES_FILE = "scribbles.tif"
SEGMENTATION_FILE = "segmentation.tif"
CLASSES_FILE = "classes.json"
PROBE_FILE = "probe.npz"


def project_for(layer: Any) -> tuple[Any, str] | None:
    """(ProjectStore, image file name) of an image layer, or None if it has no file."""
    from headless.store import ProjectStore

    path = getattr(getattr(layer, "source", None), "path", None) if layer is not None else None
    if not path or not Path(path).is_file():
        return None
    return ProjectStore.for_image(path), Path(path).name


class Autosaver:
    """Writes user work in order on one background thread (inline with ``DINOSEG_SYNC=1``)."""

    def __init__(self) -> None:
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dinoseg-autosave")
        self._saves: list[Future] = []
        self.error = ""

    def take_error(self) -> str:
        """The message of the last failed save ('' if none), forgotten once taken."""
        error, self.error = self.error, ""
        return error

    def save(self, store: Any, name: str, *, scribbles: np.ndarray | None = None,
             classes: dict[str, str] | None = None, segmentation: np.ndarray | None = None,
             probe: Any = None) -> bool:
        """Queue what is given for image ``name`` of ``store``; False when nothing was given.

        Arrays are written as given: pass copies of layer data the user may still change.
        """
        jobs: list[tuple[str, Any]] = [(kind, obj) for kind, obj in (
            ("scribbles", scribbles), ("classes", classes),
            ("segmentation", segmentation), ("probe", probe)) if obj is not None]
        if not jobs:
            return False

        def write() -> None:
            for kind, obj in jobs:
                if kind == "scribbles":
                    store.save_labels(name, SCRIBBLES_FILE, obj)
                elif kind == "segmentation":
                    store.save_labels(name, SEGMENTATION_FILE, obj)
                elif kind == "classes":
                    store.save_json(name, CLASSES_FILE, obj)
                elif kind == "probe":
                    obj.save(store.path(name, PROBE_FILE))

        if os.environ.get("DINOSEG_SYNC", "0") == "1":
            self._write_safely(write)
        else:
            self._saves = [f for f in self._saves if not f.done()]
            self._saves.append(self._saver.submit(self._write_safely, write))
        return True

    def _write_safely(self, write: Any) -> None:
        try:
            write()
        except OSError as exc:  # a full disk or a read-only folder: said on the next save
            self.error = f"autosave failed: {exc}"

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for pending saves (tests, and before closing)."""
        for f in list(self._saves):
            f.result(timeout=timeout)
        self._saves = []


class SavedWork:
    """What was saved for one image, read on demand (a damaged file reads as absent)."""

    def __init__(self, store: Any, name: str) -> None:
        self.store = store
        self.name = name

    @property
    def folder(self) -> Path:
        """The image's saved work: the writable project's, else a read-only project's."""
        primary = self.store.image_dir(self.name)
        if primary.is_dir():
            return primary
        for root in getattr(self.store, "fallbacks", ()):
            older = type(self.store)(root).image_dir(self.name)
            if older.is_dir():
                return older
        return primary

    def classes(self) -> Any:
        """The saved ``classes.json`` ({"value": "name"}), or None."""
        return self.store.load_json(self.name, CLASSES_FILE)

    def scribbles(self, shape: tuple[int, ...]) -> np.ndarray | None:
        return self._labels(SCRIBBLES_FILE, shape)

    def segmentation(self, shape: tuple[int, ...]) -> np.ndarray | None:
        return self._labels(SEGMENTATION_FILE, shape)

    def probe(self) -> tuple[Any, str]:
        """``(probe, '')``, ``(None, why it could not be read)`` or ``(None, '')`` if none."""
        from headless.segment.probe import ProbeError, load_probe

        path = self.store.find(self.name, PROBE_FILE)
        if not path.exists():
            return None, ""
        try:
            return load_probe(path), ""
        except ProbeError as exc:
            return None, str(exc)

    def _labels(self, filename: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """The saved labels if they exist, read and have ``shape`` (the image's), else None."""
        try:
            labels = self.store.load_labels(self.name, filename)
        except Exception:  # noqa: BLE001 - a damaged file is reported by not restoring it
            return None
        if labels is None or tuple(labels.shape) != tuple(shape):
            return None
        return labels
