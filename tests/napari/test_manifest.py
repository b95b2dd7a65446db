"""napari finds the manifest in an editable install and inside a built wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_validates_and_every_contribution_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    assert manifest.name == "napari-dinoseg"
    manifest.validate_imports()  # every python_name resolves to a real object


def test_plugin_is_discovered_through_its_entry_point():
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover(include_npe1=False)
    mf = pm.get_manifest("napari-dinoseg")  # raises KeyError when not discovered
    widgets = {w.display_name for w in mf.contributions.widgets}
    assert {"Features and attention", "Scribble segmentation", "Object boxes", "SAM masks",
            "Train"} <= widgets
    assert {s.key for s in mf.contributions.sample_data} == {"astronaut", "chelsea", "coffee"}


@pytest.mark.slow
def test_built_wheel_ships_the_manifest(tmp_path):
    # Build from a copy: setuptools keeps a build/ folder in the source tree, and modules that
    # were moved away would linger there and ship in the next wheel.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".dinoseg", ".*_cache"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("napari_dinoseg-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "napari_dinoseg/napari.yaml" in names
        assert zf.read("napari_dinoseg/napari.yaml") == (ROOT / "napari.yaml").read_bytes()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        text = zf.read(entry).decode()
    assert "napari-dinoseg = napari_dinoseg:napari.yaml" in text
    assert "dinoseg = headless.cli:main" in text
    assert any(n.startswith("headless/") for n in names)
    # the packages of concern ship whole (setuptools finds nested packages by their __init__)
    for module in ("headless/features/forward.py", "headless/boxes/localize/lost.py",
                   "headless/segment/workflow/segmenter.py",
                   "napari_dinoseg/_widgets/segment/panel.py"):
        assert module in names, module
    for gone in ("headless/boxes.py", "headless/features.py", "napari_dinoseg/_segment_widget.py"):
        assert gone not in names, gone  # the flat modules before the regrouping
