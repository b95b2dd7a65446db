"""A followed run that is a batch run (``job: batch``): images, images/s and ETA, not curves.

The Train dock follows any run folder; a batch run (a dock's "Run as job", or ``dinoseg boxes
... --runner R``) has no loss to plot, so the run view shows its shards' progress instead
(:func:`headless.batch.follow.batch_progress`) and, once merged, what its manifest says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def batch_shape(run_dir: str | Path) -> tuple[int, int] | None:
    """``(images, shards)`` of a batch run from its ``config.yaml``; None for other jobs."""
    import yaml

    from headless.jobs.runs import CONFIG_NAME

    try:
        cfg = yaml.safe_load((Path(run_dir) / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(cfg, dict) or cfg.get("job") != "batch":
        return None
    return len(cfg.get("images") or []), max(1, int(cfg.get("shards") or 1))


def batch_now(run_dir: str | Path, shape: tuple[int, int]) -> Any:
    """The run's :class:`~headless.batch.follow.BatchProgress` now."""
    from headless.batch.follow import batch_progress

    return batch_progress(run_dir, *shape)


def merged_line(run_dir: str | Path) -> str:
    """What the merge wrote ('' before it): 'merged 3 image(s) (0 failed) -> boxes.json'."""
    from headless.batch.merge import MANIFEST_NAME
    from headless.store import read_json
    from napari_dinoseg._widgets.common.batch_runs import outputs_line

    try:
        manifest = read_json(Path(run_dir) / MANIFEST_NAME)
    except (OSError, ValueError):
        return ""
    return outputs_line(manifest) if isinstance(manifest, dict) else ""
