"""The code stays ruff clean (pyflakes, pycodestyle, isort, pyupgrade, bugbear)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    try:
        r = subprocess.run([*cmd, "check", "headless", "napari_dinoseg", "tests"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        pytest.skip("ruff is not installed (it is in the 'testing' extra)")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
