"""The pretext folder: found, readable and large enough, checked before a worker starts."""

from __future__ import annotations

from pathlib import Path

from headless.images import IMAGE_SUFFIXES
from headless.train.data.errors import DatasetError


def list_pretext(root: str | Path, what: str = "pretext folder") -> list[Path]:
    """Images under ``root`` (recursively, hidden parts skipped), sorted."""
    hint = " (set data.pretext)" if what == "pretext folder" else ""
    if not str(root).strip():  # Path("") is ".": an unset folder would scan the working folder
        raise DatasetError(f"no {what} given{hint}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{what} {root} does not exist{hint}")
    if not root.is_dir():
        raise DatasetError(f"{what} {root} is a file, not a folder")
    paths = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not paths:
        raise DatasetError(
            f"no images found in {what} {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


def _names(paths: list[Path], root: Path) -> str:
    shown = ", ".join(str(p.relative_to(root)) for p in paths[:5])
    return shown + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def check_pretext(root: str | Path, min_side: int) -> list[Path]:
    """The images, after reading every header: unreadable or too small files are refused."""
    from PIL import Image

    root = Path(root).expanduser()
    paths = list_pretext(root)
    bad, small = [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - any unreadable file is reported by name
            bad.append(p)
            continue
        if min(w, h) < min_side:
            small.append(p)
    if bad:
        raise DatasetError(f"{len(bad)} unreadable image(s) in {root}: {_names(bad, root)}")
    if small:
        raise DatasetError(
            f"{len(small)} image(s) in {root} are smaller than the local crop ({min_side} px "
            f"on the short side): {_names(small, root)}; remove them or lower crops.local_size")
    return paths
