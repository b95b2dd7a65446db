"""Fetching official weight files into the cache: one place for the network rules.

Used for DINO / DINOv2 backbones, SAM checkpoints and torchvision's ImageNet ResNets. A download
goes through ``torch.hub.download_url_to_file`` (a temporary file renamed at the end, so an
interrupted download never leaves a truncated checkpoint) with a socket timeout, so a machine
without network answers in seconds instead of hanging.
"""

from __future__ import annotations

import os
from pathlib import Path

DOWNLOAD_TIMEOUT_S = 20.0


def downloads_allowed() -> bool:
    """False when ``DINOSEG_OFFLINE=1``: missing weights are then reported, never fetched."""
    return os.environ.get("DINOSEG_OFFLINE", "0") != "1"


def download_to(url: str, target: str | Path, progress: bool = True,
                timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``target``; exceptions propagate for the caller to explain."""
    import socket

    import torch.hub

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=progress)
    finally:
        socket.setdefaulttimeout(old)
    return target
