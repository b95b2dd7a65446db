"""What the boxes dock holds, without Qt or napari: the folder, the current image, its saves.

:class:`BoxesController` is the dock's state: the open folder and its images, which one is
shown (and which is next, in the QC queue's order: :mod:`.qc_queue`), its
:class:`~headless.boxes.curation.BoxCuration` (the saved boxes and statuses), what was last
saved (so a non-edit never saves), the compute jobs (which save each image's QC record with its
boxes) and the export. The panel shows what it says and turns its refusals into notifications;
the engine is :mod:`headless.boxes.compute` and :mod:`headless.boxes.curation`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_dinoseg._widgets.boxes.qc_queue import QueueView
from napari_dinoseg._widgets.common.models import ModelCache, load_backbone_for_dock

Key = tuple[str, str, str]


class NothingToExport(ValueError):
    """Export was asked for before anything could be exported (the message says what to do)."""


@dataclass
class SingleResult:
    """What became of one image's computed boxes (see :meth:`BoxesController.take_single`)."""

    name: str
    boxes: list[Any]
    notices: list[tuple[str, str]] = field(default_factory=list)  # (level, text) to show
    saved: bool = False  # written to the project as automatic boxes
    show: bool = False  # the image is still the one shown: show the new boxes
    status: str = ""  # the dock's status line when shown


def compute_options(method: str, which: str, size: int) -> dict[str, Any]:
    """The compute settings of the form; an input size of 0 means the original size."""
    return {"method": method, "which": which, "size": size or None}


def run_details(opts: dict[str, Any], key: Key, run: Any) -> dict[str, Any]:
    """What is recorded with automatic boxes: backbone, its weights, features and size, and the
    settings the method really ran with (the per-family feature handling)."""
    details = {"backbone": key[0], "weights": run.backbone_label, "which": opts["which"],
               "size": opts["size"]}
    settings = getattr(run, "settings", None)
    if settings:
        details["settings"] = settings
    return details


def with_qc(details: dict[str, Any], qc: dict[str, Any] | None) -> dict[str, Any]:
    """``details`` plus the image's QC record (``box_uncertainty``), when the engine gave one."""
    return {**details, "qc": qc} if qc else details


def _collect_qc(gen: Generator[Any, None, Any], sink: dict[str, Any]) -> Generator[Any, None, Any]:
    """Pass a compute generator through, keeping each image's QC record in ``sink``."""
    from headless.boxes.compute import ImageBoxesProgress

    try:
        while True:
            item = next(gen)
            if isinstance(item, ImageBoxesProgress) and getattr(item, "qc", None):
                sink[item.image] = item.qc
            yield item
    except StopIteration as stop:
        return stop.value


