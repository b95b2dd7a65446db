"""The project folder: users' work and cached computations, written atomically.

Scribbles, corrected boxes and masks are the most valuable data in the system. Every write goes
to a temporary file in the same folder and is then renamed over the target (``os.replace`` is
atomic on POSIX and Windows), so a crash mid-write never leaves a half-written file and the last
good version survives.

Layout (default root: ``<image folder>/.dinoseg``, or a per-folder project under
``~/.dinoseg/projects`` when the image folder is read-only)::

    <root>/images/<image file name>/   per-image user work: scribbles.tif, segmentation.tif,
                                       boxes.json, masks.tif, ...
    <root>/probes/                     saved probes
    <root>/cache/<kind>/<key>.npz      computations cached by content (features, attention maps,
                                       SAM embeddings)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_DIRNAME = ".dinoseg"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # what open() would give a new file (mkstemp gives 0600)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable: without it a power loss can undo the rename.

    POSIX only; where a folder cannot be opened or synced (Windows, some network file systems)
    this is a no-op, the rename itself is still atomic.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    A symlink at ``path`` is kept: the file it points to is replaced (renaming over the link
    would silently turn the user's link into a private copy). The folder is synced after the
    rename so the new version survives a power loss.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else _FILE_MODE
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` through a temporary file; loading needs no pickle."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def atomic_write_tiff(path: str | Path, array: np.ndarray, **kwargs: Any) -> Path:
    """Write a TIFF (labels, probabilities) atomically, compressed."""
    import io

    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.asarray(array), compression="zlib", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def array_hash(array: np.ndarray, *extra: Any) -> str:
    """Content hash of an array (shape, dtype and bytes) plus any extra parameters."""
    a = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(memoryview(a).cast("B"))
    for e in extra:
        h.update(repr(e).encode())
    return h.hexdigest()


def project_root_for_folder(folder: str | Path) -> Path:
    """The project folder of a folder of images: ``<folder>/.dinoseg``.

    Where the image folder cannot be written (a read-only share, a mounted dataset) the project
    lives in ``$DINOSEG_HOME/projects/<folder name>-<hash of its path>`` instead (default
    ``~/.dinoseg``), so users' edits are still saved, and found again on reopen.
    """
    folder = Path(folder).resolve()
    local = folder / PROJECT_DIRNAME
    if local.is_dir() and os.access(local, os.W_OK):
        return local
    if not local.exists() and os.access(folder, os.W_OK):
        return local
    home = Path(os.environ.get("DINOSEG_HOME", Path("~/.dinoseg").expanduser()))
    digest = hashlib.blake2b(str(folder).encode(), digest_size=6).hexdigest()
    return home / "projects" / f"{folder.name}-{digest}"


def readonly_project(folder: str | Path) -> Path | None:
    """The folder's own ``.dinoseg`` when it exists but cannot be written (a read-only share
    that already holds work): read from it, write elsewhere."""
    local = Path(folder).resolve() / PROJECT_DIRNAME
    if local.is_dir() and not os.access(local, os.W_OK):
        return local
    return None


def default_root(image_path: str | Path) -> Path:
    """The project folder of an image: its folder's project (see project_root_for_folder)."""
    return project_root_for_folder(Path(image_path).resolve().parent)


class ProjectStore:
    """Per-image user work and content-keyed caches under one root folder."""

    def __init__(self, root: str | Path, fallbacks: tuple[str | Path, ...] = ()) -> None:
        self.root = Path(root)
        #: read-only projects looked in after ``root`` (never written): a read-only image
        #: folder's own ``.dinoseg``, so work saved there earlier is still found
        self.fallbacks = tuple(Path(f) for f in fallbacks if Path(f) != self.root)

    @classmethod
    def for_folder(cls, folder: str | Path) -> ProjectStore:
        """The project of a folder of images, reading a read-only local project too."""
        ro = readonly_project(folder)
        return cls(project_root_for_folder(folder), () if ro is None else (ro,))

    @classmethod
    def for_image(cls, image_path: str | Path) -> ProjectStore:
        return cls.for_folder(Path(image_path).resolve().parent)

    def where_note(self) -> str | None:
        """One line for the user when their work is not where they would look for it."""
        if not self.fallbacks:
            return None
        return (f"the image folder's project {self.fallbacks[0]} is read-only: earlier work is "
                f"read from it, new work is saved in {self.root}")

    def find(self, image_name: str, filename: str) -> Path:
        """Where a saved file is: the writable project first, then the read-only ones; the
        writable path when it is nowhere (the place it will be saved)."""
        p = self.path(image_name, filename)
        if p.exists():
            return p
        for root in self.fallbacks:
            q = ProjectStore(root).path(image_name, filename)
            if q.exists():
                return q
        return p

    # -- per-image user work -------------------------------------------------------------
    def image_dir(self, image_name: str) -> Path:
        """Folder of one image's saved work (``image_name`` is the file name, e.g. ``a.png``)."""
        safe = Path(str(image_name)).name or "unnamed"
        return self.root / "images" / safe

    def path(self, image_name: str, filename: str) -> Path:
        return self.image_dir(image_name) / filename

    def save_labels(self, image_name: str, filename: str, labels: np.ndarray) -> Path:
        return atomic_write_tiff(self.path(image_name, filename), labels)

    def load_labels(self, image_name: str, filename: str) -> np.ndarray | None:
        p = self.find(image_name, filename)
        if not p.exists():
            return None
        import tifffile

        return tifffile.imread(str(p))

    def save_json(self, image_name: str, filename: str, obj: Any) -> Path:
        return atomic_write_json(self.path(image_name, filename), obj)

    def load_json(self, image_name: str, filename: str) -> Any | None:
        p = self.find(image_name, filename)
        return read_json(p) if p.exists() else None

    # -- caches -----------------------------------------------------------------------------
    def cache_path(self, kind: str, key: str) -> Path:
        return self.root / "cache" / kind / f"{key}.npz"

    def cache_get(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        p = self.cache_path(kind, key)
        if not p.exists():
            p = next((q for q in (ProjectStore(r).cache_path(kind, key) for r in self.fallbacks)
                      if q.exists()), p)
        if not p.exists():
            return None
        try:
            return load_npz(p)
        except Exception:  # a damaged cache entry is recomputed, never fatal
            return None

    def cache_put(self, kind: str, key: str, **arrays: np.ndarray) -> Path:
        return atomic_save_npz(self.cache_path(kind, key), **arrays)
