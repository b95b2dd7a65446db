"""What a GUI session sets up once, as its first dock opens or its first job starts.

Two keep the GUI thread responsive: torch's first import loads its libraries with the GIL
released (:mod:`.torch_import`), and CPython's full garbage collections wait for a pause of the
user (:class:`~.collector.IdleCollections`); the third stops running jobs before Python exits
(:mod:`.shutdown`: a script that ended mid-job aborted). Called on the GUI thread; cheap after
the first.
"""

from __future__ import annotations


def prepare() -> None:
    """Install the three (each once per session, each only where it applies)."""
    from napari_dinoseg._widgets.common import torch_import
    from napari_dinoseg._widgets.common.collector import install_idle_collections
    from napari_dinoseg._widgets.common.shutdown import stop_workers_at_exit

    torch_import.install()
    install_idle_collections()
    stop_workers_at_exit()
