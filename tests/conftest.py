"""Shared fixtures.

``shared_data`` points at ``../shared/data`` (real images, scribbles, VOC boxes) and
``shared_weights`` at the real DINOv2 ViT-S/14 in ``../shared/weights``. Where they are absent (a
user's clone) tests that need them skip with a reason; CI sets ``DINOSEG_REQUIRE_DATA=1`` and
then a missing file is a failure, because CI has them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DINOSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHARED_WEIGHTS = Path(os.environ.get(
    "DINOSEG_SHARED_WEIGHTS",
    ROOT.parent / "shared" / "weights" / "dinov2_vits14_imgfocus.safetensors"))


def _need(path: Path) -> Path:
    if not path.exists():
        msg = (f"real data not found at {path} (set DINOSEG_SHARED_DATA / DINOSEG_SHARED_WEIGHTS "
               "or clone ../shared)")
        if os.environ.get("DINOSEG_REQUIRE_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; skips (or fails under CI) when absent."""
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """The real DINOv2 ViT-S/14 file (load it as backbone ``dinov2_vits14``, ``weights=path``)."""
    return _need(SHARED_WEIGHTS)


@pytest.fixture(autouse=True)
def _python_collector(monkeypatch):
    """GUI sessions move CPython's full collections to the user's pauses; a test process keeps
    CPython's own (the collector's tests install it themselves)."""
    monkeypatch.setenv("DINOSEG_GC", "python")


@pytest.fixture(autouse=True)
def _isolated_weights_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's real weight cache from tests."""
    monkeypatch.setenv("DINOSEG_CACHE", str(tmp_path_factory.mktemp("weights-cache")))
