"""The session's first ``import torch`` without freezing the viewer.

Importing torch loads ~2 GB of shared libraries (libtorch_cpu, and libtorch_cuda with the
CUDA libraries of a CUDA wheel). CPython's import calls ``dlopen`` holding the GIL, so while
a worker thread imported torch the GUI thread could not run: 190-240 ms frozen in one piece
(measured: the Train dock's first launch, a dock's first compute). The same ``dlopen`` made
through ctypes (a call into libc, which releases the GIL) loads them while the viewer goes on;
torch's own import then finds them loaded (the longest gap left: ~60 ms, its bindings' init).
Its module bodies also make ~100 000 lasting objects, which set off a full collection:
they run in :func:`~.collector.long_lived_allocations`.

:func:`install` puts a finder at the front of ``sys.meta_path`` that acts on the first
``import torch`` only (then removes itself): libraries first, then torch's own loader, whose
``exec_module`` runs with the collector paused. The module, its spec and its loader are
torch's own. Where the libraries cannot be found or loaded, torch's import runs as always.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any

from napari_dinoseg._widgets.common.collector import long_lived_allocations

_RTLD_NOW = 0x2
_RTLD_GLOBAL = 0x100
#: loaded in torch's order and modes: its global deps with RTLD_GLOBAL (as ``torch/__init__``
#: does), then libtorch (which needs libtorch_cpu / libtorch_cuda and their libraries) local
_LIBRARIES = (("libtorch_global_deps.so", _RTLD_NOW | _RTLD_GLOBAL), ("libtorch.so", _RTLD_NOW))


def preload_libraries(lib_dir: str | Path) -> list[str]:
    """``dlopen`` torch's libraries in ``lib_dir`` with the GIL released; the names loaded.

    A library that is missing or fails to load is skipped (torch's import reports it).
    Blocks the calling thread for as long as the load takes (~0.25 s): call it off the GUI
    thread.
    """
    if not sys.platform.startswith("linux"):
        return []
    libc = ctypes.CDLL(None)  # calls through a CDLL release the GIL
    dlopen = libc.dlopen
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    loaded = []
    for name, mode in _LIBRARIES:
        path = Path(lib_dir) / name
        if path.is_file() and dlopen(str(path).encode(), mode):
            loaded.append(name)
    return loaded


class _Loader(importlib.abc.Loader):
    """Torch's own loader, after the preload, its module body run with the collector paused.

    The preload runs here, under the import lock of ``torch`` alone (a finder is called
    holding the global import lock, which every other thread's first import of a module
    waits for).
    """

    def __init__(self, loader: Any, lib_dir: Path, finder: TorchFirstImport) -> None:
        self._loader = loader
        self._lib_dir = lib_dir
        self._finder = finder

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__spec__.loader = module.__loader__ = self._loader  # torch sees its own loader
        self._finder.loaded = preload_libraries(self._lib_dir)
        with long_lived_allocations():
            self._loader.exec_module(module)


class TorchFirstImport(importlib.abc.MetaPathFinder):
    """Finder for the first ``import torch``: see the module docstring."""

    def __init__(self) -> None:
        self.loaded: list[str] = []  # what the preload loaded (tests, benchmarks)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "torch":
            return None
        self.remove()
        spec = importlib.util.find_spec("torch")  # the finders after this one
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            return spec
        spec.loader = _Loader(spec.loader, Path(spec.submodule_search_locations[0]) / "lib",
                              self)
        return spec

    def remove(self) -> None:
        with _lock:
            if self in sys.meta_path:
                sys.meta_path.remove(self)


_lock = threading.Lock()


def install() -> TorchFirstImport | None:
    """Put the finder in front of ``sys.meta_path`` unless torch is imported already (or a
    finder is there); the finder, or None."""
    with _lock:
        if "torch" in sys.modules:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, TorchFirstImport):
                return finder
        finder = TorchFirstImport()
        sys.meta_path.insert(0, finder)
        return finder
