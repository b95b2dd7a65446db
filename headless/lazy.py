"""Lazy re-exports for package ``__init__`` files: public names without their heavy imports.

``from headless.features import hr_features`` should work, but ``import headless.features``
must not load torch (napari scans plugins, ``dinoseg --help`` starts in a blink). A package
lists ``name -> submodule`` and gets a module ``__getattr__`` that imports the submodule on first
use (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` re-exporting ``exports`` (name -> submodule)."""

    def __getattr__(name: str) -> Any:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{submodule}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
