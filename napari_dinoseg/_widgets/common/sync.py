"""``DINOSEG_SYNC=1``: dock work runs inline, in the calling thread (tests use it).

Plain Python, no imports of the project: the worker helpers, the helper process and the
collector all ask it.
"""

from __future__ import annotations

import os


def sync_mode() -> bool:
    """Whether ``DINOSEG_SYNC=1`` asks for inline work (no threads, no turns of the loop)."""
    return os.environ.get("DINOSEG_SYNC", "0") == "1"
