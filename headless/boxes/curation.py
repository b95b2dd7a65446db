"""Per-image box state in the project folder: automatic results, user edits, verification.

A user curating boxes image by image must never lose work. Each image's boxes live in
``<project>/images/<image name>/boxes.json``, written atomically (temporary file, then rename)
through :class:`headless.store.ProjectStore` every time they change, with a status:

* ``automatic`` - boxes as a method returned them;
* ``edited``    - the user changed them (moved, resized, added, deleted): now the truth;
* ``verified``  - the user checked them and marked the image done.

Images without a saved file have status ``none``. Automatic results never replace edited or
verified boxes unless asked to, and then the previous state is kept in ``boxes.previous.json``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from headless.boxes.formats import BoxFormatError, write_boxes
from headless.boxes.types import Box, BoxSet
from headless.store import ProjectStore

log = logging.getLogger(__name__)

NONE = "none"
AUTOMATIC = "automatic"
EDITED = "edited"
VERIFIED = "verified"
STATUSES = (NONE, AUTOMATIC, EDITED, VERIFIED)
BOXES_FILE = "boxes.json"
PREVIOUS_FILE = "boxes.previous.json"
FORMAT_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ImageBoxes:
    """One image's saved boxes and how they came to be."""

    image: str
    width: int
    height: int
    boxes: list[Box]
    status: str = AUTOMATIC
    method: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    updated: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "status": self.status,
            "method": self.method,
            "details": self.details,
            "updated": self.updated,
            "boxes": [b.to_dict() for b in self.boxes],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | Path = "") -> ImageBoxes:
        try:
            status = str(d.get("status", AUTOMATIC))
            if status not in STATUSES[1:]:
                raise ValueError(f"unknown status {status!r}")
            return cls(
                image=str(d["image"]),
                width=int(d["width"]),
                height=int(d["height"]),
                boxes=[Box.from_dict(b) for b in d.get("boxes", [])],
                status=status,
                method=d.get("method"),
                details=dict(d.get("details") or {}),
                updated=str(d.get("updated", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BoxFormatError(f"{path}: saved boxes are damaged ({type(exc).__name__}: "
                                 f"{exc})") from None


def clip_boxes(boxes: Iterable[Box], size: tuple[int, int], whole: bool = False) -> list[Box]:
    """Boxes clipped to a ``(width, height)`` image; boxes left with no area are dropped.

    ``whole`` first puts the corners on whole pixels: the user's boxes, dragged in napari, sit
    at fractions (263.72), and saved they are whole pixels so that COCO, VOC and CSV exports
    agree (VOC holds whole pixels only). A method's boxes are kept as computed.
    """
    from headless.boxes.formats.common import whole_box

    out = []
    for b in boxes:
        c = (whole_box(b) if whole else b).clip(*size)
        if c.width > 0 and c.height > 0:
            out.append(c)
    return out


class BoxCuration:
    """The saved box state of the images of one project folder."""

    def __init__(self, store: ProjectStore | str | Path) -> None:
        self.store = store if isinstance(store, ProjectStore) else ProjectStore(store)
        # a GUI thread saving edits and a worker saving automatic results may meet on one image:
        # each read-check-write below is done under this lock
        self._lock = threading.RLock()
        #: damaged box files moved aside in this session (newest last), for a front end to show
        self.quarantined: list[Path] = []

    @classmethod
    def for_folder(cls, folder: str | Path) -> BoxCuration:
        """The project of a folder of images (``<folder>/.dinoseg`` when writable)."""
        return cls(ProjectStore.for_folder(folder))

    @classmethod
    def for_image(cls, image_path: str | Path) -> BoxCuration:
        return cls(ProjectStore.for_image(image_path))

    @property
    def root(self) -> Path:
        return self.store.root

    def path(self, image: str) -> Path:
        return self.store.path(image, BOXES_FILE)

    # -- reading -------------------------------------------------------------------------
    def load(self, image: str) -> ImageBoxes | None:
        """The saved state of an image, or None. A damaged file raises BoxFormatError.

        A read-only image folder's own project is read too (see ProjectStore.find)."""
        p = self.store.find(image, BOXES_FILE)
        if not p.exists():
            return None
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BoxFormatError(f"{p}: saved boxes cannot be read ({exc})") from None
        if not isinstance(d, dict):
            raise BoxFormatError(f"{p}: saved boxes are damaged (not a JSON object)")
        return ImageBoxes.from_json(d, p)

    def status(self, image: str) -> str:
        try:
            state = self.load(image)
        except BoxFormatError:
            return NONE
        return NONE if state is None else state.status

    def statuses(self, images: Iterable[str]) -> dict[str, str]:
        return {i: self.status(i) for i in images}

    def saved_images(self) -> list[str]:
        """Names of the images with saved boxes (sorted)."""
        names: set[str] = set()
        for root in (self.store.root, *self.store.fallbacks):
            base = root / "images"
            if base.is_dir():
                names.update(d.name for d in base.iterdir() if (d / BOXES_FILE).is_file())
        return sorted(names)

    # -- writing -------------------------------------------------------------------------
    def _write(self, state: ImageBoxes) -> ImageBoxes:
        state.updated = _now()
        self.store.save_json(state.image, BOXES_FILE, state.to_json())
        return state

    def save_automatic(
        self,
        image: str,
        boxes: Sequence[Box],
        size: tuple[int, int],
        method: str,
        details: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> tuple[ImageBoxes, bool]:
        """Save a method's boxes unless the user already edited or verified the image.

        Returns ``(state now saved, whether the new boxes were written)``. With ``overwrite``
        the user's version is first copied to ``boxes.previous.json``.
        """
        size = (int(size[0]), int(size[1]))
        with self._lock:
            try:
                old = self.load(image)
            except BoxFormatError:
                kept = self._quarantine(image)
                raise BoxFormatError(
                    f"{image}: its saved boxes were damaged and are kept at {kept.name}; they may "
                    "hold your edits, so no automatic boxes were saved: check that file, then "
                    "compute again") from None
            if old is not None and old.status in (EDITED, VERIFIED):
                if not overwrite:
                    return old, False
                self.store.save_json(image, PREVIOUS_FILE, old.to_json())
            state = ImageBoxes(image, size[0], size[1], clip_boxes(boxes, size), AUTOMATIC,
                               method=method, details=dict(details or {}))
            return self._write(state), True

    def save_edit(
        self, image: str, boxes: Sequence[Box], size: tuple[int, int] | None = None
    ) -> ImageBoxes:
        """Save the user's boxes for an image (status ``edited``); they become the truth."""
        return self._save_user(image, boxes, size, EDITED)

    def mark_verified(
        self,
        image: str,
        boxes: Sequence[Box] | None = None,
        size: tuple[int, int] | None = None,
    ) -> ImageBoxes:
        """Mark an image's boxes as checked (saving the given boxes, else the saved ones)."""
        return self._save_user(image, boxes, size, VERIFIED)

    def _save_user(
        self, image: str, boxes: Sequence[Box] | None, size: tuple[int, int] | None, status: str
    ) -> ImageBoxes:
        with self._lock:
            old = self._load_quietly(image)
            if boxes is None:
                if old is None:
                    raise ValueError(f"'{image}' has no saved boxes")
                boxes = old.boxes
            if size is None:
                if old is None:
                    raise ValueError(f"the size of '{image}' is needed to save its boxes")
                size = old.size
            size = (int(size[0]), int(size[1]))
            state = ImageBoxes(image, size[0], size[1], clip_boxes(boxes, size, whole=True),
                               status,
                               method=old.method if old else None,
                               details=old.details if old else {})
            return self._write(state)

    def _load_quietly(self, image: str) -> ImageBoxes | None:
        """The saved state before a user's save; a damaged file is kept aside and logged."""
        try:
            return self.load(image)
        except BoxFormatError:
            self._quarantine(image)
            return None

    def _quarantine(self, image: str) -> Path:
        """Move a damaged ``boxes.json`` aside under a name no earlier backup has; say so."""
        p = self.path(image)
        stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
        target, n = p.with_name(f"{p.name}.damaged-{stamp}"), 1
        while target.exists():
            n += 1
            target = p.with_name(f"{p.name}.damaged-{stamp}-{n}")
        p.replace(target)
        self.quarantined.append(target)
        log.warning("%s: saved boxes were damaged; kept at %s", image, target)
        return target

    # -- export --------------------------------------------------------------------------
    def to_boxset(
        self, images: Iterable[str] | None = None, statuses: Iterable[str] | None = None
    ) -> BoxSet:
        """The saved boxes as a :class:`BoxSet` (all saved images, or those named), optionally
        only images with the given statuses."""
        names = list(images) if images is not None else self.saved_images()
        wanted = set(statuses) if statuses is not None else None
        out = BoxSet()
        for name in names:
            state = self.load(name)
            if state is None or (wanted is not None and state.status not in wanted):
                continue
            out.add(name, state.boxes, state.size)
        return out

    def export(
        self,
        path: str | Path,
        images: Iterable[str] | None = None,
        fmt: str | None = None,
        statuses: Iterable[str] | None = None,
    ) -> tuple[BoxSet, list[Path]]:
        """Write the saved boxes to COCO / VOC / CSV (by ``fmt`` or the path's extension)."""
        boxset = self.to_boxset(images, statuses)
        if not boxset.images:
            raise ValueError(f"no saved boxes to export in {self.root}")
        return boxset, write_boxes(path, boxset, fmt)
