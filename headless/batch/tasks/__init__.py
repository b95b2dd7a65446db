"""The commands a batch run can run, found by name and imported on use."""

from __future__ import annotations

import importlib
from typing import Any

#: task name -> "module:Class" of its :class:`~headless.batch.tasks.base.BatchTask`.
TASKS: dict[str, str] = {
    "boxes": "headless.batch.tasks.boxes:BoxesTask",
    "attention-maps": "headless.batch.tasks.attention_maps:AttentionMapsTask",
    "sam": "headless.batch.tasks.sam:SamTask",
    "features": "headless.batch.tasks.features:FeaturesTask",
    "segment": "headless.batch.tasks.segment:SegmentTask",
}


def get_task(name: str, options: dict[str, Any], out: str) -> Any:
    """An instance of the named task for these options and output."""
    try:
        ref = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown batch task {name!r}; known: {', '.join(TASKS)}") from None
    module, cls = ref.split(":")
    return getattr(importlib.import_module(module), cls)(dict(options), out)
