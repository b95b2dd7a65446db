"""What a batch task is: the per-image work of one command, and how its outputs merge.

A task is created from the command's options and output path in the caller (to check them) and
again in every worker process. Its life in a worker: :meth:`BatchTask.prepare` runs in the
loader's processes (decode, resize: no model), :meth:`open` loads the models once,
:meth:`process` turns a batch of prepared images into one JSON record per image (writing any
per-image files straight into the output), and :meth:`merge` writes the command's summary
outputs from every record, in the run's image order. Subclasses keep ``self`` picklable until
:meth:`open` (loader processes get a copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Prepared:
    """One image as the loader hands it over: decoded (and maybe network-ready), or an error."""

    path: str
    name: str
    image: np.ndarray | None = None
    tensor: Any = None  # the network input (CPU tensor) when the task prepares one
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def pin_memory(self) -> Prepared:
        """Called by the DataLoader's pinning thread: page-locked input for a fast copy."""
        if self.tensor is not None and hasattr(self.tensor, "pin_memory"):
            self.tensor = self.tensor.pin_memory()
        return self


class BatchTask:
    """Base class: one command's per-image work in a batch run."""

    name = "base"
    #: whether :meth:`process` gains from several images of one shape at once
    batches = False

    #: the command's option defaults, under the options given
    defaults: dict[str, Any] = {}

    def __init__(self, options: dict[str, Any], out: str) -> None:
        self.options = {**self.defaults, **options}
        self.out = Path(out) if out else Path()
        self.device = "cpu"
        self.autocast = False
        self.info: dict[str, Any] = {}  # run_info() of a worker, set again before merge()

    # -- in the caller, before anything starts ----------------------------------------------
    def check(self, images: list[Path]) -> dict[str, Any]:
        """Raise ``ValueError`` with a one-line message for anything that would stop the run;
        return a summary (``{"warnings": [...]}``)."""
        return {}

    def key_settings(self) -> dict[str, Any]:
        """The settings that change an image's result (part of each image's key)."""
        return dict(self.options)

    def memory_estimate(self, images: list[Path], batch_size: int) -> int | None:
        """Bytes one worker needs at most (checked against the machine before starting)."""
        return None

    # -- in the loader's processes -----------------------------------------------------------
    def prepare(self, path: str) -> Prepared:
        """Decode one image (no model here: this runs in loader processes)."""
        from headless.images import read_image

        return Prepared(path, Path(path).name, image=read_image(path))

    def bucket(self, item: Prepared) -> Any:
        """Images with the same bucket may share a forward pass (e.g. the padded input shape)."""
        return None

    # -- in the worker -----------------------------------------------------------------------
    def open(self, device: str, autocast: bool, images: list[Path]) -> None:
        """Load the models (once per worker process); ``images`` is the run's whole list (for
        output names that must not collide across shards)."""
        self.device, self.autocast = device, autocast

    def run_info(self) -> dict[str, Any]:
        """What the merge needs to know about the loaded models (labels, resolved settings);
        saved beside each shard's records by the worker after :meth:`open`."""
        return {}

    def process(self, items: list[Prepared]) -> list[dict[str, Any]]:
        """One JSON-able result per item, in order (``{"error": msg}`` for a failed image)."""
        raise NotImplementedError

    def close(self) -> None:
        """Called once when the worker has finished its shards."""

    # -- after every shard -------------------------------------------------------------------
    def merge(self, records: list[dict[str, Any]], images: list[Path]) -> list[Path]:
        """Write the command's summary outputs from the records (run order); return the files.

        ``records[i]`` is the record of ``images[i]``: ``{"result": ..., "error": ...}``."""
        return []
