"""Fetching official weight files into the cache: one place for the network rules.

Used for DINO / DINOv2 backbones, SAM checkpoints and torchvision's ImageNet ResNets. A download
goes through ``torch.hub.download_url_to_file`` (a temporary file renamed at the end, so an
interrupted download never leaves a truncated checkpoint) with a socket timeout.

Failing fast: before any download the host name is resolved with a
:data:`RESOLVE_TIMEOUT_S` budget (a machine without network used to wait 27 s in the CLI and
55 s in a dock for the default weights), and ``DINOSEG_OFFLINE=1`` refuses at once. A failed
look-up is remembered for :data:`NEGATIVE_CACHE_S`, so a second attempt answers instantly.
:func:`missing_weights_message` words the one-line error (file, URL, cache folder, and the way
out in the caller's own terms: ``--weights random`` on the command line, ``weights='random'``
in Python, "choose a local file" in a dock).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

DOWNLOAD_TIMEOUT_S = 20.0
RESOLVE_TIMEOUT_S = 1.5
NEGATIVE_CACHE_S = 60.0
AUDIENCES = ("python", "cli", "dock")

_unreachable: dict[str, tuple[float, str]] = {}  # host -> (when, why)
_audience: str | None = None


class DownloadError(OSError):
    """A download that could not start or finish; the message says why in one line."""


def downloads_allowed() -> bool:
    """False when ``DINOSEG_OFFLINE=1``: missing weights are then reported, never fetched."""
    return os.environ.get("DINOSEG_OFFLINE", "0") != "1"


def set_audience(who: str) -> None:
    """Who reads the errors of this process: 'python' (default), 'cli' or 'dock'."""
    global _audience
    if who not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}, not {who!r}")
    _audience = who


def audience() -> str:
    """'cli' for the ``dinoseg`` console script, 'dock' once a napari dock set it, else 'python'.

    ``DINOSEG_AUDIENCE`` overrides (tests, wrappers).
    """
    env = os.environ.get("DINOSEG_AUDIENCE")
    if env in AUDIENCES:
        return env
    if _audience is not None:
        return _audience
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "cli" if prog in ("dinoseg", "dinoseg.exe", "dinoseg-script.py") else "python"


def random_hint(who: str | None = None) -> str:
    """How to ask for an untrained model, in the reader's terms."""
    who = who or audience()
    if who == "cli":
        return "--weights random"
    if who == "dock":
        return "'random' in the weights field"
    return "weights='random'"


def local_file_hint(who: str | None = None) -> str:
    who = who or audience()
    if who == "cli":
        return "pass a local file with --weights PATH"
    if who == "dock":
        return "choose a local file with the '…' button next to weights"
    return "pass a local file as weights=PATH"


def missing_weights_message(what: str, url: str | None, target: str | Path, reason: str,
                            who: str | None = None) -> str:
    """One line: which file is missing and why, where to get it, and the ways out."""
    target = Path(target)
    get = (f"download {url} and save it as {target} (DINOSEG_CACHE moves the cache folder)"
           if url else f"no official file exists for {what}")
    return (f"{what} weights not found ({target.name}): {reason}. Fix: {get}, "
            f"{local_file_hint(who)}, or use {random_hint(who)} for an untrained model.")


def check_reachable(url: str, timeout: float = RESOLVE_TIMEOUT_S) -> None:
    """Raise :class:`DownloadError` within ``timeout`` when ``url``'s host cannot be resolved.

    ``socket.getaddrinfo`` has no timeout of its own (a resolver without network can block for
    tens of seconds), so it runs in a daemon thread that is simply not waited for longer.
    """
    import socket

    if not downloads_allowed():
        raise DownloadError("offline mode (DINOSEG_OFFLINE=1)")
    host = urlparse(url).hostname
    if not host:
        raise DownloadError(f"not a download address: {url}")
    seen = _unreachable.get(host)
    if seen is not None and time.monotonic() - seen[0] < NEGATIVE_CACHE_S:
        raise DownloadError(seen[1])
    outcome: list[BaseException | None] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    t = threading.Thread(target=resolve, name="dinoseg-resolve", daemon=True)
    t.start()
    t.join(timeout)
    if outcome and outcome[0] is None:
        _unreachable.pop(host, None)
        return
    why = (f"cannot resolve {host} (no network?)" if outcome else
           f"no answer resolving {host} within {timeout:g} s (no network?)")
    _unreachable[host] = (time.monotonic(), why)
    raise DownloadError(why)


def download_to(url: str, target: str | Path, progress: bool = True,
                timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``target``; raises :class:`DownloadError` (one line) on failure.

    Offline mode and an unresolvable host fail within :data:`RESOLVE_TIMEOUT_S`, before torch
    is imported.
    """
    check_reachable(url)
    import socket

    import torch.hub

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=progress)
    except Exception as exc:  # noqa: BLE001 - proxy, refused, disk full: one line
        first = (str(exc).splitlines() or [""])[0]
        raise DownloadError(f"download failed ({type(exc).__name__}: {first})") from exc
    finally:
        socket.setdefaulttimeout(old)
    return target
