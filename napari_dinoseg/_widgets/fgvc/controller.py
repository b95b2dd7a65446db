"""Qt-free side of the votes dock: which run, the loaded-model cache, the layers to add.

The engine work is :func:`headless.train.fgvc.votes.explain_iter` (the CLI twin is
``dinoseg predict RUN IMAGE --votes DIR``); it runs in a worker, never on the GUI thread.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

META_KEY = "dinoseg_fgvc_votes"


class VotesController:
    """Keeps the last loaded run (loading a ViT is the slow part) and builds layer data."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: tuple[Path, Any] | None = None

    @staticmethod
    def resolve(run_ref: str, runs_root: str | None = None) -> Path:
        from headless.jobs.runs import find_run

        if not run_ref.strip():
            raise ValueError("Choose a trained fgvc run (a run folder, its name, or 'last').")
        return find_run(run_ref.strip(), runs_root or None)

    def explain(self, run_dir: Path, image: np.ndarray, top: int = 5, device: str = "cpu"
                ) -> Any:
        """A progress generator (for the worker) returning the image's :class:`VoteView`."""
        from headless.progress import Progress
        from headless.train.fgvc.build import load_fgvc
        from headless.train.fgvc.votes import explain_image

        def gen() -> Any:
            with self._lock:
                cached = self._run
            if cached is None or cached[0] != run_dir:
                yield Progress(0, 2, "loading the run")
                run = load_fgvc(run_dir, device)
                with self._lock:
                    self._run = (run_dir, run)
            else:
                run = cached[1]
            yield Progress(1, 2, "votes")
            return explain_image(run, image, top, device)

        return gen()


def image_plane(data: Any, rgb: bool) -> np.ndarray:
    """The 2D plane (grey or RGB) of an Image layer's data that the votes are computed on."""
    arr = np.asarray(data)
    spatial = arr.ndim - (1 if rgb else 0)
    if spatial < 2:
        raise ValueError("the image layer is not 2D")
    while spatial > 2:  # the first plane of a stack (napari's current step is the dock's job)
        arr = arr[0]
        spatial -= 1
    return arr


def vote_layer(view: Any, image_name: str, run_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Data and ``add_image`` keywords of the per-layer vote stack, laid over the image."""
    sy, sx = view.scale
    ty, tx = view.translate
    kwargs = {
        "name": f"votes: {image_name}",
        "scale": (1.0, sy, sx),
        "translate": (0.0, ty, tx),
        "colormap": "inferno",
        "opacity": 0.6,
        "blending": "additive",
        "metadata": {META_KEY: {"run": str(run_dir), "image": image_name,
                                "top": view.top, "layers": int(view.maps.shape[0])}},
    }
    return view.maps, kwargs


def top_text(view: Any) -> str:
    return "\n".join(f"{i}. {name}  {p:.1%}" for i, (name, p) in enumerate(view.top, 1))
