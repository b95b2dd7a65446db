"""Objects made to live for the session (imports, a loaded model) kept out of full collections.

Importing scikit-learn or building a ViT makes a few hundred thousand objects that all stay
alive, yet they count towards CPython's full garbage collection (3.11: it runs once the objects
that survived into the oldest generation reach a quarter of those there). A warm-up triggered
one or two, a first model load another: each scanned ~500 000 objects with napari and torch
loaded, 100-370 ms holding the GIL, so the viewer froze although the work ran in a thread.

:func:`long_lived_allocations` keeps the collector off during such a block (plain Python, any
thread), then moves what was made into the oldest generation without counting it there
(``gc.freeze`` then ``gc.unfreeze`` at once: nothing stays frozen, and later full collections
still scan, and free, everything). Garbage cycles made inside the block wait for the next
full collection. Cost: none measurable (both calls relink lists).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
# the collector is process-wide, so is this: blocks running now, and whether they turned it off
_state = {"blocks": 0, "paused": False}


@contextmanager
def long_lived_allocations() -> Iterator[None]:
    """The garbage collector off for the block (nested or concurrent blocks: the first turns
    it off, the last back on); what was made is then filed with the old objects.

    Left alone when the collector is off already, or the host application froze objects of
    its own (``gc.unfreeze`` would release those too).
    """
    with _lock:
        _state["blocks"] += 1
        if _state["blocks"] == 1:
            _state["paused"] = gc.isenabled() and gc.get_freeze_count() == 0
            if _state["paused"]:
                gc.disable()
    try:
        yield
    finally:
        with _lock:
            _state["blocks"] -= 1
            if _state["blocks"] == 0 and _state["paused"]:
                _state["paused"] = False
                gc.freeze()  # every tracked object to the permanent generation, at once ...
                gc.unfreeze()  # ... and back into the oldest one, without being counted there
                gc.enable()
