"""The first ``import torch`` of a GUI session: libraries loaded with the GIL released."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from napari_dinoseg._widgets.common import torch_import

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dlopen: Linux")


def _fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter (torch not imported yet); its printed JSON."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@linux_only
def test_first_import_goes_through_the_finder_and_leaves_torch_its_own():
    got = _fresh_python("""
        import gc, json, sys
        from napari_dinoseg._widgets.common import torch_import
        finder = torch_import.install()
        again = torch_import.install()
        import torch
        print(json.dumps({
            "same_finder": again is finder, "loaded": finder.loaded,
            "finder_left": any(isinstance(f, torch_import.TorchFirstImport)
                               for f in sys.meta_path),
            "loader": type(torch.__loader__).__name__,
            "spec_loader_is_module_loader": torch.__spec__.loader is torch.__loader__,
            "works": float(torch.ones(3).sum()), "gc_on": gc.isenabled(),
            "frozen": gc.get_freeze_count(),
            "after": torch_import.install() is None}))
    """)
    assert got["same_finder"]
    assert got["loaded"] == ["libtorch_global_deps.so", "libtorch.so"]
    assert not got["finder_left"]  # one import only
    assert got["loader"] != "_Loader" and got["spec_loader_is_module_loader"]
    assert got["works"] == 3.0
    assert got["gc_on"] and got["frozen"] == 0  # the collector is as it was
    assert got["after"]  # torch imported: nothing to install


@linux_only
def test_preload_releases_the_gil():
    """While one thread loads torch's libraries, the main thread keeps running (through
    ``_ctypes``' own dlopen, as CPython's import does, it would not run at all)."""
    got = _fresh_python("""
        import importlib.util, json, threading, time
        from pathlib import Path
        from napari_dinoseg._widgets.common.torch_import import preload_libraries
        lib = Path(importlib.util.find_spec("torch").submodule_search_locations[0]) / "lib"
        ticks = [0]
        seen = {}
        def load():
            before = ticks[0]
            seen["loaded"] = preload_libraries(lib)
            seen["ticks"] = ticks[0] - before
        t = threading.Thread(target=load)
        t.start()
        while t.is_alive():
            ticks[0] += 1
            time.sleep(0.0005)
        print(json.dumps(seen))
    """)
    assert got["loaded"] == ["libtorch_global_deps.so", "libtorch.so"]
    assert got["ticks"] >= 5, got


def test_missing_libraries_are_skipped(tmp_path: Path):
    assert torch_import.preload_libraries(tmp_path) == []
    assert torch_import.preload_libraries(tmp_path / "absent") == []


def test_nothing_to_install_once_torch_is_imported():
    import torch  # noqa: F401 - imported: the hook has nothing left to do

    assert torch_import.install() is None
    assert not any(isinstance(f, torch_import.TorchFirstImport) for f in sys.meta_path)
