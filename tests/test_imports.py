"""Import hygiene: the plugin must not load torch; the engine must not need Qt or napari."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import headless

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_importing_the_plugin_does_not_import_torch():
    r = _python("import sys, napari_dinoseg; "
                "heavy = [m for m in ('torch', 'timm', 'headless', 'sklearn') "
                "if m in sys.modules]; "
                "print(heavy); assert not heavy, heavy")
    assert r.returncode == 0, r.stderr + r.stdout


def test_headless_imports_with_qt_and_napari_unavailable():
    modules = sorted(m.name for m in pkgutil.walk_packages(headless.__path__, "headless."))
    assert "headless.features.forward" in modules and "headless.cli.features" in modules
    code = (
        "import sys\n"
        "for name in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui'):\n"
        "    sys.modules[name] = None\n"
        "import importlib\n"
        f"for m in {modules!r}:\n"
        "    if m.endswith('__main__'): continue\n"
        "    importlib.import_module(m)\n"
        "from headless.cli import build_parser\n"
        "build_parser()\n"
        "print('ok')\n"
    )
    r = _python(code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]
