"""napari front end of napari-dinoseg.

Only the version lives here: napari imports this package when it scans plugins, and that must not
pull in torch. Widgets import the engine when they are built.

One guard runs here, because it must run before torch is first imported in the napari process:
Triton (used only by ``torch.compile``) segfaults when its bundled LLVM is loaded into a process
that already holds Mesa's LLVM, which is the case once napari has opened an OpenGL canvas on a
Mesa driver (llvmpipe, radeonsi). The napari front end never compiles models (training runs in
separate processes), so Triton is kept out of this process. ``DINOSEG_ALLOW_TRITON=1`` lifts it.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

if _os.environ.get("DINOSEG_ALLOW_TRITON") != "1" and "triton" not in _sys.modules:
    _sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError
