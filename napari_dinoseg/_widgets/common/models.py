"""Models a dock loads, kept once per ``(name, weights, device)``: plain Python, no Qt.

The docks' controllers hold these caches, so that they (and their tests) need neither Qt nor
napari; :mod:`.qt_helpers` re-exports both names for code that imported them from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari_dinoseg._widgets.common.collector import long_lived_allocations


class ModelCache:
    """Models a dock has loaded, once per ``(name, weights, device)``; safe to use from workers.

    ``loader(name, weights, device)`` builds a model (e.g. ``load_backbone``, ``load_sam``).
    """

    def __init__(self, loader: Callable[[str, str, str], Any]) -> None:
        self._loader = loader
        self._items: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> Any:
        with self._lock:
            if key not in self._items:
                self._items[key] = self._loader(*key)
            return self._items[key]


def load_backbone_for_dock(name: str, weights: str, device: str) -> Any:
    """The backbone, its weights fetched first; the model is built and loaded with full garbage
    collections held off (it lives with the dock: :func:`~.collector.long_lived_allocations`;
    one scanned the whole heap, 364 ms, during a first load). The download is outside that."""
    from headless.features.backbones import load_backbone

    ensure_official_weights(name, weights)
    with long_lived_allocations():
        return load_backbone(name, weights, device=device)


def ensure_official_weights(name: str, weights: str | None) -> None:
    """Fetch (or find) the official weights of backbone ``name`` before any model is built.

    ``load_backbone`` imports torch and builds the model before it looks for the file, so an
    offline machine waited 55 s in a dock for the default 'official' weights to fail. This
    looks first: a cached file returns at once, a missing one is downloaded, and no network (or
    ``DINOSEG_OFFLINE=1``) fails within 2 s with the file, URL and cache folder, worded for the
    dock. Other weights ('random', a file) and test architectures are left to ``load_backbone``.
    """
    from headless.downloads import DownloadError, download_to, missing_weights_message
    from headless.features.backbones import WeightsError, _hf_cached_file, cache_dir, get_spec

    if str(weights or "official") != "official":
        return
    spec = get_spec(name)
    if spec.family == "test" or not spec.url:
        return
    target = cache_dir() / spec.filename
    if target.is_file() or _hf_cached_file(spec) is not None:
        return
    try:
        download_to(spec.url, target)
    except DownloadError as exc:
        raise WeightsError(missing_weights_message(name, spec.url, target, str(exc), "dock")
                           ) from exc
