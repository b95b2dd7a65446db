"""Argument types that refuse impossible values at parse time (``--size -5``, ``--keep 2``).

argparse turns a ``ValueError`` from a type into ``dinoseg CMD: error: argument --size: ...``
(exit 2), before any image is read or model loaded.
"""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def check_out_folder(path: object, option: str = "--out") -> None:
    """An output folder that names an existing file fails in one line, before any work."""
    from pathlib import Path

    p = Path(str(path)).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} {p} is a file; give a folder (it is created when missing)")


def check_out_file(path: object, option: str = "--out") -> None:
    """An output file that names an existing folder fails in one line, before any work."""
    from pathlib import Path

    if path is not None and Path(str(path)).expanduser().is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