class BoxesController:
    """The boxes dock's folder, current image and saved state."""

    def __init__(self) -> None:
        self.backbones = ModelCache(load_backbone_for_dock)
        self.folder: Path | None = None
        self.images: list[Path] = []
        self.index: int | None = None
        self.curation: Any = None  # BoxCuration of the current folder / image
        self.current: dict[str, Any] | None = None  # name, path, size (, array)
        self.last_saved: list[Any] | None = None
        self.queue = QueueView()  # the QC rows: order of the list, next / next to check

    # -- the folder and which image is shown ------------------------------------------------
    def open_folder(self, folder: str | Path) -> Any:
        """Browse ``folder``; returns its listing (``ImageError`` if it is not a folder)."""
        from headless.boxes.curation import BoxCuration
        from headless.images import list_images

        listing = list_images(folder)
        self.folder = Path(folder)
        self.images = listing.images
        self.curation = BoxCuration.for_folder(folder)
        self.index = None
        self.queue.reset(self.names)
        return listing

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.images]

    def index_of(self, image: int | str | Path) -> int:
        """The folder index of an image given by index, name or path (``ValueError`` if not)."""
        if isinstance(image, (str, Path)):
            name = Path(image).name
            if name not in self.names:
                raise ValueError(f"{image} is not an image of the open folder")
            return self.names.index(name)
        return image

    def shown_name(self) -> str | None:
        """The name of the folder image shown now (None: none, or an adopted layer)."""
        if self.images and self.index is not None:
            return self.names[self.index]
        return None

    def _index_or_none(self, name: str | None) -> int | None:
        return None if name is None else self.names.index(name)

    def next_index(self) -> int | None:
        """The image after the shown one in the list's order and filter (None at the end or
        with nothing shown)."""
        return self._index_or_none(self.queue.step(self.shown_name()))

    def previous_index(self) -> int | None:
        return self._index_or_none(self.queue.step(self.shown_name(), forward=False))

    def next_to_check_index(self) -> int | None:
        """The next image not verified yet, in the list's order (wrapping), None if none."""
        if not self.images:
            return None
        return self._index_or_none(self.queue.next_to_check(self.shown_name()))

    def queue_job(self) -> Generator[Any, None, Any]:
        """A progress generator reading the folder's QC rows (for :meth:`QueueView.set_rows`)."""
        return self.queue.job(self.folder)

    def can_go_back(self) -> bool:
        return self.previous_index() is not None

    def can_go_on(self) -> bool:
        return self.next_index() is not None

    def read(self, index: int) -> tuple[Path, np.ndarray, tuple[int, int]]:
        """Path, pixels and size of an image of the folder (``ImageError`` if unreadable)."""
        from headless.boxes.compute import image_size
        from headless.images import read_image

        path = self.images[index]
        arr = read_image(path)
        return path, arr, image_size(arr)

    def show(self, index: int, path: Path, size: tuple[int, int]) -> None:
        """Make image ``index`` of the folder the current one."""
        self.index = index
        self.current = {"name": path.name, "path": path, "size": size}

    def adopt(self, layer_name: str, path: Path | None, array: np.ndarray) -> None:
        """Make an image of the viewer current (``ImageError`` if it has no usable size).

        It is named after its file when it has one (which then gets its own project), else
        after its layer, whose boxes then live in the layer only.
        """
        from headless.boxes.compute import image_size
        from headless.boxes.curation import BoxCuration

        size = image_size(array)
        name = path.name if path is not None else layer_name
        self.current = {"name": name, "path": path, "size": size, "array": array}
        self.curation = BoxCuration.for_image(path) if path is not None else None

    @property
    def current_name(self) -> str | None:
        return None if self.current is None else self.current["name"]

    # -- statuses and saved boxes -----------------------------------------------------------
    def statuses(self) -> dict[str, str]:
        if self.curation is None:
            return {}
        return self.curation.statuses(self.names)

    def status_of(self, name: str) -> str:
        """The saved status of an image ('none' when nothing is saved)."""
        return "none" if self.curation is None else self.curation.status(name)

    def load_saved(self, name: str | None = None) -> tuple[list[Any], str, str | None]:
        """``(boxes, status, error)`` saved for image ``name`` (default: the current one); a
        damaged file is an error. A file read: the dock calls it in a worker."""
        from headless.boxes import BoxFormatError

        state, error = None, None
        if self.curation is not None:
            try:
                state = self.curation.load(self.current["name"] if name is None else name)
            except BoxFormatError as exc:
                error = f"{exc} (it will be kept aside at the next save)"
        boxes = state.boxes if state is not None else []
        return boxes, (state.status if state is not None else "none"), error

    def unchanged(self, boxes: Sequence[Any]) -> bool:
        """True when ``boxes`` are what was last saved or shown (a selection, not an edit)."""
        return self.last_saved is not None and list(boxes) == self.last_saved

    def save_edit(self, boxes: list[Any]) -> Any:
        """Save the user's boxes of the current image (status edited); its new state.

        None when the image has no file (no project): the boxes then live in the layer only.
        ``OSError`` / ``ValueError`` when they cannot be written.
        """
        if self.curation is None:
            self.last_saved = boxes
            return None
        state = self.curation.save_edit(self.current["name"], boxes, self.current["size"])
        self.last_saved = boxes
        self.queue.note(state.image, state.status)
        return state

    def mark_verified(self, boxes: list[Any]) -> Any:
        """Record that the current image's boxes were checked, saving them as they are."""
        state = self.curation.mark_verified(self.current["name"], boxes, self.current["size"])
        self.last_saved = list(state.boxes)
        self.queue.note(state.image, state.status)
        return state

    # -- compute ----------------------------------------------------------------------------
    def refusal(self, name: str, overwrite: bool) -> str | None:
        """Why recomputing ``name`` is refused (its boxes were edited / verified), or None."""
        status = self.status_of(name)
        if status in ("edited", "verified") and not overwrite:
            return (f"{name} has {status} boxes; tick 'replace edited / verified boxes' to "
                    "recompute them")
        return None

    def single_job(self, cur: dict[str, Any], opts: dict[str, Any], key: Key) -> Any:
        """A progress generator computing the boxes of image ``cur``; returns the BoxRun.

        The image's QC record, when the engine gives one, is kept in ``cur["qc"]``.
        """
        from headless.boxes.compute import compute_boxes
        from headless.images import read_image

        arr = cur.get("array")
        image = arr if arr is not None else read_image(cur["path"])
        backbone = self.backbones.get(key)
        gen = compute_boxes([(cur["name"], image)], opts["method"], backbone=backbone,
                            size=opts["size"], which=opts["which"], qc=True)
        return (yield from _collect_qc(gen, cur.setdefault("qc", {})))

    def take_single(self, cur: dict[str, Any], run: Any, overwrite: bool,
                    opts: dict[str, Any], key: Key) -> SingleResult:
        """Save one image's computed boxes, unless the user edited them meanwhile."""
        name, method = cur["name"], opts["method"]
        if name in run.failures:
            return SingleResult(name, [], [("error", f"{name}: {run.failures[name]}")])
        out = SingleResult(name, list(run.boxset.boxes.get(name, [])))
        if not out.boxes:
            out.notices.append(("info", f"{method}: no foreground found in {name} (no box)"))
        same_image = self.current is not None and self.current["name"] == name
        if self.curation is not None and same_image:
            qc = (cur.get("qc") or {}).get(name)
            _, written = self.curation.save_automatic(
                name, out.boxes, cur["size"], method, with_qc(run_details(opts, key, run), qc),
                overwrite=overwrite)
            if not written:
                out.notices.append(("warning", f"{name}: you edited the boxes while they were "
                                    "computed; your edits were kept"))
                return out
            out.saved = True
            self.queue.note(name, "automatic", qc)
        if same_image:
            out.show = True
            out.status = f"{name}: {len(out.boxes)} box(es) from {method}, {run.backbone_label}"
        return out

    def folder_job(self, opts: dict[str, Any], key: Key, overwrite: bool,
                   skipped: list[str], saved: dict[str, Any] | None = None) -> Any:
        """A progress generator computing every image of the folder, each saved at once.

        The folder's images and project are taken now (the backbone loads in the worker);
        images whose saved boxes were kept (edited / verified) are appended to ``skipped``,
        those saved go into ``saved`` (name -> QC record or None, see :meth:`note_saved`).
        """
        return self._folder_run(list(self.images), self.curation, opts, key, overwrite, skipped,
                                {} if saved is None else saved)

    def note_saved(self, saved: dict[str, Any]) -> None:
        """Show a folder run's new automatic boxes in the queue before it is read again."""
        for name, qc in saved.items():
            self.queue.note(name, "automatic", qc)

    def _folder_run(self, images: list[Path], curation: Any, opts: dict[str, Any], key: Key,
                    overwrite: bool, skipped: list[str], saved: dict[str, Any]) -> Any:
        from headless.boxes.compute import ImageBoxesProgress, compute_boxes

        backbone = self.backbones.get(key)
        gen = compute_boxes(images, opts["method"], backbone=backbone, size=opts["size"],
                            which=opts["which"], qc=True)
        details = {"backbone": key[0], "which": opts["which"], "size": opts["size"]}
        try:
            while True:
                item = next(gen)
                if isinstance(item, ImageBoxesProgress) and item.boxes is not None:
                    qc = getattr(item, "qc", None)
                    _, written = curation.save_automatic(
                        item.image, item.boxes, item.size, opts["method"],
                        with_qc(details, qc), overwrite=overwrite)
                    if written:
                        saved[item.image] = qc
                    else:
                        skipped.append(item.image)
                yield item
        except StopIteration as stop:
            return stop.value

    @staticmethod
    def folder_summary(run: Any, skipped: list[str], opts: dict[str, Any]) -> str:
        """The line shown when a folder run ends."""
        n = len(run.boxset.images)
        msg = f"{opts['method']}: {run.boxset.n_boxes} box(es) on {n} image(s)"
        if skipped:
            msg += f"; {len(skipped)} edited/verified image(s) kept their boxes"
        if run.empty:
            msg += f"; no foreground in {len(run.empty)}: {', '.join(run.empty[:5])}"
        return msg

    def shows_new_boxes(self, run: Any, skipped: list[str]) -> bool:
        """Whether the folder run changed the saved boxes of the image shown now."""
        name = self.current_name
        return name is not None and name in run.boxset.boxes and name not in skipped

    # -- export -----------------------------------------------------------------------------
    def export_boxset(self, current_boxes: list[Any]) -> Any:
        """The folder's saved boxes, else the current image's (``NothingToExport`` if none)."""
        from headless.boxes import BoxSet

        if self.curation is not None and self.images:
            boxset = self.curation.to_boxset(self.names)
        elif self.current is not None:
            boxset = BoxSet()
            boxset.add(self.current["name"], current_boxes, self.current["size"])
        else:
            raise NothingToExport("nothing to export: open a folder or an image first")
        if not boxset.images:
            raise NothingToExport("no saved boxes to export yet")
        return boxset

    def export(self, fmt: str, path: str | Path,
               current_boxes: list[Any]) -> tuple[list[Path], Any, Path]:
        """Write the boxes as COCO, VOC or CSV: ``(files written, boxset, target)``."""
        from headless.boxes import write_boxes

        boxset = self.export_boxset(current_boxes)
        target = Path(path)
        if fmt == "voc" and target.suffix.lower() == ".xml" and len(boxset.images) > 1:
            target = target.with_suffix("")
        return write_boxes(target, boxset, fmt), boxset, target
